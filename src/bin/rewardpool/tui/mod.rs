//! `rewardpool tui`: the terminal dashboard (issue 11).
//!
//! The pure core: the state as a value ([`state`]), the arithmetic on readings
//! ([`series`]), the rendering as a function of the state ([`render`]), the command parser
//! ([`command`]), the keys and typed lines applied to the state ([`keys`]), and commands
//! into the service's requests and its answers into log lines ([`request`]).
//!
//! Around it: the terminal loop ([`terminal`]: raw mode, alternate screen, restored on every
//! way out, one redraw per batch of events), and two sources feeding it the same readings
//! (the service's own messages: `WatchResponse`, `GetStateResponse`, `ListPoolsResponse`)
//! through one channel: [`remote`] (a gRPC client on a small tokio runtime thread,
//! `--connect`) and [`local`] (the data directory opened in-process, `--config`).
//!
//! ```text
//! input thread ──Key──▶ ┐                         ┌──Job──▶ remote (tokio) / local (Host)
//! signal thread ─Quit─▶ ├─▶ event loop: State ────┤
//! source ──Reading────▶ ┘     render on change    └ ◀─ Reading / Log lines ─┘
//! ```

pub(crate) mod command;
pub(crate) mod keys;
mod local;
mod remote;
pub(crate) mod render;
pub(crate) mod request;
pub(crate) mod series;
pub(crate) mod state;
mod terminal;

use std::io::IsTerminal as _;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::anyhow;
use crossterm::event::KeyEvent;

use super::args::{GlobalArgs, TuiArgs};
use super::{load_config, CmdResult, Failure};
use crate::service::proto::{GetStateResponse, ListPoolsResponse, WatchResponse};
use request::Call;
use state::State;

/// The shortest and longest `--refresh-ms`.
const REFRESH_MS_MIN: u64 = 10;
const REFRESH_MS_MAX: u64 = 60_000;

/// The shortest interval between two item readings (`GetState`): the bars need no more
/// than four a second, and each one is a control request the core thread answers.
const ITEMS_INTERVAL_MIN: Duration = Duration::from_millis(250);

/// What a source tells the dashboard.
#[derive(Debug)]
pub(crate) enum Reading {
    /// Every pool's counters.
    Watch(WatchResponse),
    /// The pools, their state and error.
    Pools(ListPoolsResponse),
    /// One pool's items.
    State(GetStateResponse),
    /// A pool's catalog: each item's initial stock (its bar's full length).
    Catalog {
        /// The pool.
        pool: String,
        /// Item id and initial stock, in catalog order.
        items: Vec<(String, state::Stock)>,
    },
    /// A line for the log pane (a command's answer, a lost connection, ...).
    Log(String),
}

impl Reading {
    /// Applies the reading to the dashboard's state.
    fn apply(self, state: &mut State) {
        match self {
            Reading::Watch(w) => state.apply_watch(w),
            Reading::Pools(p) => state.apply_pools(p),
            Reading::State(s) => state.apply_state("", s),
            Reading::Catalog { pool, items } => {
                let view = state.pool_mut(&pool);
                for (item, initial) in items {
                    view.set_initial(&item, initial);
                }
            }
            Reading::Log(line) => state.log(line),
        }
    }
}

/// What reaches the event loop.
#[derive(Debug)]
pub(crate) enum Event {
    /// A key press (from the input thread).
    Key(KeyEvent),
    /// The terminal changed size.
    Resize,
    /// SIGINT, SIGTERM or SIGHUP: leave as `q` does.
    Quit,
    /// A source's reading.
    Reading(Reading),
}

/// A command for a source: the call, the pool it is for, and the line typed (for the log).
#[derive(Debug)]
pub(crate) struct Job {
    /// What to ask.
    pub(crate) call: Call,
    /// The line as typed.
    pub(crate) line: String,
}

/// Where readings come from; dropping it ends the source.
#[derive(Debug)]
pub(crate) enum Source {
    /// `--connect`: jobs to the network thread.
    Remote(tokio::sync::mpsc::UnboundedSender<Job>),
    /// `--config`: jobs to the thread that owns the host, joined at the end (it shuts the
    /// pools down: final snapshot).
    Local(mpsc::Sender<Job>, std::thread::JoinHandle<Option<String>>),
}

impl Source {
    /// Hands a job to the source; `false` when it has ended.
    fn send(&self, job: Job) -> bool {
        match self {
            Source::Remote(jobs) => jobs.send(job).is_ok(),
            Source::Local(jobs, _) => jobs.send(job).is_ok(),
        }
    }

    /// Ends the source; waits for a local one to shut its pools down.
    fn finish(self) -> Option<String> {
        match self {
            Source::Remote(jobs) => {
                drop(jobs);
                None
            }
            Source::Local(jobs, thread) => {
                drop(jobs);
                thread
                    .join()
                    .unwrap_or_else(|_| Some("the data directory's thread panicked".into()))
            }
        }
    }
}

/// `rewardpool tui [--connect HOST:PORT] [--refresh-ms MS]`.
pub(crate) fn run(global: &GlobalArgs, args: &TuiArgs) -> CmdResult {
    if !(REFRESH_MS_MIN..=REFRESH_MS_MAX).contains(&args.refresh_ms) {
        return Err(Failure::bad_input(anyhow!(
            "--refresh-ms {}: {REFRESH_MS_MIN} to {REFRESH_MS_MAX}",
            args.refresh_ms
        )));
    }
    let refresh = Duration::from_millis(args.refresh_ms);
    let endpoint = args.connect.as_deref().map(remote::endpoint).transpose()?;
    if !std::io::stdout().is_terminal() {
        return Err(Failure::bad_input(anyhow!(
            "rewardpool tui draws on a terminal: its output is not one (run it in a terminal; \
             `rewardpool state` and the service's Watch serve scripts)"
        )));
    }
    let (events, inbox) = mpsc::channel();
    // The source starts before the terminal changes: a refusal (a held lock, a bad
    // configuration) is one sentence on a normal terminal, never raw mode left behind.
    let (source, title) = match (&args.connect, endpoint) {
        (Some(address), Some(endpoint)) => {
            (remote::start(address, endpoint, refresh, events.clone())?, address.clone())
        }
        _ => {
            let config = load_config(global)?;
            let title = config.working_dir.display().to_string();
            (local::start(config, refresh, events.clone())?, title)
        }
    };
    let mut state = State::new(&title);
    state.log(format!("rewardpool tui on {title}: h for the commands, ? for the keys"));
    let ran = terminal::run(&mut state, refresh, &events, &inbox, &source);
    let finished = source.finish();
    ran?;
    match finished {
        Some(why) => Err(Failure::failed(anyhow!(why))),
        None => Ok(()),
    }
}

/// Items are read every `n`th reading: at most four times a second.
fn items_every(refresh: Duration) -> u32 {
    let n = ITEMS_INTERVAL_MIN.as_millis().div_ceil(refresh.as_millis().max(1));
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_read_at_most_four_times_a_second() {
        assert_eq!(items_every(Duration::from_millis(1000)), 1);
        assert_eq!(items_every(Duration::from_millis(250)), 1);
        assert_eq!(items_every(Duration::from_millis(100)), 3);
        assert_eq!(items_every(Duration::from_millis(10)), 25);
    }
}
