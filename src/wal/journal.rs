//! [`WalJournal`]: the durable [`Journal`]: frames appended to the mapped segment by the
//! core thread, groups made durable by the flusher thread, segments rotated ahead of time.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::durability::{Durability, LogPlan};
use super::flusher::Flusher;
use super::frame::{self, COMMIT_FRAME_SIZE, DRAW_FRAME_SIZE};
use super::header::{CloseReason, SegmentHeader, SegmentStatus, SEGMENT_HEADER_SIZE};
use super::preparer::PreparerHandle;
use super::segment::{install, write_at, write_header, ActiveSegment, Install};
use super::state::{Closing, FlushState, Job, Rotation};
use crate::journal::{GroupSeq, Journal, JournalError, JournalStats, Space};
use crate::layout::{core_tmp_name, segment_name, snapshot_name, tmp_name};
use crate::pool::{Draw, ItemIndex, ItemState, Pool, PoolState};
use crate::snapshot::format::{self as snapshot_format, SnapshotState};
use crate::storage::{DirLock, SegmentMap, Storage};

/// Jobs the core may queue for the flusher before it waits (one per group at most).
const JOBS_MAX: usize = 1024;

/// Where a new journal starts: the state recovery produced and the segment to open next.
#[derive(Debug)]
pub struct WalStart {
    /// Sequence number of the segment to create.
    pub sequence: u64,
    /// Fingerprint of the catalog the log was born from.
    pub catalog_fingerprint: u64,
    /// Segment file size in bytes.
    pub segment_size: u64,
    /// Segments kept (older ones and their snapshots are deleted).
    pub retention_segments: u64,
    /// `Buffered` or `Sync`.
    pub durability: Durability,
}

/// Where appending resumes in an existing segment ([`WalJournal::resume`]).
#[derive(Debug, Clone, Copy)]
pub struct WalResume {
    /// The segment's header as recovery read it (open, or closed by a shutdown or a
    /// recovery); written back open.
    pub header: SegmentHeader,
    /// Just past its last commit.
    pub cursor: usize,
}

/// The end of the last non-zero byte of `name` at or after `from` (`from` when there is
/// none), read in chunks.
fn last_nonzero_end(storage: &dyn Storage, name: &str, from: usize) -> std::io::Result<usize> {
    const CHUNK: usize = 1 << 20;
    let mut buf = vec![0_u8; CHUNK];
    let mut at = from;
    let mut end = from;
    loop {
        let n = storage.read_at(name, at as u64, &mut buf)?;
        if n == 0 {
            return Ok(end);
        }
        if let Some(i) = buf.get(..n).and_then(|b| b.iter().rposition(|&x| x != 0)) {
            end = at + i + 1;
        }
        at += n;
    }
}

/// What `durability` asks of the log.
///
/// # Panics
/// For [`Durability::Memory`]: that mode keeps no log (a caller's bug).
fn log_plan(durability: Durability) -> LogPlan {
    let Some(plan) = durability.plan() else {
        panic!("the memory mode has no log");
    };
    plan
}

/// The durable journal. Created by recovery (`crate::recovery`), which holds the
/// directory lock and hands it over.
pub struct WalJournal {
    storage: Arc<dyn Storage>,
    state: Arc<FlushState>,
    flusher: Option<JoinHandle<()>>,
    active: ActiveSegment,
    segment_size: u64,
    fingerprint: u64,
    durability: Durability,
    /// Groups are acknowledged once the flusher reports them (sync mode, or buffered mode
    /// on staged segments); else once committed (`LogPlan::acknowledge_via_flusher`).
    via_flusher: bool,
    group: u64,
    /// Buffered mode: groups after a rotation wait until the flusher installed the segment.
    waiting_install: bool,
    failed: bool,
    stats: Arc<JournalStats>,
    /// Cursor of the active segment up to which appended bytes are counted in `stats`.
    counted: usize,
    _lock: Box<dyn DirLock>,
}

impl fmt::Debug for WalJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalJournal")
            .field("segment", &self.active.sequence)
            .field("cursor", &self.active.cursor())
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> JournalError {
    move |source| JournalError::io(context, source)
}

/// Writes a new segment's header and snapshot marker into `map` and returns what the
/// flusher (or startup) needs to install it.
fn prepare(
    map: Arc<dyn SegmentMap>,
    tmp_name: String,
    start: &WalStart,
    sequence: u64,
    state: &PoolState,
) -> Result<(Install, ActiveSegment), JournalError> {
    let snapshot = SnapshotState::from_pool(state, sequence, start.catalog_fingerprint);
    let (bytes, sha256) = snapshot_format::encode(&snapshot);
    let first_request_id = state.last_request_id.0 + 1;
    let header = SegmentHeader {
        status: SegmentStatus::Open,
        sequence,
        first_request_id,
        catalog_fingerprint: start.catalog_fingerprint,
        end_offset: 0,
        segment_size: start.segment_size,
        close_reason: None,
        next_request_id: 0,
    };
    write_at(&*map, 0, &header.encode());
    let name = snapshot_name(sequence);
    let mut active =
        ActiveSegment::new(Arc::clone(&map), sequence, first_request_id, SEGMENT_HEADER_SIZE);
    let mut encoded = Ok(0);
    let marker = active.append(frame::snapshot_frame_len(name.len()), |buf| {
        encoded = frame::encode_snapshot(buf, sequence, &name, &sha256, state.last_request_id.0);
        *encoded.as_ref().unwrap_or(&0)
    });
    match (marker, encoded) {
        (Some(_), Ok(_)) => {}
        (_, Err(e)) => return Err(JournalError::Other(format!("encoding snapshot marker: {e}"))),
        (None, _) => {
            return Err(JournalError::Other("segment too small for its snapshot marker".into()))
        }
    }
    let install = Install { map, tmp_name, sequence, marker_end: active.cursor(), snapshot: bytes };
    Ok((install, active))
}

impl WalJournal {
    /// Creates segment `start.sequence` holding a snapshot of `pool`, installs it (synced,
    /// renamed, directory synced) and starts the flusher.
    ///
    /// # Errors
    /// Any I/O error creating or installing the segment (ENOSPC included).
    pub fn create(
        storage: Arc<dyn Storage>,
        lock: Box<dyn DirLock>,
        start: &WalStart,
        pool: &Pool,
    ) -> Result<WalJournal, JournalError> {
        log_plan(start.durability);
        let sequence = start.sequence;
        let tmp = tmp_name(&segment_name(sequence));
        let _ = storage.remove(&tmp);
        let map = storage
            .create_segment(&tmp, start.segment_size)
            .map_err(io_error(format!("creating {}", storage.describe(&tmp))))?;
        let (install_job, active) = prepare(map, tmp, start, sequence, &pool.state())?;
        install(&*storage, &install_job).map_err(io_error(format!(
            "installing {}",
            storage.describe(&segment_name(sequence))
        )))?;
        WalJournal::run(storage, lock, start, active, install_job.marker_end)
    }

    /// Appends again to the existing segment `resume.header.sequence` from `resume.cursor`
    /// (just past its last commit): zeroes whatever lies after the cursor (a trimmed torn
    /// tail must never pass as frames written after the restart), writes its header open
    /// again, syncs both, and starts the flusher. A restart that continues an unfilled
    /// segment adds no file to the data directory.
    ///
    /// # Errors
    /// Any I/O error reading, zeroing or rewriting the segment.
    pub fn resume(
        storage: Arc<dyn Storage>,
        lock: Box<dyn DirLock>,
        start: &WalStart,
        resume: &WalResume,
    ) -> Result<WalJournal, JournalError> {
        log_plan(start.durability);
        let name = segment_name(resume.header.sequence);
        let io = |what: &str| io_error(format!("{what} {}", storage.describe(&name)));
        let dirty_end = last_nonzero_end(&*storage, &name, resume.cursor).map_err(io("reading"))?;
        let map = storage.resume_segment(&name).map_err(io("opening"))?;
        if resume.cursor > map.len() || dirty_end > map.len() {
            return Err(JournalError::Other(format!(
                "cannot resume {} at offset {}: the file has {} bytes",
                storage.describe(&name),
                resume.cursor,
                map.len()
            )));
        }
        if dirty_end > resume.cursor {
            write_at(&*map, resume.cursor, &vec![0; dirty_end - resume.cursor]);
            map.sync_range(resume.cursor, dirty_end - resume.cursor).map_err(io("zeroing"))?;
        }
        let header = resume.header.reopened();
        write_header(&*map, &header).map_err(io("reopening"))?;
        let active =
            ActiveSegment::new(map, header.sequence, header.first_request_id, resume.cursor);
        WalJournal::run(storage, lock, start, active, resume.cursor)
    }

    /// Starts the flusher (and its preparer) on `active`, durable up to `synced`.
    fn run(
        storage: Arc<dyn Storage>,
        lock: Box<dyn DirLock>,
        start: &WalStart,
        active: ActiveSegment,
        synced: usize,
    ) -> Result<WalJournal, JournalError> {
        let plan = log_plan(start.durability);
        let via_flusher = plan.acknowledge_via_flusher(active.map().writes_through());
        let sequence = active.sequence;
        let state = Arc::new(FlushState::new(sequence, 0, JOBS_MAX));
        let stats = Arc::new(JournalStats::default());
        let flusher = Flusher {
            stats: Arc::clone(&stats),
            storage: Arc::clone(&storage),
            state: Arc::clone(&state),
            current: Arc::clone(active.map()),
            sequence,
            synced,
            sync_data: plan.sync_data,
            preparer: PreparerHandle::spawn(
                Arc::clone(&storage),
                Arc::clone(&state),
                Arc::clone(active.map()),
                sequence,
                start.segment_size,
                start.retention_segments,
            )
            .map_err(io_error("starting the preparer thread".into()))?,
        };
        let handle = std::thread::Builder::new()
            .name("rewardpool-flusher".into())
            .spawn(move || flusher.run())
            .map_err(io_error("starting the flusher thread".into()))?;
        let counted = active.cursor();
        Ok(WalJournal {
            storage,
            state,
            flusher: Some(handle),
            active,
            segment_size: start.segment_size,
            fingerprint: start.catalog_fingerprint,
            durability: start.durability,
            via_flusher,
            group: 0,
            waiting_install: false,
            failed: false,
            counted,
            stats,
            _lock: lock,
        })
    }

    /// Bytes of a segment a group may fill: after the header and the snapshot marker.
    fn usable(&self) -> usize {
        self.segment_size as usize - SEGMENT_HEADER_SIZE - frame::snapshot_frame_len(32)
    }

    /// The sequence number of the segment being written.
    #[must_use]
    pub fn segment(&self) -> u64 {
        self.active.sequence
    }

    fn check(&mut self) -> Result<(), JournalError> {
        if self.failed {
            return Err(JournalError::PreviousIo);
        }
        if let Some(error) = self.state.error() {
            self.failed = true;
            return Err(error);
        }
        // A flusher that ended without reporting a failure panicked (a bug): nothing would
        // ever become durable, so stop instead of waiting for it.
        if self.flusher.as_ref().is_some_and(JoinHandle::is_finished) {
            self.failed = true;
            // It may have failed between the look at `error()` above and now: joined, all it
            // did happens-before the second look, and its own error wins.
            if let Some(handle) = self.flusher.take() {
                let _ = handle.join();
            }
            let exited = JournalError::HelperExited { thread: "flusher" };
            return Err(self.state.error().unwrap_or(exited));
        }
        Ok(())
    }

    fn push(&mut self, mut job: Job) -> Result<(), JournalError> {
        loop {
            match self.state.push(job) {
                Ok(()) => return Ok(()),
                Err(back) => {
                    // Back-pressure: the flusher is behind by JOBS_MAX jobs.
                    self.check()?;
                    job = back;
                    std::thread::yield_now();
                }
            }
        }
    }

    /// The active segment's header, closed at the cursor (between groups) for `reason`;
    /// later segments continue after `state`'s last request id.
    fn closed_header(&self, reason: CloseReason, state: &PoolState) -> SegmentHeader {
        SegmentHeader {
            status: SegmentStatus::Open,
            sequence: self.active.sequence,
            first_request_id: self.active.first_request_id,
            catalog_fingerprint: self.fingerprint,
            end_offset: 0,
            segment_size: self.segment_size,
            close_reason: None,
            next_request_id: 0,
        }
        .closed(self.active.cursor() as u64, reason, state.last_request_id.0 + 1)
    }

    /// The next segment file: the flusher's spare when it is for `sequence`, else created
    /// here (a slow path: the flusher could not keep up or the disk was full).
    fn take_spare(&mut self, sequence: u64) -> Result<(String, Arc<dyn SegmentMap>), JournalError> {
        let wanted = tmp_name(&segment_name(sequence));
        if let Some((name, map)) = self.state.spares.pop() {
            if name == wanted {
                return Ok((name, map));
            }
            let _ = self.storage.remove(&name);
        }
        let name = core_tmp_name(&wanted);
        let _ = self.storage.remove(&name);
        match self.storage.create_segment(&name, self.segment_size) {
            Ok(map) => Ok((name, map)),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => Err(JournalError::NoSpace {
                context: format!("creating {}", self.storage.describe(&name)),
            }),
            Err(e) => {
                Err(JournalError::io(format!("creating {}", self.storage.describe(&name)), e))
            }
        }
    }

    fn rotate(&mut self, pool: &Pool) -> Result<(), JournalError> {
        let sequence = self.active.sequence + 1;
        let (tmp_name, map) = self.take_spare(sequence)?;
        let start = WalStart {
            sequence,
            catalog_fingerprint: self.fingerprint,
            segment_size: self.segment_size,
            retention_segments: 0,
            durability: self.durability,
        };
        let state = pool.state();
        let (next, active) = prepare(map, tmp_name, &start, sequence, &state)?;
        // Written by the preparer only after the flusher installed `next`: a segment closed
        // by a rotation proves that its successor exists (header.rs).
        let closed = self.closed_header(CloseReason::Rotation, &state);
        self.push(Job::Rotate(Box::new(Rotation { last_group: self.group, closed, next })))?;
        self.counted = active.cursor();
        self.active = active;
        self.waiting_install = true;
        Ok(())
    }
}

impl Journal for WalJournal {
    fn reserve(&mut self, space: Space, pool: &Pool) -> Result<(), JournalError> {
        self.check()?;
        let frames = match space {
            Space::Draws(n) => n.saturating_mul(DRAW_FRAME_SIZE),
            Space::Update { id_len } => frame::update_frame_len(id_len),
        };
        let needed = frames.saturating_add(COMMIT_FRAME_SIZE);
        if needed <= self.active.room() {
            return Ok(());
        }
        let usable = self.usable();
        if needed > usable {
            return Err(JournalError::GroupTooLarge { needed, segment_size: self.segment_size });
        }
        self.rotate(pool)
    }

    #[inline]
    fn append_draw(&mut self, draw: Draw) -> Result<(), JournalError> {
        let item = draw.item.map(|ItemIndex(i)| i);
        match self
            .active
            .append(DRAW_FRAME_SIZE, |buf| frame::encode_draw(buf, draw.request_id.0, item))
        {
            Some(_) => Ok(()),
            None => Err(JournalError::Other("draw frame beyond the reserved space".into())),
        }
    }

    fn append_update(&mut self, index: ItemIndex, item: &ItemState) -> Result<(), JournalError> {
        let len = frame::update_frame_len(item.id.len());
        let mut encoded = Ok(0);
        let at = self.active.append(len, |buf| {
            encoded =
                frame::encode_update(buf, index.0, &item.id, item.quantity.to_i64(), item.weight);
            *encoded.as_ref().unwrap_or(&0)
        });
        match (at, encoded) {
            (Some(_), Ok(_)) => Ok(()),
            (_, Err(e)) => {
                Err(JournalError::Other(format!("encoding update of {:?}: {e}", item.id)))
            }
            (None, _) => Err(JournalError::Other("update frame beyond the reserved space".into())),
        }
    }

    #[inline]
    fn commit(&mut self, last: crate::pool::RequestId) -> Result<GroupSeq, JournalError> {
        let group = self.group + 1;
        let at =
            self.active.append(COMMIT_FRAME_SIZE, |buf| frame::encode_commit(buf, last.0, group));
        if at.is_none() {
            return Err(JournalError::Other("commit frame beyond the reserved space".into()));
        }
        self.group = group;
        let cursor = self.active.cursor();
        // Relaxed: an observer's counter, once per group.
        self.stats.bytes_appended.fetch_add((cursor - self.counted) as u64, Ordering::Relaxed);
        self.counted = cursor;
        if self.via_flusher {
            self.push(Job::Sync { group, end: cursor })?;
        }
        Ok(GroupSeq(group))
    }

    #[inline]
    fn durable(&mut self) -> Result<GroupSeq, JournalError> {
        self.check()?;
        if self.via_flusher {
            // Acquire: pairs with the flusher's Release after its sync or write.
            return Ok(GroupSeq(self.state.durable.load(Ordering::Acquire)));
        }
        if self.waiting_install {
            // Acquire: pairs with the flusher's Release after installing.
            if self.state.installed.load(Ordering::Acquire) < self.active.sequence {
                return Ok(GroupSeq(self.state.durable.load(Ordering::Acquire)));
            }
            self.waiting_install = false;
        }
        // Buffered on a mapped segment: a frame in it survives a process crash.
        Ok(GroupSeq(self.group))
    }

    fn group_draws_max(&self) -> usize {
        // As `reserve` checks: the draw frames and the commit fit after the header and the
        // snapshot marker.
        (self.usable() - COMMIT_FRAME_SIZE) / DRAW_FRAME_SIZE
    }

    fn place_helpers(&mut self, core: usize) {
        // Relaxed: a placement hint the helpers read at their next wake-up.
        self.state.helper_core.store(core as u64 + 1, Ordering::Relaxed);
    }

    fn stats(&self) -> Option<Arc<JournalStats>> {
        Some(Arc::clone(&self.stats))
    }

    fn close(&mut self, pool: &Pool) -> Result<(), JournalError> {
        self.check()?;
        let state = pool.state();
        let snapshot = SnapshotState::from_pool(&state, self.active.sequence + 1, self.fingerprint);
        let (bytes, _) = snapshot_format::encode(&snapshot);
        let closed = self.closed_header(CloseReason::Shutdown, &state);
        self.push(Job::Close(Box::new(Closing {
            last_group: self.group,
            closed,
            snapshot: bytes,
        })))?;
        if let Some(handle) = self.flusher.take() {
            let _ = handle.join();
        }
        self.check()
    }
}

impl Drop for WalJournal {
    fn drop(&mut self) {
        // Without a clean close (the engine failed): stop the flusher; the log stays as it
        // is on disk and recovery takes it from there.
        if let Some(handle) = self.flusher.take() {
            let mut job = Job::Stop;
            while let Err(back) = self.state.push(job) {
                // A full queue: the flusher is either working through it (it then takes
                // the Stop) or has stopped on a failure (then nothing is left to tell it).
                if handle.is_finished() {
                    break;
                }
                job = back;
                std::thread::yield_now();
            }
            let _ = handle.join();
        }
    }
}
