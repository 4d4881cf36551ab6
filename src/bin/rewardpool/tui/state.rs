//! The dashboard's state as a plain value: what the panes show, updated by applying
//! readings (`apply_watch`, `apply_pools`, `apply_state`) and key presses. Pure: no clock,
//! no I/O, so every transition is a unit test.

use std::collections::VecDeque;

use super::series::{rate_per_s, Delta, Series};
use crate::service::proto::{
    GetStateResponse, Histogram, ListPoolsResponse, PoolMetrics, RewardItem, WatchResponse,
};

/// Samples kept per time series: ten minutes at the default one-second refresh.
pub(crate) const SERIES_LEN_MAX: usize = 600;

/// Lines the log pane keeps (older ones are dropped).
pub(crate) const LOG_LEN_MAX: usize = 500;

/// Commands the history keeps.
pub(crate) const HISTORY_LEN_MAX: usize = 200;

/// Characters the command line takes (a longer line is not a command).
pub(crate) const INPUT_LEN_MAX: usize = 256;

/// A pool's run state, as `PoolMetrics.state` / `PoolInfo.state` name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RunState {
    /// Serving draws.
    Running,
    /// Intake closed, answering what is in flight.
    Stopping,
    /// The journal failed: nothing more is served.
    Failed,
    /// A state this dashboard does not know (a newer server), shown as sent.
    Other(String),
}

impl RunState {
    /// The state named `word`.
    pub(crate) fn from_word(word: &str) -> RunState {
        match word {
            "running" => RunState::Running,
            "stopping" => RunState::Stopping,
            "failed" => RunState::Failed,
            other => RunState::Other(other.to_owned()),
        }
    }

    /// The state's name.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            RunState::Running => "running",
            RunState::Stopping => "stopping",
            RunState::Failed => "failed",
            RunState::Other(word) => word,
        }
    }
}

/// An item's stock as the wire carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stock {
    /// This many units remain.
    Finite(u64),
    /// Never runs out.
    Unlimited,
}

impl Stock {
    /// The wire's encoding: -1 (or any negative) = unlimited.
    pub(crate) fn from_wire(quantity: i32) -> Stock {
        u64::try_from(quantity).map_or(Stock::Unlimited, Stock::Finite)
    }
}

/// One item of a pool.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ItemView {
    /// The item's id.
    pub(crate) id: String,
    /// Its stock now.
    pub(crate) current: Stock,
    /// The stock its bar is measured against: the catalog's, else the first seen; raised
    /// when the stock grows past it (a restock).
    pub(crate) initial: Stock,
    /// Its weight.
    pub(crate) weight: i64,
    /// The chance of this item on the next draw.
    pub(crate) odds: f64,
}

/// The figures of one interval between two Watch readings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Interval {
    /// Commit latency quantiles, ns (bucket bounds): p50, p99, p99.9.
    pub(crate) commit_ns: Option<[u64; 3]>,
    /// Groups committed per second.
    pub(crate) groups_per_s: u64,
    /// Draws per group: mean and p99 (bucket bound).
    pub(crate) group_size: Option<(u64, u64)>,
}

/// Everything the dashboard knows of one pool.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PoolView {
    /// The pool's name.
    pub(crate) name: String,
    /// Its run state.
    pub(crate) run: RunState,
    /// Why it failed, when it did (from `PoolMetrics.error` or `PoolInfo.error`).
    pub(crate) error: Option<String>,
    /// Its items, in the server's order.
    pub(crate) items: Vec<ItemView>,
    /// The newest request id in a committed group.
    pub(crate) last_request_id: u64,
    /// The commitment to the seed it draws with now: hex, its segment, the first request
    /// id drawn from it (`None`: the pool keeps no log, or an older server).
    pub(crate) commitment: Option<(String, u64, u64)>,
    /// Clients connected.
    pub(crate) clients: u64,
    /// `Some` when the server follows this pool as a standby (`serve --standby`): how far
    /// behind the stream it is.
    pub(crate) standby: Option<Lag>,
    /// Requests waiting in the clients' rings at the last reading.
    pub(crate) ring_waiting: u64,
    /// Requests taken, not yet answered, at the last reading.
    pub(crate) in_flight: u64,
    /// Draws committed per second, one sample per interval.
    pub(crate) draws_per_s: Series,
    /// Commit latency p50 / p99 / p99.9 (ns), one sample per interval with commits.
    pub(crate) latency_ns: [Series; 3],
    /// Mean draws per group, one sample per interval with groups.
    pub(crate) group_size_mean: Series,
    /// Ring backlog, one sample per reading.
    pub(crate) ring_waiting_series: Series,
    /// The last interval's figures.
    pub(crate) interval: Interval,
    /// The previous reading, to take deltas from.
    previous: Option<PoolMetrics>,
    /// The previous reading's time (Unix ms).
    previous_ms: u64,
}

/// A standby's lag behind its pool's stream (`PoolMetrics.replica_lag_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lag {
    /// Stream messages not yet applied.
    pub(crate) messages: u64,
    /// Request ids not yet applied.
    pub(crate) draws: u64,
    /// Age of the oldest message not yet applied, in seconds.
    pub(crate) seconds: u64,
}

impl PoolView {
    /// A pool seen for the first time.
    pub(crate) fn new(name: &str) -> PoolView {
        PoolView {
            name: name.to_owned(),
            run: RunState::Running,
            error: None,
            items: Vec::new(),
            last_request_id: 0,
            commitment: None,
            clients: 0,
            standby: None,
            ring_waiting: 0,
            in_flight: 0,
            draws_per_s: Series::new(SERIES_LEN_MAX),
            latency_ns: std::array::from_fn(|_| Series::new(SERIES_LEN_MAX)),
            group_size_mean: Series::new(SERIES_LEN_MAX),
            ring_waiting_series: Series::new(SERIES_LEN_MAX),
            interval: Interval::default(),
            previous: None,
            previous_ms: 0,
        }
    }

    /// Applies one Watch reading taken at `unix_ms`: the gauges as read, and the deltas
    /// against the previous reading as rates and quantiles. A counter that went back (the
    /// server restarted) or a clock that did not move gives no interval: the reading only
    /// becomes the base of the next.
    pub(crate) fn apply_metrics(&mut self, unix_ms: u64, m: PoolMetrics) {
        self.run = RunState::from_word(&m.state);
        if !m.error.is_empty() {
            self.error = Some(m.error.clone());
        } else if self.run == RunState::Running {
            // A running pool (a recovered one) has no error; a stopping one keeps the last.
            self.error = None;
        }
        self.last_request_id = m.last_request_id;
        self.commitment = (!m.commitment.is_empty())
            .then(|| (m.commitment.clone(), m.commitment_segment, m.commitment_first_request_id));
        self.clients = m.clients;
        self.standby = (m.role == "standby").then_some(Lag {
            messages: m.replica_lag_messages,
            draws: m.replica_lag_draws,
            seconds: m.replica_lag_seconds,
        });
        self.ring_waiting = m.ring_waiting;
        self.in_flight = m.in_flight;
        self.ring_waiting_series.push(m.ring_waiting);
        if let Some(before) = self.previous.take() {
            let ms = unix_ms.saturating_sub(self.previous_ms);
            if let Some(interval) = interval(&before, &m, ms) {
                self.push_interval(interval, &before, &m, ms);
            }
        }
        self.previous = Some(m);
        self.previous_ms = unix_ms;
    }

    /// Adds one interval's samples.
    fn push_interval(
        &mut self,
        interval: Interval,
        before: &PoolMetrics,
        m: &PoolMetrics,
        ms: u64,
    ) {
        if let Some(draws) = rate_per_s(before.draws_committed, m.draws_committed, ms) {
            self.draws_per_s.push(draws);
        }
        if let Some(ns) = interval.commit_ns {
            for (series, v) in self.latency_ns.iter_mut().zip(ns) {
                series.push(v);
            }
        }
        if let Some((mean, _)) = interval.group_size {
            self.group_size_mean.push(mean);
        }
        self.interval = interval;
    }

    /// Applies a `GetState` answer: the items' stock; an item's initial stock is the first
    /// seen unless the catalog gave it, and grows with a restock past it.
    pub(crate) fn apply_items(&mut self, items: &[RewardItem], last_request_id: u64) {
        let mut next = Vec::with_capacity(items.len());
        for item in items {
            let current = Stock::from_wire(item.quantity);
            let known = self.items.iter().find(|v| v.id == item.item_id).map(|v| v.initial);
            let initial = match (known.unwrap_or(current), current) {
                (Stock::Finite(i), Stock::Finite(c)) => Stock::Finite(i.max(c)),
                (_, c) => c,
            };
            next.push(ItemView {
                id: item.item_id.clone(),
                current,
                initial,
                weight: item.probability,
                odds: item.odds,
            });
        }
        self.items = next;
        self.last_request_id = self.last_request_id.max(last_request_id);
    }

    /// Sets an item's initial stock from the catalog (before or after its first reading).
    pub(crate) fn set_initial(&mut self, item: &str, initial: Stock) {
        if let Some(view) = self.items.iter_mut().find(|v| v.id == item) {
            view.initial = initial;
        } else {
            self.items.push(ItemView {
                id: item.to_owned(),
                current: initial,
                initial,
                weight: 0,
                odds: 0.0,
            });
        }
    }
}

/// The figures between two readings `ms` apart; `None` when no time passed or a counter
/// went back.
fn interval(before: &PoolMetrics, after: &PoolMetrics, ms: u64) -> Option<Interval> {
    if ms == 0
        || after.draws_committed < before.draws_committed
        || after.groups_committed < before.groups_committed
    {
        return None;
    }
    let commit = delta(before.commit_latency_ns.as_ref(), after.commit_latency_ns.as_ref());
    let groups = delta(before.group_size.as_ref(), after.group_size.as_ref());
    let commit_ns =
        commit.and_then(|d| Some([d.quantile(0.5)?, d.quantile(0.99)?, d.quantile(0.999)?]));
    let group_size = groups.and_then(|d| Some((d.mean()?, d.quantile(0.99)?)));
    Some(Interval {
        commit_ns,
        groups_per_s: rate_per_s(before.groups_committed, after.groups_committed, ms)?,
        group_size,
    })
}

/// The samples of histogram `after` beyond `before`, when both are there.
fn delta(before: Option<&Histogram>, after: Option<&Histogram>) -> Option<Delta> {
    Delta::between(before?, after?)
}

/// Which pane has the focus (arrows / Tab move it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pane {
    /// The per-item bars.
    Items,
    /// Draws per second.
    Throughput,
    /// Commit latency over time.
    Latency,
    /// Commit latency and group sizes, ring occupancy.
    Commits,
    /// The log.
    Log,
    /// The command history.
    History,
    /// The command line.
    Command,
}

impl Pane {
    /// Every pane in focus order.
    pub(crate) const ALL: [Pane; 7] = [
        Pane::Items,
        Pane::Throughput,
        Pane::Latency,
        Pane::Commits,
        Pane::Log,
        Pane::History,
        Pane::Command,
    ];

    /// The pane `step` places away in focus order, wrapping.
    fn moved(self, step: isize) -> Pane {
        let len = Pane::ALL.len();
        let at = Pane::ALL.iter().position(|p| *p == self).unwrap_or(0);
        Pane::ALL[(at + len).wrapping_add_signed(step) % len]
    }
}

/// The dashboard's whole state.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct State {
    /// The pools, in the order first seen.
    pub(crate) pools: Vec<PoolView>,
    /// The index of the selected pool in `pools` (the panes follow it).
    pub(crate) selected: usize,
    /// The log pane's lines, oldest first.
    pub(crate) log: VecDeque<String>,
    /// The commands typed, oldest first.
    pub(crate) history: VecDeque<String>,
    /// The command line being typed.
    pub(crate) input: String,
    /// The focused pane.
    pub(crate) focus: Pane,
    /// The key map overlay shows.
    pub(crate) help: bool,
    /// Where the dashboard reads from (`HOST:PORT` or a data directory), for the title.
    pub(crate) source: String,
}

impl State {
    /// An empty dashboard reading from `source`.
    pub(crate) fn new(source: &str) -> State {
        State {
            pools: Vec::new(),
            selected: 0,
            log: VecDeque::new(),
            history: VecDeque::new(),
            input: String::new(),
            focus: Pane::Command,
            help: false,
            source: source.to_owned(),
        }
    }

    /// The selected pool, if any pool is known.
    pub(crate) fn pool(&self) -> Option<&PoolView> {
        self.pools.get(self.selected)
    }

    /// The pool named `name`, added when new.
    pub(crate) fn pool_mut(&mut self, name: &str) -> &mut PoolView {
        let at = match self.pools.iter().position(|p| p.name == name) {
            Some(at) => at,
            None => {
                self.pools.push(PoolView::new(name));
                self.pools.len() - 1
            }
        };
        &mut self.pools[at]
    }

    /// Applies a Watch message: each pool's counters.
    pub(crate) fn apply_watch(&mut self, reading: WatchResponse) {
        for m in reading.pools {
            let name = m.pool.clone();
            self.pool_mut(&name).apply_metrics(reading.unix_ms, m);
        }
    }

    /// Applies a `ListPools` answer: the pools, their state and error.
    pub(crate) fn apply_pools(&mut self, list: ListPoolsResponse) {
        for info in list.pools {
            let pool = self.pool_mut(&info.name);
            pool.run = RunState::from_word(&info.state);
            pool.error = (!info.error.is_empty()).then_some(info.error);
            pool.last_request_id = pool.last_request_id.max(info.last_request_id);
        }
    }

    /// Applies a `GetState` answer for `pool` (the answer's own `pool` field wins when set).
    pub(crate) fn apply_state(&mut self, pool: &str, state: GetStateResponse) {
        let name = if state.pool.is_empty() { pool } else { &state.pool };
        let name = name.to_owned();
        self.pool_mut(&name).apply_items(&state.items, state.last_request_id);
    }

    /// Selects the pool named `name`; an unknown name is an error naming the known ones.
    pub(crate) fn select(&mut self, name: &str) -> Result<(), String> {
        match self.pools.iter().position(|p| p.name == name) {
            Some(at) => {
                self.selected = at;
                Ok(())
            }
            None => {
                let known: Vec<&str> = self.pools.iter().map(|p| p.name.as_str()).collect();
                Err(format!("no pool {name:?} (pools: {})", known.join(", ")))
            }
        }
    }

    /// Selects the next (`step` 1) or previous (-1) pool, wrapping.
    pub(crate) fn select_moved(&mut self, step: isize) {
        let len = self.pools.len();
        if len > 0 {
            self.selected = (self.selected.min(len - 1) + len).wrapping_add_signed(step) % len;
        }
    }

    /// Moves the focus to the next (`step` 1) or previous (-1) pane.
    pub(crate) fn focus_moved(&mut self, step: isize) {
        self.focus = self.focus.moved(step);
    }

    /// Shows or hides the key map.
    pub(crate) fn toggle_help(&mut self) {
        self.help = !self.help;
    }

    /// Adds a line to the log pane, dropping the oldest past [`LOG_LEN_MAX`].
    pub(crate) fn log(&mut self, line: impl Into<String>) {
        push_bounded(&mut self.log, line.into(), LOG_LEN_MAX);
    }

    /// Types a character on the command line (ignored past [`INPUT_LEN_MAX`] or when a
    /// control character).
    pub(crate) fn input_push(&mut self, c: char) {
        if !c.is_control() && self.input.chars().count() < INPUT_LEN_MAX {
            self.input.push(c);
        }
    }

    /// Erases the command line's last character.
    pub(crate) fn input_backspace(&mut self) {
        self.input.pop();
    }

    /// Takes the typed line (Enter): the command line empties, a non-blank line goes to
    /// the history. Returns the line, trimmed.
    pub(crate) fn take_input(&mut self) -> String {
        let line = std::mem::take(&mut self.input).trim().to_owned();
        if !line.is_empty() {
            push_bounded(&mut self.history, line.clone(), HISTORY_LEN_MAX);
        }
        line
    }
}

/// Appends `line`, dropping the oldest entries past `len_max`.
fn push_bounded(lines: &mut VecDeque<String>, line: String, len_max: usize) {
    while lines.len() >= len_max {
        lines.pop_front();
    }
    lines.push_back(line);
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
