//! The preparer thread: closes retired segments, creates, allocates and pre-faults the next
//! segment file, and deletes what retention drops, so neither the core thread nor the
//! flusher waits on it.
//!
//! Closing a retired segment means syncing whatever of it is not yet on disk: in buffered
//! mode, up to a whole segment (64 MiB: ~150 ms on our disk). Done on the flusher, it held
//! back the first groups of the next segment for that long in buffered mode on staged
//! segments (measured: a 40–80 ms acknowledgement stall at every rotation).
//!
//! Creating and pre-faulting a 64 MiB segment takes tens of milliseconds (fallocate, zeros
//! written for `sync` durability's staged segments, then a page fault per 4 KiB page). Done on the flusher, it held back every sync queued behind a
//! rotation (measured: acknowledgements stalled ~250 ms after each rotation in sync mode).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use super::header::SegmentHeader;
use super::segment;
use super::state::{pin_helper, FlushState};
use crate::journal::JournalStats;
use crate::layout::{parse_segment_name, parse_snapshot_name, segment_name, tmp_name};
use crate::storage::{SegmentMap, Storage};

#[derive(Debug)]
struct Signals {
    /// The newest installed segment: prepare `installed + 1`, retain relative to it.
    installed: AtomicU64,
    stop: AtomicBool,
    /// Retired segments to close, oldest first.
    closes: ArrayQueue<Close>,
}

/// A retired segment to close: sync its frames from `synced` to `header.end_offset`, then
/// write and sync its closed header (`segment::close`).
#[derive(Debug)]
pub(crate) struct Close {
    pub(crate) map: Arc<dyn SegmentMap>,
    pub(crate) synced: usize,
    pub(crate) header: SegmentHeader,
}

/// Closes waiting at most; the flusher closes a segment itself when the queue is full.
const CLOSES_MAX: usize = 2;

/// The flusher's handle on the preparer thread. Dropping it stops and joins the thread.
#[derive(Debug)]
pub(crate) struct PreparerHandle {
    signals: Arc<Signals>,
    thread: Option<JoinHandle<()>>,
}

struct Preparer {
    storage: Arc<dyn Storage>,
    state: Arc<FlushState>,
    signals: Arc<Signals>,
    segment_size: u64,
    retention: u64,
    /// Segments kept beyond `retention` at most while `stats.retain_from` holds them.
    held_max: u64,
    /// Where a log reader's hold is (`JournalStats::retain_from`).
    stats: Arc<JournalStats>,
    first: Option<Arc<dyn SegmentMap>>,
}

impl PreparerHandle {
    /// Starts the thread; it first pre-faults `first` (the segment being written), then
    /// prepares the segment after `sequence`.
    pub(crate) fn spawn(
        storage: Arc<dyn Storage>,
        state: Arc<FlushState>,
        first: Arc<dyn SegmentMap>,
        sequence: u64,
        segment_size: u64,
        (retention, held_max): (u64, u64),
        stats: Arc<JournalStats>,
    ) -> std::io::Result<PreparerHandle> {
        let signals = Arc::new(Signals {
            installed: AtomicU64::new(sequence),
            stop: AtomicBool::new(false),
            closes: ArrayQueue::new(CLOSES_MAX),
        });
        let preparer = Preparer {
            storage,
            state,
            signals: Arc::clone(&signals),
            segment_size,
            retention: retention.max(1),
            held_max,
            stats,
            first: Some(first),
        };
        let thread = std::thread::Builder::new()
            .name("rewardpool-preparer".into())
            .spawn(move || preparer.run())?;
        Ok(PreparerHandle { signals, thread: Some(thread) })
    }

    /// Queues a retired segment's close (done before the next spare is prepared); gives it
    /// back when the queue is full or the thread has stopped.
    pub(crate) fn close_later(&self, close: Close) -> Result<(), Close> {
        // A thread that has stopped (on a failure) would never take it.
        if self.thread.as_ref().is_none_or(JoinHandle::is_finished) {
            return Err(close);
        }
        self.signals.closes.push(close)
    }

    /// Segment `sequence` is installed: prepare the next one, drop what retention drops.
    pub(crate) fn installed(&self, sequence: u64) {
        // Release: pairs with the Acquire in `Preparer::run`.
        self.signals.installed.store(sequence, Ordering::Release);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }

    /// Stops the thread and waits for it (it finishes the file it is creating and the
    /// closes queued).
    pub(crate) fn stop(&mut self) {
        self.signals.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for PreparerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Preparer {
    fn run(mut self) {
        lower_priority();
        if let Some(first) = self.first.take() {
            // Populating pages does not change their contents: safe while the core appends.
            first.prefault();
        }
        let mut done = None;
        let mut pinned = 0;
        // Bounded by `stop`: the flusher stops this thread on close, failure or drop.
        loop {
            pinned = pin_helper(&self.state, pinned);
            // Acquire: pairs with the Release stores in `PreparerHandle`.
            let stop = self.signals.stop.load(Ordering::Acquire);
            if !self.close_retired() {
                return;
            }
            let installed = self.signals.installed.load(Ordering::Acquire);
            if stop {
                // A clean shutdown leaves the retention window applied, not one rotation
                // behind (no spare is prepared any more).
                if done != Some(installed) {
                    self.drop_old(installed);
                }
                return;
            }
            if done == Some(installed) {
                std::thread::park_timeout(Duration::from_millis(50));
                continue;
            }
            // The flusher queues a retired segment's close before it publishes the install
            // that retires it: close it before retention may delete it.
            if !self.close_retired() {
                return;
            }
            self.drop_old(installed);
            self.prepare_spare(installed + 1);
            done = Some(installed);
        }
    }

    /// Closes the queued retired segments; false after a failure (reported through
    /// `FlushState::fail`: the engine stops, SPEC §2.9).
    fn close_retired(&self) -> bool {
        while let Some(c) = self.signals.closes.pop() {
            if let Err(e) = segment::close(&*c.map, c.synced, &c.header) {
                self.state.fail(&format!("closing {}", segment_name(c.header.sequence)), e);
                return false;
            }
            // The map drops here, before a spare is made: a staged segment's buffer goes
            // back to the storage's pool, and the spare reuses it.
        }
        true
    }

    /// Deletes segments and snapshots older than the retention window (best effort: a file
    /// left behind is deleted after a later rotation).
    fn drop_old(&self, newest: u64) {
        let Some(window_oldest) = newest.checked_sub(self.retention - 1) else {
            return;
        };
        // Relaxed: a hint; a hold set just after this read is honoured at the next rotation,
        // and a reader that finds its segment gone stops with an error (never reads a
        // shorter log).
        let hold = self.stats.retain_from.load(Ordering::Relaxed);
        let oldest_kept = match hold.checked_sub(1) {
            None => window_oldest,
            Some(held) => {
                let floor = window_oldest.saturating_sub(self.held_max);
                window_oldest.min(held.max(floor))
            }
        };
        let Ok(names) = self.storage.list() else {
            return;
        };
        let old = |seq: Option<u64>| seq.is_some_and(|s| s < oldest_kept);
        // Segments first, oldest first, and durably, before their snapshots: a crash in
        // between leaves a snapshot without a segment (harmless), never a segment whose
        // snapshot marker names a missing file. One directory sync per segment: removals
        // not yet synced may reach the disk in any order, and a newer segment's removal
        // kept without an older one's would leave a gap recovery must refuse (found by
        // the reordering power loss of tests/it/crash_steps.rs). Retention removes one
        // segment per rotation in the steady state, so this costs no extra sync there.
        let mut segments: Vec<&String> =
            names.iter().filter(|n| old(parse_segment_name(n))).collect();
        segments.sort();
        for name in segments {
            if self.storage.remove(name).is_err() || self.storage.sync_dir().is_err() {
                return;
            }
        }
        for name in names.iter().filter(|n| old(parse_snapshot_name(n))) {
            let _ = self.storage.remove(name);
        }
    }

    /// Creates, allocates and pre-faults segment `sequence` under a temporary name. A
    /// failure (disk full) is not fatal: the core creates the file itself when it needs it.
    fn prepare_spare(&self, sequence: u64) {
        if !self.state.spares.is_empty() {
            return;
        }
        let name = tmp_name(&segment_name(sequence));
        let _ = self.storage.remove(&name);
        if let Ok(map) = self.storage.create_segment(&name, self.segment_size) {
            map.prefault();
            // The name moves into the queue (no clone): once the spare is ready this thread
            // allocates nothing until the next rotation.
            if let Err((name, _map)) = self.state.spares.push((name, map)) {
                let _ = self.storage.remove(&name);
            }
        }
    }
}

/// Runs this thread at nice 10: its work (zeroing pages ahead of the writer) is never
/// urgent, and at equal priority it took whole scheduler slices from the caller threads
/// sharing its core.
fn lower_priority() {
    // SAFETY: setpriority only reads its integer arguments; `who = 0` is the calling thread
    // on Linux (threads have their own nice value).
    #[allow(unsafe_code)]
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
}
