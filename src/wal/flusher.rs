//! The flusher thread: makes committed groups durable in log order, installs rotated
//! segments, closes retired ones, and prepares the next segment file ahead of time, so the
//! core thread never waits on msync, fdatasync or file creation (MEASURED.md: moving the
//! sync off the core was worth 4×).
//!
//! The core sends jobs through a bounded queue; the flusher publishes progress through
//! atomics the core polls (`durable`, `installed`) and stops for good on the first I/O
//! error (SPEC §2.9: never retry a failed sync).

use std::io;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;

use super::header::{SegmentHeader, SEGMENT_HEADER_SIZE};
use super::preparer::Close;
use super::segment::write_at;
use crate::layout::{segment_name, snapshot_name, tmp_name};
use crate::storage::{SegmentMap, Storage};

/// A segment whose header and snapshot marker are written, to be put in place.
#[derive(Debug)]
pub(crate) struct Install {
    pub(crate) map: Arc<dyn SegmentMap>,
    pub(crate) tmp_name: String,
    pub(crate) sequence: u64,
    /// Offset just past the snapshot marker.
    pub(crate) marker_end: usize,
    /// The snapshot file's bytes.
    pub(crate) snapshot: Vec<u8>,
}

/// Puts a prepared segment in place: snapshot file (tmp, sync, rename, sync dir), then the
/// segment's header and marker synced, renamed, directory synced. Only then may anything
/// in the segment be acknowledged.
pub(crate) fn install(storage: &dyn Storage, i: &Install) -> io::Result<()> {
    let snapshot = snapshot_name(i.sequence);
    let snapshot_tmp = tmp_name(&snapshot);
    storage.write_synced(&snapshot_tmp, &i.snapshot)?;
    storage.rename(&snapshot_tmp, &snapshot)?;
    // The snapshot's name must be durable before a segment that refers to it.
    storage.sync_dir()?;
    i.map.sync_range(0, i.marker_end)?;
    storage.rename(&i.tmp_name, &segment_name(i.sequence))?;
    storage.sync_dir()
}

/// Writes the closed header of a retired segment after syncing its frames.
pub(crate) fn close_segment(
    map: &dyn SegmentMap,
    synced: usize,
    header: &SegmentHeader,
) -> io::Result<()> {
    map.retire();
    let end = usize::try_from(header.end_offset).unwrap_or(usize::MAX).min(map.len());
    // The frames must be durable before the header that calls them closed. A map that
    // writes through syncs exactly the range not yet synced. A staged one may hold written
    // but unsynced bytes below `synced` (buffered mode writes groups without syncing them):
    // its sync_range ends in an fdatasync of the whole file, so call it even for no bytes.
    if end > synced || !map.writes_through() {
        map.sync_range(synced, end.saturating_sub(synced))?;
    }
    write_at(map, 0, &header.encode());
    map.sync_range(0, SEGMENT_HEADER_SIZE)
}

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
    pub(crate) error: Mutex<Option<String>>,
    /// Set while the flusher parks; the core unparks it after pushing a job.
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
    /// Next segment files, created and pre-faulted ahead of time (at most one waits).
    pub(crate) spares: ArrayQueue<(String, Arc<dyn SegmentMap>)>,
    /// The core the flusher and preparer should run on (1 + id; 0 = not set): any core but
    /// the core thread's.
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
            sleeping: AtomicBool::new(false),
            thread: OnceLock::new(),
            spares: ArrayQueue::new(1),
            helper_core: AtomicU64::new(0),
            jobs: ArrayQueue::new(jobs_max),
        }
    }

    /// Queues a job and wakes the flusher; false if the queue is full (retry later).
    pub(crate) fn push(&self, job: Job) -> Result<(), Job> {
        self.jobs.push(job)?;
        // SeqCst fence: orders the push before the load of `sleeping`; pairs with the
        // flusher's SeqCst store + fence before it re-checks the queue (Dekker).
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
        Ok(())
    }

    pub(crate) fn error(&self) -> Option<String> {
        // Acquire: pairs with the Release store in `fail`.
        if self.failed.load(Ordering::Acquire) {
            return Some(
                self.error.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default(),
            );
        }
        None
    }

    /// Records the first failure (later ones, often its consequences, are dropped).
    pub(crate) fn fail(&self, context: &str, e: &io::Error) {
        let mut error = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if error.is_none() {
            *error = Some(format!("{context}: {e}"));
        }
        drop(error);
        // Release: publishes `error` to the core's Acquire in `error()`.
        self.failed.store(true, Ordering::Release);
    }
}

/// The flusher's own state.
pub(crate) struct Flusher {
    pub(crate) stats: Arc<crate::journal::JournalStats>,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) state: Arc<FlushState>,
    pub(crate) current: Arc<dyn SegmentMap>,
    pub(crate) sequence: u64,
    /// Offset up to which `current` is in the file: synced in sync mode; in buffered mode
    /// on a staged segment, written (pwrite) but synced only when the segment closes; in
    /// buffered mode on a mapped segment, left at the snapshot marker (no jobs come, and the
    /// closing msync covers the rest).
    pub(crate) synced: usize,
    /// Sync mode: Sync jobs sync; else they only write (staged segments).
    pub(crate) sync_data: bool,
    /// Prepares spare segments and applies retention on its own thread.
    pub(crate) preparer: super::preparer::PreparerHandle,
}

impl Flusher {
    /// Runs until a Close job or an error.
    pub(crate) fn run(mut self) {
        let _ = self.state.thread.set(std::thread::current());
        let mut next: Option<Job> = None;
        let mut idle = 0_u32;
        let mut pinned = 0;
        loop {
            // Acquire: pairs with the Release in `fail`. The preparer fails on its own thread
            // (closing a retired segment): stop here too, since the core stops on it and a
            // dropped journal joins this thread.
            if self.state.failed.load(Ordering::Acquire) {
                return;
            }
            pinned = pin_helper(&self.state, pinned);
            let Some(job) = next.take().or_else(|| self.state.jobs.pop()) else {
                idle += 1;
                self.idle(idle);
                continue;
            };
            idle = 0;
            let result = match job {
                Job::Sync { group, end } => self.sync(group, end, &mut next),
                Job::Rotate(r) => {
                    let Rotation { last_group, closed, next } = *r;
                    self.rotate(last_group, &closed, next)
                }
                Job::Close(c) => {
                    if let Err((context, e)) = self.close(c.last_group, &c.closed, &c.snapshot) {
                        self.state.fail(&context, &e);
                    }
                    return;
                }
                Job::Stop => return,
            };
            if let Err((context, e)) = result {
                self.state.fail(&context, &e);
                return;
            }
        }
    }

    fn idle(&self, idle: u32) {
        if idle < 64 {
            std::hint::spin_loop();
            return;
        }
        // SeqCst store + fence: pairs with the fence in `FlushState::push` (Dekker).
        self.state.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.state.jobs.is_empty() {
            std::thread::park_timeout(Duration::from_millis(5));
        }
        self.state.sleeping.store(false, Ordering::Relaxed);
    }

    /// Syncs (or, in buffered mode, writes) through the newest queued Sync job (coalescing: one
    /// `sync_range` covers them all).
    /// A non-Sync job popped on the way is left in `next`.
    fn sync(
        &mut self,
        mut group: u64,
        mut end: usize,
        next: &mut Option<Job>,
    ) -> Result<(), (String, io::Error)> {
        while let Some(job) = self.state.jobs.pop() {
            if let Job::Sync { group: g, end: e } = job {
                group = g;
                end = e;
            } else {
                *next = Some(job);
                break;
            }
        }
        if !self.sync_data && end > self.synced {
            // Buffered mode on a staged segment: into the page cache, where a process
            // crash cannot lose it.
            self.current
                .write_range(self.synced, end - self.synced)
                .map_err(|e| (format!("writing {}", segment_name(self.sequence)), e))?;
            self.synced = end;
        }
        if self.sync_data && end > self.synced {
            let started = std::time::Instant::now();
            self.current
                .sync_range(self.synced, end - self.synced)
                .map_err(|e| (format!("syncing {}", segment_name(self.sequence)), e))?;
            let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            // Relaxed: observers' counters, once per sync.
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes_synced.fetch_add((end - self.synced) as u64, Ordering::Relaxed);
            self.stats.sync_ns_total.fetch_add(ns, Ordering::Relaxed);
            self.stats.sync_ns_max.fetch_max(ns, Ordering::Relaxed);
            self.synced = end;
        }
        // Release: the core's Acquire load of `durable` sees the synced state first.
        self.state.durable.store(group, Ordering::Release);
        Ok(())
    }

    fn rotate(
        &mut self,
        last_group: u64,
        closed: &SegmentHeader,
        next: Install,
    ) -> Result<(), (String, io::Error)> {
        // Install the next segment first, so acknowledgements resume at once; closing the
        // old one may mean syncing all of it (buffered mode: tens of ms for a 64 MiB
        // segment), which must not hold acks back. Until the old one is closed, recovery
        // accepts it open as long as it ends cleanly at a commit (it does: rotation happens
        // between groups).
        install(&*self.storage, &next)
            .map_err(|e| (format!("installing {}", segment_name(next.sequence)), e))?;
        let old = segment_name(self.sequence);
        let old_map = std::mem::replace(&mut self.current, next.map);
        let old_synced = std::mem::replace(&mut self.synced, next.marker_end);
        self.sequence = next.sequence;
        // Release: pairs with the core's Acquire loads in `WalJournal::durable`. In sync
        // mode the old segment's groups were synced by the Sync jobs queued before this one.
        self.state.installed.store(next.sequence, Ordering::Release);
        self.state.durable.store(last_group, Ordering::Release);
        // The old segment is closed by the preparer, so the next groups' syncs (or writes)
        // do not wait behind its closing sync; inline only when two closes already wait.
        let close = Close { map: old_map, synced: old_synced, header: *closed };
        if let Err(c) = self.preparer.close_later(close) {
            close_segment(&*c.map, c.synced, &c.header)
                .map_err(|e| (format!("closing {old}"), e))?;
            // Before the preparer makes the next spare: a staged segment's buffer goes back
            // to the storage's pool when its last reference drops, and the spare can reuse it.
            drop(c);
        }
        self.preparer.installed(self.sequence);
        Ok(())
    }

    fn close(
        &mut self,
        last_group: u64,
        closed: &SegmentHeader,
        snapshot: &[u8],
    ) -> Result<(), (String, io::Error)> {
        let name = segment_name(self.sequence);
        // The preparer first closes the retired segments it holds (older ones close first),
        // and the spare segment prepared ahead is not needed any more.
        self.preparer.stop();
        if let Some(reason) = self.state.error() {
            return Err((reason, io::Error::other("closing a retired segment failed")));
        }
        close_segment(&*self.current, self.synced, closed)
            .map_err(|e| (format!("closing {name}"), e))?;
        // Leave a tidy directory (the directory sync below makes the removal durable too).
        if let Some((spare, map)) = self.state.spares.pop() {
            drop(map);
            let _ = self.storage.remove(&spare);
        }
        // The final snapshot: the state the next segment will start from.
        let final_name = snapshot_name(self.sequence + 1);
        let tmp = tmp_name(&final_name);
        let write = || -> io::Result<()> {
            self.storage.write_synced(&tmp, snapshot)?;
            self.storage.rename(&tmp, &final_name)?;
            self.storage.sync_dir()
        };
        write().map_err(|e| (format!("writing {final_name}"), e))?;
        self.state.durable.store(last_group, Ordering::Release);
        Ok(())
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
