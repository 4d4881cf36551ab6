//! The journal boundary: how the core thread hands outcomes to the log.
//!
//! The core thread appends frames for the outcomes it decides, ends a group with `commit`,
//! and asks `durable` which groups are safe to acknowledge. Making a group durable may happen
//! on another thread (the WAL's flusher): `commit` never waits for it. Groups become durable
//! in the order they were committed.

mod memory;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

pub use memory::MemoryJournal;

use crate::pool::{Draw, ItemIndex, ItemState, Pool, RequestId};

/// Sequence number of a committed group: 1, 2, 3, ... (0 = none yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct GroupSeq(pub u64);

/// The most the next group will hold, so the journal can rotate before it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// This many draws (the log reserves their worst case: each a keyed request of one).
    Draws(usize),
    /// One update frame for an item id of this many bytes.
    Update {
        /// Length of the item id in bytes.
        id_len: usize,
    },
    /// One seed frame (a replica copying its primary's: `wal::frame`, "Seed frames").
    Seed,
}

/// Why a journal stopped. Once returned, the journal is finished: the engine fails every
/// outstanding request and accepts no more (SPEC §2.9).
///
/// `Clone` (the I/O error is shared behind an `Arc`), so the engine hands the same failure to
/// every caller that asks; [`JournalError::kind`] classifies it for a status code.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum JournalError {
    /// Writing or syncing the log failed.
    Io {
        /// What was being done, e.g. "msync wal.000003".
        context: String,
        /// The operating system's error (its kind and OS code kept: see [`FailureKind`]).
        source: Arc<io::Error>,
    },
    /// A previous I/O error poisoned the journal; restart and recover.
    PreviousIo,
    /// The next segment cannot be created because the disk is full (ENOSPC). Not final: the
    /// engine rejects draws with an error until space returns, and nothing acknowledged is
    /// lost.
    NoSpace {
        /// What was being created.
        context: String,
    },
    /// The test journal failed on purpose.
    Injected,
    /// A helper thread of the journal ended without reporting a failure (a bug).
    HelperExited {
        /// Which thread, e.g. "flusher".
        thread: &'static str,
    },
    /// A group cannot fit in a segment even when it starts a fresh one.
    GroupTooLarge {
        /// The group's bytes (frames and commit).
        needed: usize,
        /// The configured segment size.
        segment_size: u64,
    },
    /// Any other reason, in one sentence (an encoder's refusal, a frame past the reserved
    /// space, a segment that cannot be resumed).
    Other(String),
}

impl JournalError {
    /// An I/O failure while doing `context`.
    pub fn io(context: impl Into<String>, source: io::Error) -> JournalError {
        JournalError::Io { context: context.into(), source: Arc::new(source) }
    }

    /// What kind of failure this is, as a small `Copy` value: the I/O error's kind and OS
    /// code (ENOSPC, EIO, ...), or [`FailureKind::Other`] when no I/O failed.
    #[must_use]
    pub fn kind(&self) -> FailureKind {
        match self {
            JournalError::Io { source, .. } => FailureKind::of(source),
            JournalError::NoSpace { .. } => {
                FailureKind::Io { kind: io::ErrorKind::StorageFull, os_code: Some(libc::ENOSPC) }
            }
            JournalError::PreviousIo
            | JournalError::Injected
            | JournalError::HelperExited { .. }
            | JournalError::GroupTooLarge { .. }
            | JournalError::Other(_) => FailureKind::Other,
        }
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io { context, source } => write!(f, "{context}: {source}"),
            JournalError::PreviousIo => write!(f, "an earlier log I/O error stopped the journal"),
            JournalError::NoSpace { context } => {
                write!(f, "{context}: no space left on the device")
            }
            JournalError::Injected => write!(f, "injected journal failure"),
            JournalError::HelperExited { thread } => {
                write!(f, "the {thread} thread ended unexpectedly")
            }
            JournalError::GroupTooLarge { needed, segment_size } => write!(
                f,
                "a group of {needed} bytes cannot fit in a {segment_size} byte segment: raise the segment size"
            ),
            JournalError::Other(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

/// The class of a failure, small and `Copy` so that it reaches every waiting caller without
/// allocating (it rides in [`crate::DrawError::Failed`]): a service maps it to a status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// An I/O error: its kind (`StorageFull` for ENOSPC) and the operating system's error
    /// number when the system reported one (e.g. `libc::EIO`).
    Io {
        /// The error's kind.
        kind: io::ErrorKind,
        /// The OS error number (`io::Error::raw_os_error`).
        os_code: Option<i32>,
    },
    /// Not an I/O error: an injected failure, a bug, a configuration the log cannot hold.
    Other,
}

impl FailureKind {
    /// The kind of `e`.
    #[must_use]
    pub fn of(e: &io::Error) -> FailureKind {
        FailureKind::Io { kind: e.kind(), os_code: e.raw_os_error() }
    }

    /// The I/O error kind, when an I/O error it is.
    #[must_use]
    pub fn io_kind(self) -> Option<io::ErrorKind> {
        match self {
            FailureKind::Io { kind, .. } => Some(kind),
            FailureKind::Other => None,
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Io { kind, os_code: Some(code) } => write!(f, "{kind} (os error {code})"),
            FailureKind::Io { kind, os_code: None } => write!(f, "{kind}"),
            FailureKind::Other => f.write_str("not an I/O error"),
        }
    }
}

/// What a durable journal did, for observers: `Relaxed` counters, updated once per group
/// (core thread) or once per sync (flusher thread), never per draw.
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Frame bytes appended to segments: draws, updates and commits (the header and snapshot
    /// marker that open each segment are not counted). Written by the core thread, so on a
    /// cache line of its own: the flusher's counters below never make the core miss.
    pub bytes_appended: CachePadded<AtomicU64>,
    /// Syncs made (one may cover many groups).
    pub syncs: AtomicU64,
    /// Bytes those syncs wrote (the ranges passed to `sync_range`).
    pub bytes_synced: AtomicU64,
    /// Total time spent in those syncs, in nanoseconds.
    pub sync_ns_total: AtomicU64,
    /// Longest single sync, in nanoseconds.
    pub sync_ns_max: AtomicU64,
    /// Retention's hold, set by a reader of the log's files (a log shipper,
    /// `replicate::LogTail`): `n + 1` keeps segment `n` and every later one (0: no hold),
    /// up to the log's own bound on held segments (`WalOptions::held_segments_max`) beyond
    /// its retention window. Read by the WAL's preparer at each rotation.
    pub retain_from: AtomicU64,
    /// The replication gate (`ack: replica`), off until a log shipper turns it on (before
    /// any draw). While on, a group is reported durable only once it is durable locally
    /// **and** its number is at most [`JournalStats::released_group`].
    pub gated: AtomicBool,
    /// While gated: the last request id of the groups durable locally (what the shipper may
    /// read up to), kept by the journal; the shipper sets it once when it turns the gate on.
    pub local_durable_request_id: AtomicU64,
    /// While gated: the newest group (the number in its commit frame, counted from 1 in
    /// each run) that the replicas stored; set by the shipper.
    pub released_group: AtomicU64,
    /// Set by the shipper when another primary owns the stream: the journal fails (every
    /// waiting caller gets an error) at its next check.
    pub fenced: AtomicBool,
    /// Where this run's first group starts: its segment and offset (groups before it were
    /// committed by an earlier run, whose group numbers restarted).
    pub run_start_segment: AtomicU64,
    /// See [`JournalStats::run_start_segment`].
    pub run_start_offset: AtomicU64,
    /// The commitment to the seed the pool draws with now (`None`: none yet, or a journal
    /// without seeds of its own). Set by the core thread when it commits to a new seed (at
    /// start and at each rotation, never per draw); read by observers (the dashboard).
    pub seed: std::sync::Mutex<Option<SeedCommitment>>,
}

/// A published commitment to a draw seed (`wal::frame`, "Seed frames"): what an operator
/// publishes before the draws it covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeedCommitment {
    /// The segment the commitment is in (part of the committed hash).
    pub segment: u64,
    /// The first request id drawn from the seed.
    pub first_request_id: u64,
    /// SHA-256(seed || segment || pool name).
    pub commitment: [u8; 32],
}

impl JournalStats {
    /// The counters as plain numbers (`Relaxed` loads: each is exact, the set is not one
    /// instant).
    #[must_use]
    pub fn read(&self) -> JournalMetrics {
        // Relaxed: observers' counters; nothing is published through them.
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        JournalMetrics {
            bytes_appended: load(&self.bytes_appended),
            syncs: load(&self.syncs),
            bytes_synced: load(&self.bytes_synced),
            sync_ns_total: load(&self.sync_ns_total),
            sync_ns_max: load(&self.sync_ns_max),
            seed: *self.seed.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }
}

/// A reading of [`JournalStats`]: the same counters, as numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalMetrics {
    /// See [`JournalStats::bytes_appended`].
    pub bytes_appended: u64,
    /// See [`JournalStats::syncs`].
    pub syncs: u64,
    /// See [`JournalStats::bytes_synced`].
    pub bytes_synced: u64,
    /// See [`JournalStats::sync_ns_total`].
    pub sync_ns_total: u64,
    /// See [`JournalStats::sync_ns_max`].
    pub sync_ns_max: u64,
    /// See [`JournalStats::seed`].
    pub seed: Option<SeedCommitment>,
}

/// Where the core thread records outcomes. Implementations: [`MemoryJournal`] (no log),
/// `testing::FailingJournal` (feature `testing`), and the durable WAL.
pub trait Journal: Send + 'static {
    /// Called between groups: makes room for the next group, which will hold at most `space`;
    /// may rotate to a new segment that starts with a snapshot of `pool` (which has not yet
    /// seen the group to come) and gives `pool` that segment's generator
    /// ([`Pool::set_rng`]): a segment's draws come from its own seed.
    ///
    /// # Errors
    /// When the log cannot make room (I/O failure).
    fn reserve(&mut self, space: Space, pool: &mut Pool) -> Result<(), JournalError>;

    /// Appends a draw's outcome to the open group.
    ///
    /// # Errors
    /// When the journal has failed.
    fn append_draw(&mut self, draw: Draw) -> Result<(), JournalError>;

    /// Records that the next `count` draws appended to the open group answer one request
    /// carrying the idempotency key `key` (never 0), so that recovery and replicas can rebuild
    /// the key's original outcome. Called right before those draws, inside the same group.
    /// Journals that keep no log ignore it.
    ///
    /// # Errors
    /// When the journal has failed.
    fn append_key(&mut self, key: u128, count: u32) -> Result<(), JournalError> {
        let _ = (key, count);
        Ok(())
    }

    /// Appends an update (or addition) of an item to the open group: its full state after.
    ///
    /// # Errors
    /// When the journal has failed.
    fn append_update(&mut self, index: ItemIndex, item: &ItemState) -> Result<(), JournalError>;

    /// Ends the open group (`last` is the last request id handed out so far) and starts
    /// making it durable. Never waits for the disk.
    ///
    /// # Errors
    /// When the journal has failed.
    fn commit(&mut self, last: RequestId) -> Result<GroupSeq, JournalError>;

    /// The newest group such that it and every group before it are durable.
    ///
    /// # Errors
    /// When making a group durable failed: nothing after the last durable group may be
    /// acknowledged.
    fn durable(&mut self) -> Result<GroupSeq, JournalError>;

    /// Clean shutdown: everything committed is durable, a final snapshot of `pool` is written
    /// where the journal keeps snapshots, and the open segment is closed.
    ///
    /// # Errors
    /// When any of that fails.
    fn close(&mut self, pool: &Pool) -> Result<(), JournalError>;

    /// The most draws one group can hold (its frames and commit in one segment); a pull
    /// never splits across groups, so no client accepts a longer one. Unbounded by default.
    fn group_draws_max(&self) -> usize {
        usize::MAX
    }

    /// The engine's placement for the journal's own threads, if it has any: run them on
    /// `core`, which is not the core thread's, so they never preempt it (measured: an
    /// unpinned flusher woken by its I/O interrupt took a third of the core thread's context
    /// switches in sync mode). The engine decides; the journal only follows.
    fn place_helpers(&mut self, core: usize) {
        let _ = core;
    }

    /// Counters of what the journal wrote and synced, if it keeps any (the engine hands them
    /// to observers through [`crate::Engine::journal_stats`]).
    fn stats(&self) -> Option<Arc<JournalStats>> {
        None
    }
}
