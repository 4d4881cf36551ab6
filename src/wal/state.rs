//! What the core thread, the flusher and the preparer share: the flusher's job queue
//! ([`Job`]), what the helper threads report back ([`FlushState`]: progress, the first
//! failure, spare segments) and where they run ([`pin_helper`]).
//!
//! Both helper threads import from here and from `segment`, never from each other's file:
//! the flusher owns the preparer (`PreparerHandle`), and that is the only arrow between them.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;

use super::header::SegmentHeader;
use super::segment::Install;
use crate::journal::JournalError;
use crate::storage::SegmentMap;
use crate::sync::Doorbell;

/// Work for the flusher, in log order.
#[derive(Debug)]
pub(crate) enum Job {
    /// Group `group` ends at `end` in the current segment: sync up to there.
    Sync { group: u64, end: usize },
    /// The core moved on: close the current segment (its groups end at `header.end_offset`,
    /// the last is `last_group`), install `next`, delete what retention drops. Boxed: rare,
    /// and inline it would make every queue slot as large as itself.
    Rotate(Box<Rotation>),
    /// Clean shutdown: close the current segment, write the final snapshot, and exit.
    Close(Box<Closing>),
    /// Exit without closing anything (the engine failed; recovery will sort it out).
    Stop,
}

/// The payload of [`Job::Rotate`].
#[derive(Debug)]
pub(crate) struct Rotation {
    pub(crate) last_group: u64,
    pub(crate) closed: SegmentHeader,
    pub(crate) next: Install,
}

/// The payload of [`Job::Close`].
#[derive(Debug)]
pub(crate) struct Closing {
    pub(crate) last_group: u64,
    pub(crate) closed: SegmentHeader,
    pub(crate) snapshot: Vec<u8>,
}

/// What the flusher tells the core.
#[derive(Debug)]
pub(crate) struct FlushState {
    /// Newest group durable (with every one before it). Release by the flusher after the
    /// sync that made it durable; Acquire by the core before acknowledging.
    pub(crate) durable: CachePadded<AtomicU64>,
    /// Newest segment sequence installed under its final name.
    pub(crate) installed: AtomicU64,
    /// Set (Release) after `error` is written, by the flusher or the preparer; the flusher
    /// stops at its next job or idle pass.
    pub(crate) failed: AtomicBool,
    /// The first failure, with its I/O error (kind and OS code) and what was being done.
    pub(crate) error: Mutex<Option<JournalError>>,
    /// The flusher sleeps on it; the core rings it after pushing a job.
    pub(super) bell: Doorbell,
    /// Next segment files, created and pre-faulted ahead of time (at most one waits).
    pub(crate) spares: ArrayQueue<(String, Arc<dyn SegmentMap>)>,
    /// The core the flusher and preparer should run on (1 + id; 0 = not set), as the engine
    /// placed them (`Journal::place_helpers`): never the core thread's.
    pub(crate) helper_core: AtomicU64,
    pub(crate) jobs: ArrayQueue<Job>,
}

impl FlushState {
    pub(crate) fn new(installed: u64, durable: u64, jobs_max: usize) -> FlushState {
        FlushState {
            durable: CachePadded::new(AtomicU64::new(durable)),
            installed: AtomicU64::new(installed),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            bell: Doorbell::new(),
            spares: ArrayQueue::new(1),
            helper_core: AtomicU64::new(0),
            jobs: ArrayQueue::new(jobs_max),
        }
    }

    /// Queues a job and wakes the flusher; false if the queue is full (retry later).
    pub(crate) fn push(&self, job: Job) -> Result<(), Job> {
        self.jobs.push(job)?;
        // Its SeqCst fence orders the push before the load of the sleeping flag; pairs with
        // the fence in `Flusher::idle`'s `Doorbell::sleep` before it re-checks the queue
        // (Dekker).
        self.bell.ring();
        Ok(())
    }

    /// The first failure, once one was recorded (a clone: the I/O error is shared).
    pub(crate) fn error(&self) -> Option<JournalError> {
        // Acquire: pairs with the Release store in `fail`.
        if self.failed.load(Ordering::Acquire) {
            return self.error.lock().unwrap_or_else(|e| e.into_inner()).clone();
        }
        None
    }

    /// Records the first failure (later ones, often its consequences, are dropped), keeping
    /// the error itself: the caller sees its kind, not a sentence.
    pub(crate) fn fail(&self, context: &str, e: io::Error) {
        let mut error = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if error.is_none() {
            *error = Some(JournalError::io(context, e));
        }
        drop(error);
        // Release: publishes `error` to the core's Acquire in `error()`.
        self.failed.store(true, Ordering::Release);
    }
}

/// Pins the calling helper thread (flusher, preparer) to the core named in
/// `state.helper_core` once it is set or changes; returns the value it acted on.
pub(crate) fn pin_helper(state: &FlushState, pinned: u64) -> u64 {
    // Relaxed: a hint for thread placement; no data is published through it.
    let wanted = state.helper_core.load(Ordering::Relaxed);
    if wanted != pinned && wanted > 0 {
        let _ = core_affinity::set_for_current(core_affinity::CoreId { id: (wanted - 1) as usize });
    }
    wanted
}
