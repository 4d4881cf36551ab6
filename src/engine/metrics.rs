//! Reading an engine's counters without stopping its core thread: the core updates a few
//! atomics once per group (`EngineStats`, [`Counters`]), the journal its own
//! (`JournalStats`); a reading is a handful of `Relaxed` loads, never a command on the
//! control queue.
//!
//! What the core publishes, and when (never per draw):
//!
//! | counter | updated | meaning |
//! |---|---|---|
//! | `empty_draws`, `pulls`, `replayed`, `key_conflicts` | at each commit | counted in plain integers while serving (empty draws by the pool, on the branch only an empty pool takes), stored once per group |
//! | `group_size` | at each commit | draws in the group (an update's group holds 0) |
//! | `commit_latency` | when the core sees a group durable | from the group's opening (right before its first draw) to that moment |
//! | `ring_waiting` | each pass over the rings | requests the core found waiting in clients' rings |
//! | `in_flight` | at each commit and publish | requests taken from the rings, not yet answered |
//! | remaining quantities | at most [`REMAINING_PER_GROUP`] items per group, the rest when idle | see [`Remaining`] |
//!
//! All stores are `Relaxed`: these are observers' numbers, nothing else is read through them,
//! and each one has a single writer (the core thread), so a load-add-store stands for a
//! `fetch_add` without its locked instruction.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::Shared;
use crate::ingress::ItemIds;
use crate::journal::{FailureKind, JournalMetrics, JournalStats};
use crate::pool::{ItemIndex, Pool, Quantity, RequestId};

/// Buckets of a [`Histogram`]: fixed powers of two, the last one unbounded.
pub const HISTOGRAM_BUCKETS: usize = 24;

/// The group-size histogram's first bound: 2^0 = 1 draw (its buckets go to 2^22 draws).
const GROUP_SIZE_LOG2_MIN: u32 = 0;

/// The commit-latency histogram's first bound: 2^10 ns ≈ 1 µs (its buckets go to 2^32 ns
/// ≈ 4.3 s).
const COMMIT_LATENCY_LOG2_MIN: u32 = 10;

/// Items whose remaining quantity the core republishes per group, at most: a catalog this
/// small is exact after every group; a larger one is swept in turns, and finished whenever
/// the core is idle (see [`Meter::remaining`]). Bounds the per-group cost to 64 loads and
/// stores.
pub const REMAINING_PER_GROUP: usize = 64;

/// Items the core republishes per idle pass, at most: an idle sweep of a large catalog is
/// done in slices, so that a request arriving meanwhile waits for one slice at most.
const REMAINING_PER_IDLE_PASS: usize = 4096;

/// A remaining-quantity cell of an unlimited item.
const UNLIMITED: u64 = u64::MAX;

/// A reading of an engine's counters. Each counter only grows; being separate `Relaxed`
/// loads, the set is not one instant (e.g. `draws_acknowledged` may briefly lead
/// `draws_committed` in a reading taken while groups complete).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Draws in committed groups since the engine started.
    pub draws_committed: u64,
    /// Requests answered since start: draws acknowledged (durable) and draws refused while
    /// the disk was full.
    pub draws_acknowledged: u64,
    /// Groups committed since start.
    pub groups_committed: u64,
    /// The newest request id in a committed group.
    pub last_request_id: RequestId,
    /// The newest request id in a durable (acknowledged) group: what a log shipper may
    /// read up to.
    pub durable_request_id: RequestId,
    /// Clients connected now.
    pub clients: u64,
    /// The journal's counters, when it keeps any (the durable log does).
    pub journal: Option<JournalMetrics>,
    /// The kind of failure that stopped the engine, if one did.
    pub failure: Option<FailureKind>,
    /// The core thread has stopped (shut down or failed).
    pub stopped: bool,
    /// Intake is closed (shutdown begun): new draws are refused.
    pub closing: bool,
    /// Draws in committed groups that found nothing available (part of `draws_committed`).
    pub empty_draws: u64,
    /// Pull requests (`Client::pull`, any length) served with new draws, in committed
    /// groups; their draws are in `draws_committed`. A replayed pull counts in `replayed`.
    pub pulls: u64,
    /// Keyed requests (draws or pulls) answered from the idempotency-key window with their
    /// original outcomes, drawing nothing, in committed groups.
    pub replayed: u64,
    /// Keyed requests refused because their key was known with another count.
    pub key_conflicts: u64,
    /// Requests the core found waiting in clients' rings at its last pass (before taking
    /// them): the backlog not yet served.
    pub ring_waiting: u64,
    /// Requests taken from the rings whose answer is not yet published (their group is
    /// not yet durable), as of the last commit or publish.
    pub in_flight: u64,
    /// Draws per committed group (its sum is `draws_committed`; an update's group counts
    /// as 0 draws).
    pub group_size: Histogram,
    /// Nanoseconds from a group's opening (right before its first draw) until the core saw
    /// it durable and published its answers: the longest a request of the group waited in
    /// the engine, its time in the ring aside. One sample per group made durable.
    pub commit_latency: Histogram,
}

/// What a pool is doing, from [`Metrics::run_state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunState {
    /// Serving draws.
    Running,
    /// Intake closed, answering what is in flight (shutdown begun).
    Stopping,
    /// The core thread stopped after a clean shutdown.
    Stopped,
    /// The journal failed: nothing more is served (restart to recover).
    Failed,
}

impl RunState {
    /// Every state, in a fixed order (for an exporter that writes each as a label).
    pub const ALL: [RunState; 4] =
        [RunState::Running, RunState::Stopping, RunState::Stopped, RunState::Failed];

    /// The state's name: `running`, `stopping`, `stopped` or `failed`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Stopping => "stopping",
            RunState::Stopped => "stopped",
            RunState::Failed => "failed",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Metrics {
    /// The pool's state: failed when the journal failed (also while stopping), else
    /// stopped, stopping (intake closed) or running.
    #[must_use]
    pub fn run_state(&self) -> RunState {
        if self.failure.is_some() {
            RunState::Failed
        } else if self.stopped {
            RunState::Stopped
        } else if self.closing {
            RunState::Stopping
        } else {
            RunState::Running
        }
    }
}

/// A reading of a histogram with fixed power-of-two buckets: bucket `i` counts the samples
/// in (2^(k+i-1), 2^(k+i)] for the histogram's first bound 2^k (the first bucket also takes
/// everything below, the last everything above: it is unbounded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: [u64; HISTOGRAM_BUCKETS],
    sum: u64,
    log2_min: u32,
}

impl Histogram {
    /// Samples recorded.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of the samples.
    #[must_use]
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Each bucket's upper bound (inclusive; `None` for the last, unbounded one) and the
    /// samples at or below it: cumulative counts, as Prometheus' `_bucket{le=...}` lines
    /// take them. The last count is [`Histogram::count`].
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        let last = HISTOGRAM_BUCKETS - 1;
        self.counts.iter().enumerate().scan(0u64, move |total, (i, n)| {
            *total += n;
            let bound = (i < last).then(|| 1u64 << (self.log2_min + i as u32));
            Some((bound, *total))
        })
    }
}

/// The atomic side of a [`Histogram`]: one writer (the core thread), any readers.
struct AtomicHistogram {
    counts: [AtomicU64; HISTOGRAM_BUCKETS],
    sum: AtomicU64,
    log2_min: u32,
}

impl AtomicHistogram {
    fn new(log2_min: u32) -> AtomicHistogram {
        AtomicHistogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
            log2_min,
        }
    }

    /// The bucket of `value`: the smallest `i` with value <= 2^(log2_min + i), or the last.
    fn bucket(&self, value: u64) -> usize {
        let ceil_log2 = if value <= 1 { 0 } else { 64 - (value - 1).leading_zeros() };
        (ceil_log2.saturating_sub(self.log2_min) as usize).min(HISTOGRAM_BUCKETS - 1)
    }

    /// Records one sample. Core thread only (the single writer).
    fn record(&self, value: u64) {
        let i = self.bucket(value);
        bump(&self.counts[i], 1);
        bump(&self.sum, value);
    }

    fn read(&self) -> Histogram {
        Histogram {
            // Relaxed: an observer's counters (see the module docs).
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum: self.sum.load(Ordering::Relaxed),
            log2_min: self.log2_min,
        }
    }
}

/// Adds `n` to a counter that only the core thread writes: a load and a store rather than a
/// `fetch_add` (no locked instruction). Relaxed: an observer's counter.
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// What the core counts while serving a group, in plain integers: cumulative since start,
/// stored into [`Counters`] at each commit (`Counters::commit`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tally {
    pub(crate) empty_draws: u64,
    pub(crate) pulls: u64,
    pub(crate) replayed: u64,
    pub(crate) key_conflicts: u64,
}

/// The core thread's counters beyond [`super::EngineStats`], for [`Metrics`]. Single writer:
/// the core thread.
pub(crate) struct Counters {
    empty_draws: AtomicU64,
    pulls: AtomicU64,
    replayed: AtomicU64,
    key_conflicts: AtomicU64,
    ring_waiting: AtomicU64,
    in_flight: AtomicU64,
    group_size: AtomicHistogram,
    commit_latency: AtomicHistogram,
}

impl Counters {
    pub(crate) fn new() -> Counters {
        Counters {
            empty_draws: AtomicU64::new(0),
            pulls: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            key_conflicts: AtomicU64::new(0),
            ring_waiting: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            group_size: AtomicHistogram::new(GROUP_SIZE_LOG2_MIN),
            commit_latency: AtomicHistogram::new(COMMIT_LATENCY_LOG2_MIN),
        }
    }

    /// A group of `draws` draws was committed; `tally` is the core's count since start.
    pub(crate) fn commit(&self, draws: u32, tally: &Tally) {
        // Relaxed: observers' counters, once per group (see the module docs).
        self.empty_draws.store(tally.empty_draws, Ordering::Relaxed);
        self.pulls.store(tally.pulls, Ordering::Relaxed);
        self.replayed.store(tally.replayed, Ordering::Relaxed);
        self.key_conflicts.store(tally.key_conflicts, Ordering::Relaxed);
        self.group_size.record(u64::from(draws));
    }

    /// A group became durable `ns` nanoseconds after it was opened.
    pub(crate) fn durable(&self, ns: u64) {
        self.commit_latency.record(ns);
    }

    /// The core found `n` requests waiting in the rings at this pass.
    #[inline]
    pub(crate) fn set_ring_waiting(&self, n: u64) {
        // Relaxed: an observer's gauge. Stored only when it changed, so an idle core's
        // passes write nothing.
        if self.ring_waiting.load(Ordering::Relaxed) != n {
            self.ring_waiting.store(n, Ordering::Relaxed);
        }
    }

    /// Requests taken and not yet answered.
    pub(crate) fn set_in_flight(&self, n: u64) {
        // Relaxed: an observer's gauge.
        self.in_flight.store(n, Ordering::Relaxed);
    }
}

/// Per-item remaining quantities, published by the core thread into a table of atomics
/// (one `u64` per item, `u64::MAX` for unlimited) that readers load without asking the
/// core.
///
/// - **When.** After each group that drew, the core marks every item stale and republishes
///   up to [`REMAINING_PER_GROUP`] of them (a rotating cursor); when idle it republishes
///   the rest, [`REMAINING_PER_IDLE_PASS`] per pass. A catalog of at most
///   `REMAINING_PER_GROUP` items is therefore exact after every group; a larger one lags
///   while the core is busy and catches up within `len / REMAINING_PER_GROUP` groups, or at
///   its first idle moment. A state read ([`crate::Engine::state`]) and the core's stop
///   republish everything, so after either the table equals the pool exactly.
/// - **Items added by an update.** The table is allocated at start for the catalog with
///   room to spare (an eighth more, plus 64: 8 bytes an item); an update that adds an item
///   past that room allocates a table twice as large on the core thread (an update
///   allocates anyway: it is a control command, off the draw path) and swaps it in under a
///   lock that only readers and such updates take. No item is ever left out, and growing
///   costs one copy per doubling.
pub(crate) struct Remaining {
    current: Mutex<Arc<RemainingTable>>,
}

struct RemainingTable {
    /// Items published; `cells[..len]` are valid.
    len: AtomicUsize,
    cells: Box<[AtomicU64]>,
}

impl RemainingTable {
    fn with_capacity(capacity: usize) -> RemainingTable {
        RemainingTable {
            len: AtomicUsize::new(0),
            cells: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn encode(quantity: Quantity) -> u64 {
    match quantity {
        Quantity::Finite(n) => n.min(UNLIMITED - 1),
        Quantity::Unlimited => UNLIMITED,
    }
}

fn decode(cell: u64) -> Quantity {
    if cell == UNLIMITED {
        Quantity::Unlimited
    } else {
        Quantity::Finite(cell)
    }
}

impl Remaining {
    /// A table for `pool`'s items, all published, and the core's handle on it.
    pub(crate) fn new(pool: &Pool) -> (Remaining, RemainingWriter) {
        let capacity = pool.len() + pool.len() / 8 + 64;
        let table = Arc::new(RemainingTable::with_capacity(capacity));
        let mut writer = RemainingWriter { table: Arc::clone(&table), cursor: 0, stale: 0 };
        for i in 0..pool.len() {
            writer.push(pool, i);
        }
        (Remaining { current: Mutex::new(table) }, writer)
    }

    /// Every item's remaining quantity as last published, in index order.
    pub(crate) fn read(&self) -> Vec<Quantity> {
        let table = Arc::clone(&self.current.lock().unwrap_or_else(|e| e.into_inner()));
        // Acquire: pairs with the Release store of `len` in `RemainingWriter::push`, so
        // every cell below `len` holds a published value.
        let len = table.len.load(Ordering::Acquire);
        // Relaxed: each cell is an observer's number.
        table.cells[..len].iter().map(|c| decode(c.load(Ordering::Relaxed))).collect()
    }
}

/// The core thread's end of [`Remaining`].
pub(crate) struct RemainingWriter {
    table: Arc<RemainingTable>,
    /// The next item a sweep republishes.
    cursor: usize,
    /// Items still to republish before the table matches the pool again.
    stale: usize,
}

impl RemainingWriter {
    fn len(&self) -> usize {
        // Relaxed: the core is the only writer of `len`.
        self.table.len.load(Ordering::Relaxed)
    }

    /// Publishes item `i`, the next one past the table's length.
    fn push(&mut self, pool: &Pool, i: usize) {
        let q = pool.quantity(ItemIndex(i as u32)).map_or(0, encode);
        // Relaxed: the Release store of `len` below publishes it.
        self.table.cells[i].store(q, Ordering::Relaxed);
        // Release: pairs with the Acquire load in `Remaining::read`.
        self.table.len.store(i + 1, Ordering::Release);
    }

    /// The pool changed (a group drew, an update applied): every item may be stale.
    #[inline]
    pub(crate) fn changed(&mut self) {
        self.stale = self.len();
    }

    /// True while some item may differ from the pool.
    #[inline]
    pub(crate) fn is_stale(&self) -> bool {
        self.stale > 0
    }

    /// Republishes up to `budget` stale items from the cursor on.
    pub(crate) fn sweep(&mut self, pool: &Pool, budget: usize) {
        let len = self.len();
        let n = budget.min(self.stale);
        for _ in 0..n {
            let q = pool.quantity(ItemIndex(self.cursor as u32)).map_or(0, encode);
            // Relaxed: an observer's number.
            self.table.cells[self.cursor].store(q, Ordering::Relaxed);
            self.cursor += 1;
            if self.cursor == len {
                self.cursor = 0;
            }
        }
        self.stale -= n;
    }

    /// After a group: republishes the stale items the per-group budget allows.
    #[inline]
    pub(crate) fn sweep_group(&mut self, pool: &Pool) {
        self.sweep(pool, REMAINING_PER_GROUP);
    }

    /// When idle: republishes the next slice of stale items.
    pub(crate) fn sweep_idle(&mut self, pool: &Pool) {
        self.sweep(pool, REMAINING_PER_IDLE_PASS);
    }

    /// Republishes every item now (a state read, the core's stop).
    pub(crate) fn sweep_all(&mut self, pool: &Pool) {
        self.changed();
        self.sweep(pool, usize::MAX);
    }

    /// An update added items up to `pool.len()`: publishes them, growing the table when it
    /// is full (allocates; an update is a control command, off the draw path).
    pub(crate) fn added(&mut self, pool: &Pool, shared: &Remaining) {
        let len = self.len();
        if pool.len() > self.table.cells.len() {
            let grown = RemainingTable::with_capacity(pool.len() * 2);
            for (to, from) in grown.cells.iter().zip(&self.table.cells[..len]) {
                // Relaxed: the table is not shared yet.
                to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            grown.len.store(len, Ordering::Relaxed);
            self.table = Arc::new(grown);
            // The lock's release publishes the new table's contents to the reader that
            // takes it next.
            *shared.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&self.table);
        }
        for i in len..pool.len() {
            self.push(pool, i);
        }
        self.cursor = self.cursor.min(pool.len().saturating_sub(1));
    }
}

/// Reads an engine's [`Metrics`] from any thread, also after the engine shut down (see
/// [`crate::Engine::meter`]). Cheap to clone; holds no lock.
#[derive(Clone)]
pub struct Meter {
    shared: Arc<Shared>,
    journal: Option<Arc<JournalStats>>,
}

impl fmt::Debug for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meter").finish_non_exhaustive()
    }
}

impl Meter {
    pub(super) fn new(shared: Arc<Shared>, journal: Option<Arc<JournalStats>>) -> Meter {
        Meter { shared, journal }
    }

    /// The counters now.
    #[must_use]
    pub fn read(&self) -> Metrics {
        read(&self.shared, self.journal.as_deref())
    }

    /// The journal's own counters and retention hold, if it keeps any (the durable log
    /// does): what a log shipper on another thread holds segments through
    /// ([`JournalStats::retain_from`]).
    #[must_use]
    pub fn journal_stats(&self) -> Option<&JournalStats> {
        self.journal.as_deref()
    }

    /// Every item's remaining quantity as the core last published it, in index order (name
    /// them with [`Meter::item_ids`]). Exact after a quiescent moment (the core idle, or
    /// right after [`crate::Engine::state`] or the engine's stop); while draws run, items
    /// beyond the first [`REMAINING_PER_GROUP`] may lag by a few groups. Allocates the
    /// vector; takes a lock the core thread takes only for an update that adds an item.
    #[must_use]
    pub fn remaining(&self) -> Vec<Quantity> {
        self.shared.remaining.read()
    }

    /// Item ids by index, to name [`Meter::remaining`]'s entries.
    #[must_use]
    pub fn item_ids(&self) -> ItemIds {
        ItemIds::new(Arc::clone(&self.shared.item_ids))
    }
}

pub(super) fn read(shared: &Shared, journal: Option<&JournalStats>) -> Metrics {
    let stats = &shared.stats;
    let counters = &shared.counters;
    // Relaxed: observers' counters, stored by the core once per group (`Core::commit`,
    // `Core::publish`); nothing else is read through them.
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let last = load(&stats.last_request_id);
    Metrics {
        draws_committed: last - shared.start_request_id,
        draws_acknowledged: load(&stats.draws_acknowledged),
        groups_committed: load(&stats.groups_committed),
        last_request_id: RequestId(last),
        durable_request_id: RequestId(load(&stats.durable_request_id)),
        // Relaxed: a counter bounding registrations.
        clients: load(&shared.clients),
        journal: journal.map(JournalStats::read),
        failure: shared.intake.failure_kind(),
        stopped: shared.is_stopped(),
        closing: shared.intake.is_closing(),
        empty_draws: load(&counters.empty_draws),
        pulls: load(&counters.pulls),
        replayed: load(&counters.replayed),
        key_conflicts: load(&counters.key_conflicts),
        ring_waiting: load(&counters.ring_waiting),
        in_flight: load(&counters.in_flight),
        group_size: counters.group_size.read(),
        commit_latency: counters.commit_latency.read(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{ItemSpec, Rng};

    #[test]
    fn histogram_buckets_are_powers_of_two_and_cumulative() {
        let h = AtomicHistogram::new(0);
        for v in [0, 1, 2, 3, 4, 5, 1 << 22, (1 << 22) + 1, u64::MAX / 2] {
            h.record(v);
        }
        assert_eq!(h.bucket(0), 0);
        assert_eq!(h.bucket(1), 0);
        assert_eq!(h.bucket(2), 1);
        assert_eq!(h.bucket(3), 2);
        assert_eq!(h.bucket(4), 2);
        assert_eq!(h.bucket(5), 3);
        assert_eq!(h.bucket(1 << 22), 22);
        assert_eq!(h.bucket((1 << 22) + 1), 23);
        let r = h.read();
        assert_eq!(r.count(), 9);
        let buckets: Vec<_> = r.cumulative().collect();
        assert_eq!(buckets.len(), HISTOGRAM_BUCKETS);
        assert_eq!(buckets[0], (Some(1), 2));
        assert_eq!(buckets[1], (Some(2), 3));
        assert_eq!(buckets[2], (Some(4), 5));
        assert_eq!(buckets[3], (Some(8), 6));
        assert_eq!(buckets[22], (Some(1 << 22), 7));
        assert_eq!(buckets[23], (None, 9));
        let latency = AtomicHistogram::new(COMMIT_LATENCY_LOG2_MIN);
        assert_eq!(latency.bucket(1_000), 0);
        assert_eq!(latency.bucket(1_025), 1);
        assert_eq!(latency.read().cumulative().next(), Some((Some(1_024), 0)));
    }

    fn pool(n: usize) -> Pool {
        let items: Vec<_> = (0..n).map(|i| ItemSpec::new(&format!("i{i}"), 3, 1)).collect();
        Pool::new(&items, Rng::from_seed(7)).unwrap()
    }

    #[test]
    fn a_large_catalog_is_swept_in_turns_and_exact_once_the_sweep_ends() {
        let n = REMAINING_PER_GROUP * 3 + 5;
        let mut pool = pool(n);
        let (shared, mut writer) = Remaining::new(&pool);
        assert_eq!(shared.read(), vec![Quantity::Finite(3); n]);
        for _ in 0..n {
            pool.draw();
        }
        writer.changed();
        writer.sweep_group(&pool);
        let state: Vec<_> = pool.state().items.iter().map(|i| i.quantity).collect();
        assert_ne!(shared.read(), state, "one group's budget covers part of the catalog");
        while writer.is_stale() {
            writer.sweep_group(&pool);
        }
        assert_eq!(shared.read(), state);
    }

    #[test]
    fn added_items_grow_the_table_and_readers_see_them() {
        let mut pool = pool(2);
        let (shared, mut writer) = Remaining::new(&pool);
        let old = Arc::clone(&shared.current.lock().unwrap());
        for i in 0..100 {
            pool.update(&format!("new{i}"), Some(Quantity::Unlimited), Some(1)).unwrap();
            writer.added(&pool, &shared);
        }
        let read = shared.read();
        assert_eq!(read.len(), 102);
        assert_eq!(read[0], Quantity::Finite(3));
        assert_eq!(read[101], Quantity::Unlimited);
        assert!(!Arc::ptr_eq(&old, &shared.current.lock().unwrap()), "the table grew");
        writer.sweep_all(&pool);
        assert!(!writer.is_stale());
    }
}
