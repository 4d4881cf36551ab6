//! The flusher thread: makes committed groups durable in log order, installs rotated
//! segments, closes retired ones, and prepares the next segment file ahead of time, so the
//! core thread never waits on msync, fdatasync or file creation (MEASURED.md: moving the
//! sync off the core was worth 4×).
//!
//! The core sends jobs through a bounded queue; the flusher publishes progress through
//! atomics the core polls (`durable`, `installed`) and stops for good on the first I/O
//! error (SPEC §2.9: never retry a failed sync).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::header::SegmentHeader;
use super::preparer::{Close, PreparerHandle};
use super::segment::{self, install, Install};
use super::state::{pin_helper, FlushState, Job, Rotation};
use crate::layout::{segment_name, snapshot_name, tmp_name};
use crate::storage::{SegmentMap, Storage};
use crate::sync::{Idle, IdleConfig};

/// How the flusher idles without a job: 63 spins, then parks of at most 5 ms (the core
/// rings its doorbell after each push).
const FLUSHER_IDLE: IdleConfig =
    IdleConfig { spin_passes: 63, yield_passes: 0, park_max: Duration::from_millis(5) };

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
    /// `LogPlan::sync_data`: Sync jobs sync; else they only write (staged segments).
    pub(crate) sync_data: bool,
    /// Prepares spare segments and applies retention on its own thread.
    pub(crate) preparer: PreparerHandle,
}

impl Flusher {
    /// Runs until a Close job or an error.
    pub(crate) fn run(mut self) {
        let mut next: Option<Job> = None;
        let mut idle = Idle::new(FLUSHER_IDLE);
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
                self.idle(&mut idle);
                continue;
            };
            idle.reset();
            let result = match job {
                Job::Sync { group, end } => self.sync(group, end, &mut next),
                Job::Rotate(r) => {
                    let Rotation { last_group, closed, next } = *r;
                    self.rotate(last_group, &closed, next)
                }
                Job::Close(c) => {
                    if let Err((context, e)) = self.close(c.last_group, &c.closed, &c.snapshot) {
                        self.state.fail(&context, e);
                    }
                    return;
                }
                Job::Stop => return,
            };
            if let Err((context, e)) = result {
                self.state.fail(&context, e);
                return;
            }
        }
    }

    fn idle(&self, idle: &mut Idle) {
        if let Some(timeout) = idle.pause(true) {
            // The queue re-check runs after the doorbell's fence, which pairs with the fence
            // of the ring in `FlushState::push` (Dekker).
            self.state.bell.sleep(timeout, || !self.state.jobs.is_empty());
        }
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
        mut next: Install,
    ) -> Result<(), (String, io::Error)> {
        // A rotation's snapshot is encoded and hashed here, not on the core thread.
        next.finish().map_err(|e| (format!("encoding {}", snapshot_name(next.sequence)), e))?;
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
            segment::close(&*c.map, c.synced, &c.header)
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
            return Err((reason.to_string(), io::Error::other("closing a retired segment failed")));
        }
        segment::close(&*self.current, self.synced, closed)
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
