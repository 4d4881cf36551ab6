//! The terminal for the dashboard's lifetime: raw mode and the alternate screen, restored on
//! every way out (a return, an error, `q`, Ctrl+C, SIGINT/SIGTERM/SIGHUP, a panic: the
//! panic hook restores before the message prints); and the event loop.
//!
//! No flicker: ratatui keeps the last frame and writes only the cells that changed, and the
//! loop draws once per batch of events (a reading, a key) or per refresh tick, never in
//! between; the output is buffered and flushed once per frame.

use std::io::{self, BufWriter, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Once;
use std::thread;
use std::time::Duration;

use anyhow::anyhow;
use crossterm::{cursor, event, execute, terminal};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use super::keys::{apply_key, Action};
use super::render::render;
use super::request;
use super::state::State;
use super::{Event, Job, Source};
use crate::{CmdResult, Failure};

/// Bytes of output buffered per frame (a full 200 x 60 redraw with styles fits).
const OUT_BUFFER_SIZE: usize = 64 << 10;

/// Events handled before the next draw at most (a flood of readings still redraws).
const BATCH_LEN_MAX: usize = 256;

/// True while the terminal is in raw mode on the alternate screen (so it is restored once:
/// by the panic hook or by the guard, whichever comes first).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The terminal while the dashboard runs; dropping it restores the terminal.
struct Screen {
    terminal: Terminal<CrosstermBackend<BufWriter<Stdout>>>,
}

impl Drop for Screen {
    fn drop(&mut self) {
        // The terminal shows the cursor now, not when it drops after `restore` (then its
        // escape would follow the alternate screen's end).
        let _ = self.terminal.show_cursor();
        restore();
    }
}

/// Raw mode, the alternate screen, the cursor hidden; a panic hook that restores first.
fn enter() -> io::Result<Screen> {
    install_panic_hook();
    terminal::enable_raw_mode()?;
    // Release: pairs with the Acquire swap in `restore`.
    ACTIVE.store(true, Ordering::Release);
    let mut out = BufWriter::with_capacity(OUT_BUFFER_SIZE, io::stdout());
    let screen = execute!(out, terminal::EnterAlternateScreen, cursor::Hide)
        .and_then(|()| Terminal::new(CrosstermBackend::new(out)));
    match screen {
        Ok(terminal) => Ok(Screen { terminal }),
        Err(e) => {
            restore();
            Err(e)
        }
    }
}

/// Shows the cursor, leaves the alternate screen, turns raw mode off; once (later calls do
/// nothing). Errors are ignored: there is nothing better to do with a terminal that refuses.
fn restore() {
    // Acquire: pairs with the Release store in `enter`.
    if ACTIVE.swap(false, Ordering::Acquire) {
        let _ = execute!(io::stdout(), cursor::Show, terminal::LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}

/// A panic restores the terminal before its message prints (else the message lands on the
/// alternate screen, which is then wiped, and the shell is left in raw mode).
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// Runs the dashboard until `q`, Ctrl+C or a stop signal: draws, then waits for the next
/// event (at most `refresh`), handles every event waiting, draws again.
pub(super) fn run(
    state: &mut State,
    refresh: Duration,
    events: &Sender<Event>,
    inbox: &Receiver<Event>,
    source: &Source,
) -> CmdResult {
    let mut screen =
        enter().map_err(|e| Failure::failed(anyhow!(e).context("cannot set up the terminal")))?;
    spawn_input(events.clone())?;
    spawn_signals(events.clone())?;
    loop {
        screen
            .terminal
            .draw(|frame| render(state, frame))
            .map_err(|e| Failure::failed(anyhow!(e).context("cannot draw on the terminal")))?;
        let mut next = match inbox.recv_timeout(refresh) {
            Ok(event) => Some(event),
            Err(RecvTimeoutError::Timeout) => None,
            // Every sender gone: the input thread and the source ended; nothing can come.
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let mut handled = 0;
        while let Some(event) = next {
            if handle(state, event, source) == Flow::Quit {
                return Ok(());
            }
            handled += 1;
            next = if handled < BATCH_LEN_MAX { inbox.try_recv().ok() } else { None };
        }
    }
}

/// Whether the loop goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// Applies one event to the state; a command for the server goes to the source.
fn handle(state: &mut State, event: Event, source: &Source) -> Flow {
    // Test builds only: the pty test's way to see a panic restore the terminal.
    #[cfg(feature = "testing")]
    if matches!(event, Event::Key(_)) && std::env::var_os("REWARDPOOL_TUI_PANIC_ON_KEY").is_some() {
        panic!("REWARDPOOL_TUI_PANIC_ON_KEY is set: panicking on the first key, as asked");
    }
    match event {
        Event::Key(key) => match apply_key(state, key) {
            Action::None => {}
            Action::Quit => return Flow::Quit,
            Action::Run(command) => {
                let pool = state.pool().map_or("", |p| p.name.as_str());
                if let Some(call) = request::call(&command, pool) {
                    let line = state.history.back().cloned().unwrap_or_default();
                    if !source.send(Job { call, line }) {
                        state
                            .log("error: the connection's thread has ended: restart the dashboard");
                    }
                }
            }
        },
        // `Terminal::draw` resizes its buffers first: the next draw fits the new size.
        Event::Resize => {}
        Event::Quit => return Flow::Quit,
        Event::Reading(reading) => reading.apply(state),
    }
    Flow::Continue
}

/// The thread that reads the terminal's key and resize events.
fn spawn_input(events: Sender<Event>) -> CmdResult {
    let spawned = thread::Builder::new().name("rewardpool-tui-keys".into()).spawn(move || loop {
        let event = match event::read() {
            Ok(event::Event::Key(key)) => Event::Key(key),
            Ok(event::Event::Resize(..)) => Event::Resize,
            Ok(_) => continue,
            Err(e) => {
                let line = format!("error: cannot read the keyboard: {e} (SIGINT/SIGTERM quit)");
                let _ = events.send(Event::Reading(super::Reading::Log(line)));
                return;
            }
        };
        if events.send(event).is_err() {
            return;
        }
    });
    spawned.map(drop).map_err(|e| Failure::failed(anyhow!(e).context("cannot start a thread")))
}

/// The thread that turns SIGINT, SIGTERM and SIGHUP into a quit (in raw mode Ctrl+C is a
/// key, handled as one; these come from `kill` or a closed terminal).
fn spawn_signals(events: Sender<Event>) -> CmdResult {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Failure::failed(anyhow!(e).context("cannot watch for signals")))?;
    let spawned = thread::Builder::new().name("rewardpool-tui-signals".into()).spawn(move || {
        if signals.forever().next().is_some() {
            let _ = events.send(Event::Quit);
        }
    });
    spawned.map(drop).map_err(|e| Failure::failed(anyhow!(e).context("cannot start a thread")))
}
