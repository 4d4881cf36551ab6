//! The engine: a pinned core thread that owns a pool, fed by per-client SPSC rings (what a
//! caller touches, the client, its ring and its completion slots, is in `ingress`).
//!
//! Updates, state reads and shutdown travel on a bounded control queue (crossbeam
//! `ArrayQueue`); the core serves them between ring passes, after draining every ring, so
//! a client's draws sent before its update are logged before it.

mod affinity;
mod clock;
mod core_loop;
mod metrics;
mod prefault;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;

pub use affinity::{available_cores, restrict_current_to, CorePin, PinError};
pub use clock::Clock;
pub use metrics::{Histogram, Meter, Metrics, RunState, HISTOGRAM_BUCKETS, REMAINING_PER_GROUP};
// The caller's types live in `ingress`; these paths stay for callers that use them.
pub use crate::ingress::{Client, DrawError, ItemIds, Outcome, Pull, PullTicket, Ticket};
pub use crate::sync::IdleConfig;

use crate::ingress::{ClientShape, IdCell, Intake, Port, PULL_LEN_MAX};
use crate::journal::{FailureKind, Journal, JournalError, JournalStats};
use crate::pool::{
    ItemState, KeyWindow, Pool, PoolError, PoolState, Quantity, HOURS_MAX, KEYS_MAX,
};
use core_loop::Core;

/// How an engine runs. Every bound is fixed at start: nothing grows on the hot path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Requests a client may have in flight (its ring and slot capacity; rounded up to a
    /// power of two). Config: `wal.max_request_buffer_size`.
    pub ring_capacity: usize,
    /// Most draws in one group commit. Config: `wal.flush_after_n_draw`.
    pub flush_after_n_draw: u32,
    /// Longest time a group stays open after its first draw. Config: `wal.max_commit_delay_us`.
    pub max_commit_delay: Duration,
    /// Most requests taken from one ring in one pass.
    pub batch_len_max: usize,
    /// Most clients at once.
    pub clients_max: usize,
    /// Most committed groups waiting to become durable; the core waits when there are more.
    pub inflight_groups_max: usize,
    /// Where the core thread runs.
    pub core: CorePin,
    /// Where the journal's helper threads (flusher, preparer) run when the core thread is
    /// pinned: this core (the host's core plan, `host::plan_cores`), or with `None` the
    /// first other core this process may use. Never used when the core thread is unpinned.
    pub helper_core: Option<usize>,
    /// The idle strategy's bounds.
    pub idle: IdleConfig,
    /// Draws a client may have in flight in pulls: its pull area, allocated with the
    /// client (4 bytes a draw; rounded up to a power of two, at least
    /// [`PULL_LEN_MAX`]). A pull that does not fit in what is free
    /// gets [`DrawError::Full`].
    pub pull_area_len: usize,
    /// The idempotency-key window: how many keys are kept and for how long. Allocated
    /// once at start (zeroed, so untouched pages cost nothing until keys arrive). Config:
    /// `idempotency: {keys, hours}`.
    pub idempotency: KeyWindow,
    /// Where the core thread reads the time for idempotency keys (the system clock;
    /// tests set a manual one).
    pub clock: Clock,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            ring_capacity: 512,
            flush_after_n_draw: 200,
            max_commit_delay: Duration::from_micros(200),
            batch_len_max: 64,
            clients_max: 64,
            inflight_groups_max: 64,
            core: CorePin::Auto,
            helper_core: None,
            idle: IdleConfig::default(),
            pull_area_len: 16 << 10,
            idempotency: KeyWindow::default(),
            clock: Clock::System,
        }
    }
}

/// Why the engine refused or stopped. Failures keep their cause as a value (the journal's
/// error, with its I/O error kind and OS code): [`EngineError::failure_kind`] classifies them
/// and `source()` walks down to the `io::Error`.
#[derive(Debug)]
#[non_exhaustive]
pub enum EngineError {
    /// The configured core cannot be used.
    Pin(PinError),
    /// `clients_max` clients exist already.
    TooManyClients {
        /// The bound.
        clients_max: usize,
    },
    /// The engine is shutting down or has stopped.
    ShuttingDown,
    /// The journal failed; the engine accepts nothing more (restart to recover).
    Failed(JournalError),
    /// The core thread panicked (a bug); the engine accepts nothing more.
    Panicked,
    /// An update was refused.
    Update(PoolError),
    /// The core thread could not be started.
    Spawn(std::io::Error),
    /// A configuration bound is out of range.
    Config(BoundError),
    /// The log's disk is full; the update was not applied (the engine goes on). Holds the
    /// journal's [`JournalError::NoSpace`].
    NoSpace(JournalError),
}

impl EngineError {
    /// The kind of failure behind this error, when the journal (or the disk under it) is
    /// the cause: a service maps it to a status code without parsing a message.
    #[must_use]
    pub fn failure_kind(&self) -> Option<FailureKind> {
        match self {
            EngineError::Failed(e) | EngineError::NoSpace(e) => Some(e.kind()),
            EngineError::Spawn(e) => Some(FailureKind::of(e)),
            _ => None,
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Pin(e) => e.fmt(f),
            EngineError::TooManyClients { clients_max } => {
                write!(f, "too many clients: at most {clients_max} at once")
            }
            EngineError::ShuttingDown => f.write_str("the engine is shutting down"),
            EngineError::Failed(reason) => {
                write!(f, "the engine stopped after a failure: {reason}")
            }
            EngineError::Panicked => {
                f.write_str("the engine stopped after a failure: the core thread panicked")
            }
            EngineError::Update(e) => write!(f, "update refused: {e}"),
            EngineError::Spawn(e) => write!(f, "cannot start the core thread: {e}"),
            EngineError::Config(bound) => write!(f, "bad engine configuration: {bound}"),
            EngineError::NoSpace(reason) => write!(f, "update not applied: {reason}"),
        }
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EngineError::Pin(e) => Some(e),
            EngineError::Failed(e) | EngineError::NoSpace(e) => Some(e),
            EngineError::Update(e) => Some(e),
            EngineError::Spawn(e) => Some(e),
            EngineError::Config(e) => Some(e),
            _ => None,
        }
    }
}

/// An [`EngineConfig`] bound out of range: which field, and the range it must be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundError {
    /// The field of [`EngineConfig`].
    pub field: &'static str,
    /// The smallest value allowed.
    pub min: usize,
    /// The largest value allowed, if any.
    pub max: Option<usize>,
}

impl fmt::Display for BoundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let BoundError { field, min, max } = self;
        match max {
            Some(max) => write!(f, "{field} must be between {min} and {max}"),
            None => write!(f, "{field} must be at least {min}"),
        }
    }
}

impl std::error::Error for BoundError {}

/// Counters the core thread keeps for observers (updated once per group, `Relaxed`); read
/// them all at once with [`Engine::metrics`].
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Requests answered since start: draws acknowledged (their group is durable) and draws
    /// refused while the disk was full.
    pub draws_acknowledged: AtomicU64,
    /// Groups committed.
    pub groups_committed: AtomicU64,
    /// The newest request id in a committed group (the pool's at start until the first).
    pub last_request_id: AtomicU64,
    /// The newest request id in a durable (acknowledged) group (the pool's at start until
    /// the first): how far a log shipper may read (`replicate::LogTail`).
    pub durable_request_id: AtomicU64,
}

/// Commands on the control path.
pub(crate) enum Control {
    Update {
        id: String,
        quantity: Option<Quantity>,
        weight: Option<u32>,
        reply: mpsc::Sender<Result<ItemState, EngineError>>,
    },
    State {
        reply: mpsc::Sender<PoolState>,
    },
    Items {
        reply: mpsc::Sender<Vec<ItemState>>,
    },
    Shutdown,
}

/// State shared by the engine handle and the core thread (its clients share the `intake`).
pub(crate) struct Shared {
    registrations: ArrayQueue<Port>,
    control: ArrayQueue<Control>,
    /// The core's doorbell and its closing, stopped and failed states, shared with clients.
    intake: Arc<Intake>,
    clients: AtomicU64,
    stats: EngineStats,
    /// The core's other counters (`Metrics`), on lines of their own: clients write
    /// `clients` above, the core these.
    counters: CachePadded<metrics::Counters>,
    /// Per-item remaining quantities, as the core last published them.
    remaining: metrics::Remaining,
    /// Item ids by index, for [`ItemIds`]; the core appends when an update adds an item.
    item_ids: Arc<IdCell>,
    /// The pool's last request id when the engine started (for `Metrics::draws_committed`).
    start_request_id: u64,
}

impl Shared {
    fn is_stopped(&self) -> bool {
        self.intake.is_stopped()
    }

    fn push_control(&self, mut cmd: Control) -> Result<(), EngineError> {
        loop {
            if self.is_stopped() {
                return Err(self.stopped_error());
            }
            match self.control.push(cmd) {
                Ok(()) => {
                    self.intake.wake_core();
                    // `wake_core` begins with a SeqCst fence after the push; the core's `stop`
                    // stores `stopped` and fences before it drains the queue (Dekker). If the
                    // core stopped without seeing this command, drop it here so its reply
                    // channel closes and the caller gets an error instead of waiting forever.
                    if self.is_stopped() {
                        while self.control.pop().is_some() {}
                    }
                    return Ok(());
                }
                Err(back) => {
                    cmd = back;
                    std::thread::yield_now();
                }
            }
        }
    }

    fn stopped_error(&self) -> EngineError {
        match self.intake.failure() {
            Some(error) => EngineError::Failed(error.clone()),
            None => EngineError::ShuttingDown,
        }
    }
}

/// A running engine: one pinned core thread owning one pool.
///
/// Dropping it shuts it down like [`Engine::shutdown`] (errors are then ignored).
pub struct Engine {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<PoolState, JournalError>>>,
    config: EngineConfig,
    core_id: Option<usize>,
    journal_stats: Option<Arc<JournalStats>>,
    /// The most draws the journal holds in one group (bounds a client's longest pull).
    group_draws_max: usize,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine").field("core", &self.core_id).finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts the core thread with `pool` and `journal`; returns once it runs on its core.
    ///
    /// # Errors
    /// A core that cannot be used, a bound out of range, or a failure to spawn the thread.
    pub fn start<J: Journal>(
        pool: Pool,
        journal: J,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        check_config(&config)?;
        let core_id = affinity::choose(config.core).map_err(EngineError::Pin)?;
        let mut pool = pool;
        pool.set_key_window(config.idempotency);
        pool.allocate_keys();
        let start_request_id = pool.last_request_id().0;
        let (remaining, remaining_writer) = metrics::Remaining::new(&pool);
        let shared = Arc::new(Shared {
            registrations: ArrayQueue::new(config.clients_max),
            control: ArrayQueue::new(64),
            intake: Arc::new(Intake::default()),
            clients: AtomicU64::new(0),
            stats: EngineStats {
                last_request_id: AtomicU64::new(start_request_id),
                durable_request_id: AtomicU64::new(start_request_id),
                ..EngineStats::default()
            },
            counters: CachePadded::new(metrics::Counters::new()),
            remaining,
            item_ids: Arc::new(IdCell::new(&pool)),
            start_request_id,
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let journal_stats = journal.stats();
        let group_draws_max = journal.group_draws_max();
        let core = Core::new(pool, journal, Arc::clone(&shared), remaining_writer, &config);
        let helper_core = config.helper_core;
        let thread = std::thread::Builder::new()
            .name("rewardpool-core".into())
            .spawn(move || {
                if let Some(id) = core_id {
                    if let Err(e) = affinity::pin_current(id) {
                        let _ = ready_tx.send(Err(e));
                        return core.abandon();
                    }
                }
                let _ = ready_tx.send(Ok(()));
                let mut core = core;
                if let Some(id) = core_id {
                    core.core_pinned(id, helper_core);
                }
                core.run()
            })
            .map_err(EngineError::Spawn)?;
        let mut engine = Engine {
            shared,
            thread: Some(thread),
            config,
            core_id,
            journal_stats,
            group_draws_max,
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(engine),
            Ok(Err(e)) => {
                let _ = engine.join();
                Err(EngineError::Pin(e))
            }
            Err(_) => Err(engine.join().err().unwrap_or(EngineError::ShuttingDown)),
        }
    }

    /// What the journal wrote and synced (bytes per draw, sync count and times), when it
    /// keeps such counters (the durable log does; the memory journal does not).
    #[must_use]
    pub fn journal_stats(&self) -> Option<&JournalStats> {
        self.journal_stats.as_deref()
    }

    /// A new client with its own ring and completion slots (allocates; call once per thread).
    ///
    /// # Errors
    /// Too many clients, or the engine has stopped.
    pub fn client(&self) -> Result<Client, EngineError> {
        if self.shared.intake.is_closing() || self.shared.is_stopped() {
            return Err(self.shared.stopped_error());
        }
        let max = self.config.clients_max as u64;
        // Relaxed: a counter bounding registrations; the queue publishes the port itself.
        if self.shared.clients.fetch_add(1, Ordering::Relaxed) >= max {
            self.shared.clients.fetch_sub(1, Ordering::Relaxed);
            return Err(EngineError::TooManyClients { clients_max: self.config.clients_max });
        }
        let shape = ClientShape {
            capacity: self.config.ring_capacity,
            area_len: self.config.pull_area_len,
            group_draws_max: self.group_draws_max,
        };
        let (client, port) =
            crate::ingress::pair(Arc::clone(&self.shared.intake), self.item_ids(), shape);
        if self.shared.registrations.push(port).is_err() {
            self.shared.clients.fetch_sub(1, Ordering::Relaxed);
            return Err(EngineError::TooManyClients { clients_max: self.config.clients_max });
        }
        self.shared.intake.wake_core();
        Ok(client)
    }

    /// Item ids by index, to name an [`Outcome`]'s item without a state round trip (see
    /// [`ItemIds`]). Cheap (a lock and `Arc` clones, no allocation); items added later are
    /// found too.
    #[must_use]
    pub fn item_ids(&self) -> ItemIds {
        ItemIds::new(Arc::clone(&self.shared.item_ids))
    }

    /// Sets an item's quantity and/or weight, adding the item when new (then both are
    /// required). Logged in order with draws; returns once its group is durable.
    ///
    /// # Errors
    /// An invalid update, or the engine has stopped.
    pub fn update(
        &self,
        id: &str,
        quantity: Option<Quantity>,
        weight: Option<u32>,
    ) -> Result<ItemState, EngineError> {
        let (reply, rx) = mpsc::channel();
        self.shared.push_control(Control::Update { id: id.to_owned(), quantity, weight, reply })?;
        rx.recv().unwrap_or_else(|_| Err(self.shared.stopped_error()))
    }

    /// A copy of the pool's current state (it may include draws not yet durable).
    ///
    /// # Errors
    /// The engine has stopped.
    pub fn state(&self) -> Result<PoolState, EngineError> {
        let (reply, rx) = mpsc::channel();
        self.shared.push_control(Control::State { reply })?;
        rx.recv().map_err(|_| self.shared.stopped_error())
    }

    /// The pool's items (quantities and weights, in index order; they may include draws
    /// not yet durable). Unlike [`Engine::state`] it copies no idempotency-key window
    /// (up to tens of MB): what a service's state call needs. The core thread serves it
    /// between ring passes, like an update.
    ///
    /// # Errors
    /// The engine has stopped.
    pub fn items(&self) -> Result<Vec<ItemState>, EngineError> {
        let (reply, rx) = mpsc::channel();
        self.shared.push_control(Control::Items { reply })?;
        rx.recv().map_err(|_| self.shared.stopped_error())
    }

    /// Counters kept by the core thread.
    #[must_use]
    pub fn stats(&self) -> &EngineStats {
        &self.shared.stats
    }

    /// The engine's counters, read without stopping the core thread (unlike
    /// [`Engine::state`], which drains the rings and copies every item): a few `Relaxed`
    /// loads of counters the core updates once per group. Cheap enough to call ten times
    /// a second from a dashboard.
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        metrics::read(&self.shared, self.journal_stats.as_deref())
    }

    /// A handle that reads [`Engine::metrics`] from any thread, also after the engine has
    /// shut down (then it shows the final counters).
    #[must_use]
    pub fn meter(&self) -> Meter {
        Meter::new(Arc::clone(&self.shared), self.journal_stats.clone())
    }

    /// The core id the core thread is pinned to, if pinned.
    #[must_use]
    pub fn core_id(&self) -> Option<usize> {
        self.core_id
    }

    /// Why the engine failed, if it did: the journal's first error (its
    /// [`JournalError::kind`] classifies it; its `Display` says what was being done). A
    /// clone: the I/O error inside is shared.
    #[must_use]
    pub fn failure(&self) -> Option<JournalError> {
        self.shared.intake.failure().cloned()
    }

    /// Stops intake, answers every request in flight, commits, closes the journal (final
    /// snapshot) and joins the core thread. Returns the final state.
    ///
    /// # Errors
    /// When the journal failed, now or earlier.
    pub fn shutdown(mut self) -> Result<PoolState, EngineError> {
        self.join()
    }

    fn join(&mut self) -> Result<PoolState, EngineError> {
        let Some(thread) = self.thread.take() else {
            return Err(EngineError::ShuttingDown);
        };
        // Clients' `try_draw` stop taking new draws.
        self.shared.intake.close();
        if !self.shared.is_stopped() {
            // The queue may be full; the core drains it, and exits only on Shutdown or failure.
            let _ = self.shared.push_control(Control::Shutdown);
        }
        let result = match thread.join() {
            Ok(Ok(state)) => Ok(state),
            Ok(Err(e)) => Err(EngineError::Failed(e)),
            Err(_) => Err(EngineError::Panicked),
        };
        if let Some(error) = self.failure() {
            return Err(EngineError::Failed(error));
        }
        result
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

fn check_config(c: &EngineConfig) -> Result<(), EngineError> {
    let bad = |field, max| Err(EngineError::Config(BoundError { field, min: 1, max }));
    if c.ring_capacity == 0 || c.ring_capacity > 1 << 20 {
        return bad("ring_capacity", Some(1 << 20));
    }
    if c.flush_after_n_draw == 0 {
        return bad("flush_after_n_draw", None);
    }
    if c.pull_area_len < PULL_LEN_MAX as usize || c.pull_area_len > 1 << 24 {
        // At least one pull of the longest kind (PULL_LEN_MAX) fits.
        let (min, max) = (PULL_LEN_MAX as usize, Some(1 << 24));
        return Err(EngineError::Config(BoundError { field: "pull_area_len", min, max }));
    }
    if c.idempotency.keys == 0 || c.idempotency.keys > KEYS_MAX {
        return bad("idempotency.keys", Some(KEYS_MAX as usize));
    }
    if c.idempotency.hours == 0 || c.idempotency.hours > HOURS_MAX {
        return bad("idempotency.hours", Some(HOURS_MAX as usize));
    }
    for (field, value) in [
        ("batch_len_max", c.batch_len_max),
        ("clients_max", c.clients_max),
        ("inflight_groups_max", c.inflight_groups_max),
    ] {
        if value == 0 {
            return bad(field, None);
        }
    }
    Ok(())
}
