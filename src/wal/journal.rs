//! [`WalJournal`]: the durable [`Journal`]: frames appended to the mapped segment by the
//! core thread, groups made durable by the flusher thread, segments rotated ahead of time.
//!
//! A group's draws are gathered in [`Pending`] (preallocated: no allocation per draw or per
//! group) and written as one batch frame (`super::batch`) right before the group's commit
//! frame, or before an update frame inside the group (an addition can widen the items).

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::batch::{width_for, BatchKey};
use super::durability::{Durability, LogPlan};
use super::flusher::Flusher;
use super::frame::{
    self, SeedFields, COMMIT_FRAME_SIZE, EMPTY_ITEM, FRAME_HEADER_SIZE, SEED_FRAME_SIZE,
};
use super::header::{
    CloseReason, SegmentHeader, SegmentStatus, SEGMENT_HEADER_SIZE, WAL_FORMAT_VERSION,
};
use super::preparer::PreparerHandle;
use super::segment::{install, write_at, write_header, ActiveSegment, DeferredSnapshot, Install};
use super::state::{Closing, FlushState, Job, Rotation};
use crate::journal::{GroupSeq, Journal, JournalError, JournalStats, Space};
use crate::layout::{core_tmp_name, segment_name, snapshot_name, tmp_name};
use crate::pool::{Draw, DrawSeed, ItemIndex, ItemState, Pool, PoolState, RequestId, GENERATOR};
use crate::snapshot::format::{self as snapshot_format, SnapshotState};
use crate::storage::{DirLock, SegmentMap, Storage};

/// Jobs the core may queue for the flusher before it waits (one per group at most).
const JOBS_MAX: usize = 1024;

/// Most draws one batch frame holds: a longer group is written as several batches. With
/// [`BATCH_KEYS_MAX`], keeps the payload (at most 24 + 24 * 2^14 + 4 * 2^17 bytes) under
/// `FRAME_LEN_MAX`.
const BATCH_DRAWS_MAX: usize = 1 << 17;

/// Most keys one batch frame lists.
const BATCH_KEYS_MAX: usize = 1 << 14;

/// Bytes a batch frame costs beyond its keys and items: the frame header, the fixed fields,
/// at most 15 bytes of padding (rounded up to 56).
const BATCH_OVERHEAD: usize = FRAME_HEADER_SIZE + super::batch::BATCH_FIXED_LEN + 16;

/// Worst-case log bytes per draw: a keyed request of one draw (a 24-byte key) at 4 bytes
/// per item.
const DRAW_BYTES_MAX: usize = super::batch::BATCH_KEY_LEN + 4;

const _: () =
    assert!(super::batch::payload_len(BATCH_DRAWS_MAX, BATCH_KEYS_MAX, 4) <= frame::FRAME_LEN_MAX);
const _: () = assert!(BATCH_KEYS_MAX <= super::batch::BATCH_KEYS_MAX);

/// The most bytes `n` draws can take in batch frames: every draw a keyed request of one at
/// 4 bytes per item, split into as many frames as the caps force.
fn batch_bytes_max(n: usize) -> usize {
    let frames = n / BATCH_KEYS_MAX + n / BATCH_DRAWS_MAX + 1;
    n.saturating_mul(DRAW_BYTES_MAX).saturating_add(frames.saturating_mul(BATCH_OVERHEAD))
}

/// The open group's draws and keys, not yet written: one batch frame at the next commit.
#[derive(Debug)]
struct Pending {
    /// Request id of `items[0]`.
    first: u64,
    /// Item indices, `EMPTY_ITEM` for an empty draw.
    items: Vec<u32>,
    /// The keyed requests among `items`.
    keys: Vec<BatchKey>,
    /// The largest `item + 1` (wrapping, so an empty draw counts 0): the width's input.
    item_max_plus1: u32,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            first: 0,
            items: Vec::with_capacity(4096),
            keys: Vec::with_capacity(256),
            item_max_plus1: 0,
        }
    }

    /// Room for a group of `n` draws, so that appending never allocates (done between
    /// groups; the buffers only grow).
    fn ensure(&mut self, n: usize) {
        let items = n.min(BATCH_DRAWS_MAX);
        if self.items.capacity() < items {
            self.items.reserve(items - self.items.len());
        }
        let keys = n.min(BATCH_KEYS_MAX);
        if self.keys.capacity() < keys {
            self.keys.reserve(keys - self.keys.len());
        }
    }

    fn clear(&mut self) {
        self.items.clear();
        self.keys.clear();
        self.item_max_plus1 = 0;
    }

    /// The request id the next draw must have to join this batch.
    fn next_request_id(&self) -> u64 {
        self.first + self.items.len() as u64
    }

    /// The width of the batch's items.
    fn width(&self) -> u8 {
        width_for(self.item_max_plus1.checked_sub(1))
    }
}

/// Seconds since the Unix epoch, as the batch frame stores them (0 before 1970, saturated
/// in 2106).
fn unix_s() -> u32 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

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
    /// Segments kept beyond them at most while a log reader holds them.
    pub held_segments_max: u64,
    /// `Buffered` or `Sync`.
    pub durability: Durability,
    /// The pool's name (part of every segment's commitment, `pool::DrawSeed::commitment`).
    pub pool: String,
    /// Where each segment's draw seed comes from.
    pub seeds: SeedSource,
}

/// A seed frame's group: the seed frame and its commit frame.
const SEED_GROUP_SIZE: usize = SEED_FRAME_SIZE + COMMIT_FRAME_SIZE;

/// Where a journal takes each new seed (`wal::frame`, "Seed frames").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedSource {
    /// A fresh seed from the operating system each time.
    Entropy,
    /// `DrawSeed::fixed(n, first request id)`: reproducible draws for tests and benchmarks.
    Fixed(u64),
    /// No seed and no commitment of its own: a log whose draws were made elsewhere (a
    /// replica's, which copies the primary's seed frames instead).
    None,
}

impl SeedSource {
    /// The seed for draws from request id `first` on (`None` for [`SeedSource::None`]).
    fn seed(self, first: u64) -> Result<Option<DrawSeed>, JournalError> {
        match self {
            SeedSource::Entropy => DrawSeed::generate().map(Some).map_err(|e| {
                JournalError::Other(format!("cannot seed the draws from request id {first}: {e}"))
            }),
            SeedSource::Fixed(n) => Ok(Some(DrawSeed::fixed(n, first))),
            SeedSource::None => Ok(None),
        }
    }
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
    /// The open group's draws, written at commit.
    pending: Pending,
    /// The pool's name and where new seeds come from.
    pool: String,
    seeds: SeedSource,
    /// The seed the pool draws with now, and its commitment: in memory only until revealed.
    seed: Option<(DrawSeed, SeedFields)>,
    /// While the replication gate is on: committed groups not yet durable locally, with
    /// their last request ids (for `JournalStats::local_durable_request_id`).
    gate: std::collections::VecDeque<(u64, u64)>,
    _lock: Box<dyn DirLock>,
}

/// Groups the replication gate tracks at most (the engine keeps far fewer in flight:
/// `EngineConfig::inflight_groups_max`); preallocated, so `commit` never allocates.
const GATE_GROUPS_MAX: usize = 4096;

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
/// flusher (or startup) needs to install it. `deferred`: the snapshot is encoded, hashed
/// and its marker written by the flusher ([`Install::finish`]); here only the marker's
/// bytes are reserved (a rotation: not on the core thread).
fn prepare(
    map: Arc<dyn SegmentMap>,
    tmp_name: String,
    start: &WalStart,
    sequence: u64,
    state: PoolState,
    deferred: bool,
) -> Result<(Install, ActiveSegment), JournalError> {
    let first_request_id = state.last_request_id.0 + 1;
    let header = SegmentHeader {
        version: WAL_FORMAT_VERSION,
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
    let marker_at = active.cursor();
    let (snapshot, deferred) = if deferred {
        let len = frame::snapshot_frame_len(name.len());
        if active.append(len, |buf| {
            buf.fill(0);
            len
        }) != Some(marker_at)
        {
            return Err(JournalError::Other("segment too small for its snapshot marker".into()));
        }
        let fingerprint = start.catalog_fingerprint;
        let d = DeferredSnapshot { state, catalog_fingerprint: fingerprint, marker_at };
        (Vec::new(), Some(Box::new(d)))
    } else {
        let snapshot = SnapshotState::from_pool(&state, sequence, start.catalog_fingerprint);
        let (bytes, sha256) = snapshot_format::encode(&snapshot);
        let mut encoded = Ok(0);
        let marker = active.append(frame::snapshot_frame_len(name.len()), |buf| {
            encoded =
                frame::encode_snapshot(buf, sequence, &name, &sha256, state.last_request_id.0);
            *encoded.as_ref().unwrap_or(&0)
        });
        match (marker, encoded) {
            (Some(_), Ok(_)) => {}
            (_, Err(e)) => {
                return Err(JournalError::Other(format!("encoding snapshot marker: {e}")))
            }
            (None, _) => {
                return Err(JournalError::Other("segment too small for its snapshot marker".into()))
            }
        }
        (bytes, None)
    };
    let marker_end = active.cursor();
    let install = Install { map, tmp_name, sequence, marker_end, snapshot, deferred };
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
        pool: &mut Pool,
    ) -> Result<WalJournal, JournalError> {
        log_plan(start.durability);
        let sequence = start.sequence;
        let tmp = tmp_name(&segment_name(sequence));
        let _ = storage.remove(&tmp);
        let map = storage
            .create_segment(&tmp, start.segment_size)
            .map_err(io_error(format!("creating {}", storage.describe(&tmp))))?;
        let (install_job, active) = prepare(map, tmp, start, sequence, pool.state(), false)?;
        install(&*storage, &install_job).map_err(io_error(format!(
            "installing {}",
            storage.describe(&segment_name(sequence))
        )))?;
        let mut journal = WalJournal::run(storage, lock, start, active, install_job.marker_end)?;
        journal.commit_seed(pool)?;
        Ok(journal)
    }

    /// Appends again to the existing segment `resume.header.sequence` from `resume.cursor`
    /// (just past its last commit): zeroes whatever lies after the cursor (a trimmed torn
    /// tail must never pass as frames written after the restart), writes its header open
    /// again, syncs both, starts the flusher, and commits to a new seed (the last one was
    /// lost with the process) that `pool` draws with from now on. A restart that continues
    /// an unfilled segment adds no file to the data directory.
    ///
    /// # Errors
    /// Any I/O error reading, zeroing or rewriting the segment.
    pub fn resume(
        storage: Arc<dyn Storage>,
        lock: Box<dyn DirLock>,
        start: &WalStart,
        resume: &WalResume,
        pool: &mut Pool,
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
        let mut journal = WalJournal::run(storage, lock, start, active, resume.cursor)?;
        journal.commit_seed(pool)?;
        Ok(journal)
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
        // Relaxed: read by a shipper thread started later (thread spawn orders it).
        stats.run_start_segment.store(sequence, Ordering::Relaxed);
        stats.run_start_offset.store(active.cursor() as u64, Ordering::Relaxed);
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
                (start.retention_segments, start.held_segments_max),
                Arc::clone(&stats),
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
            pending: Pending::new(),
            pool: start.pool.clone(),
            seeds: start.seeds,
            seed: None,
            stats,
            gate: std::collections::VecDeque::with_capacity(GATE_GROUPS_MAX),
            _lock: lock,
        })
    }

    /// Bytes of a segment a group may fill: after the header, the snapshot marker and the
    /// seed's commitment, leaving room for its reveal.
    fn usable(&self) -> usize {
        (self.segment_size as usize)
            .saturating_sub(SEGMENT_HEADER_SIZE + frame::snapshot_frame_len(32))
            .saturating_sub(2 * SEED_GROUP_SIZE)
    }

    /// Commits to a new seed (a group of its own: the seed frame, then a commit) and gives
    /// `pool` its generator: the draws from the next request id on come from it. Nothing for
    /// a journal without seeds of its own ([`SeedSource::None`]).
    fn commit_seed(&mut self, pool: &mut Pool) -> Result<(), JournalError> {
        let last = pool.last_request_id();
        let Some(seed) = self.seeds.seed(last.0 + 1)? else { return Ok(()) };
        let fields = SeedFields {
            first_request_id: last.0 + 1,
            segment: self.active.sequence,
            generator: GENERATOR,
            commitment: seed.commitment(self.active.sequence, &self.pool),
            revealed: None,
        };
        self.append_seed(&fields, last)?;
        pool.set_rng(seed.rng());
        let published = crate::journal::SeedCommitment {
            segment: fields.segment,
            first_request_id: fields.first_request_id,
            commitment: fields.commitment,
        };
        *self.stats.seed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(published);
        self.seed = Some((seed, fields));
        Ok(())
    }

    /// Reveals the seed the pool drew with (a group of its own), once no more draws come
    /// from it: at a rotation and before a clean shutdown.
    fn reveal_seed(&mut self, last: RequestId) -> Result<(), JournalError> {
        let Some((seed, fields)) = self.seed.take() else { return Ok(()) };
        self.append_seed(&SeedFields { revealed: Some(seed.to_bytes()), ..fields }, last)?;
        Ok(())
    }

    /// Appends a seed frame in a group of its own, `last` the last request id so far.
    fn append_seed(
        &mut self,
        fields: &SeedFields,
        last: RequestId,
    ) -> Result<GroupSeq, JournalError> {
        let mut encoded = Ok(0);
        let at = self.active.append(SEED_FRAME_SIZE, |buf| {
            encoded = frame::encode_seed(buf, fields);
            *encoded.as_ref().unwrap_or(&0)
        });
        match (at, encoded) {
            (Some(_), Ok(_)) => {}
            (_, Err(e)) => {
                return Err(JournalError::Other(format!("encoding a seed frame: {e}")));
            }
            (None, _) => {
                return Err(JournalError::Other("seed frame beyond the reserved space".into()));
            }
        }
        self.commit(last)
    }

    /// Appends a seed frame shipped from another log (a replica copies its primary's
    /// commitments and reveals, so its log can be audited too), in a group of its own.
    /// Call [`Journal::reserve`] with [`Space::Seed`] first.
    ///
    /// # Errors
    /// When the journal failed or the frame does not fit the reserved space.
    pub fn append_shipped_seed(
        &mut self,
        fields: &SeedFields,
        last: RequestId,
    ) -> Result<GroupSeq, JournalError> {
        self.append_seed(fields, last)
    }

    /// Writes the pending draws as one batch frame (nothing when there are none).
    fn flush(&mut self) -> Result<(), JournalError> {
        let p = &mut self.pending;
        if p.items.is_empty() {
            if let Some(k) = p.keys.first() {
                let key = k.key;
                p.clear();
                return Err(JournalError::Other(format!(
                    "key {key:032x} announced draws, but none followed"
                )));
            }
            return Ok(());
        }
        if let Some(k) = p.keys.last() {
            let end = u64::from(k.offset) + u64::from(k.count);
            if end > p.items.len() as u64 {
                let (key, count, got) =
                    (k.key, k.count, p.items.len() as u64 - u64::from(k.offset));
                p.clear();
                return Err(JournalError::Other(format!(
                    "key {key:032x} announced {count} draws, {got} followed"
                )));
            }
        }
        let width = p.width();
        let len = frame::batch_frame_len(p.items.len(), p.keys.len(), width);
        let unix_s = unix_s();
        let mut encoded = Ok(0);
        let at = self.active.append(len, |buf| {
            encoded = frame::encode_batch(buf, p.first, unix_s, width, &p.keys, &p.items);
            *encoded.as_ref().unwrap_or(&0)
        });
        p.clear();
        match (at, encoded) {
            (Some(_), Ok(_)) => Ok(()),
            (_, Err(e)) => Err(JournalError::Other(format!("encoding a batch frame: {e}"))),
            (None, _) => Err(JournalError::Other("batch frame beyond the reserved space".into())),
        }
    }

    /// The sequence number of the segment being written.
    #[must_use]
    pub fn segment(&self) -> u64 {
        self.active.sequence
    }

    /// The newest group durable in the local log (the journal's durability, before the
    /// replication gate).
    #[inline]
    fn durable_locally(&mut self) -> Result<GroupSeq, JournalError> {
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

    /// The replication gate (`JournalStats::gated`): publishes the last request id durable
    /// locally, then reports only what the replicas stored too; fails once fenced.
    #[cold]
    fn gated(&mut self, local: GroupSeq) -> Result<GroupSeq, JournalError> {
        let mut newest = None;
        while let Some(&(group, last)) = self.gate.front() {
            if group > local.0 {
                break;
            }
            newest = Some(last);
            self.gate.pop_front();
        }
        if let Some(last) = newest {
            // Release: pairs with the shipper's Acquire; it then reads the log's files.
            self.stats.local_durable_request_id.store(last, Ordering::Release);
        }
        // Acquire: pairs with the shipper's Release when it fences or releases.
        if self.stats.fenced.load(Ordering::Acquire) {
            self.failed = true;
            return Err(JournalError::Other(
                "replication fenced this pool: another primary took over its stream, so \
                 nothing more is acknowledged here"
                    .into(),
            ));
        }
        let released = self.stats.released_group.load(Ordering::Acquire);
        Ok(GroupSeq(local.0.min(released)))
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
            version: WAL_FORMAT_VERSION,
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

    fn rotate(&mut self, pool: &mut Pool) -> Result<(), JournalError> {
        let sequence = self.active.sequence + 1;
        let (tmp_name, map) = self.take_spare(sequence)?;
        // The old segment's last group: its seed's reveal (room reserved by `usable`).
        self.reveal_seed(pool.last_request_id())?;
        let start = WalStart {
            sequence,
            catalog_fingerprint: self.fingerprint,
            segment_size: self.segment_size,
            retention_segments: 0,
            held_segments_max: 0,
            durability: self.durability,
            pool: String::new(),
            seeds: SeedSource::None,
        };
        // The copy of the pool (its key window included) stays here; its encoding and hash
        // go to the flusher (`DeferredSnapshot`): measured with a full 1 M-key window of
        // pulls of 10, ~7-16 ms here instead of ~100-200 ms.
        let state = pool.state();
        // Written by the preparer only after the flusher installed `next`: a segment closed
        // by a rotation proves that its successor exists (header.rs).
        let closed = self.closed_header(CloseReason::Rotation, &state);
        let (next, active) = prepare(map, tmp_name, &start, sequence, state, true)?;
        self.push(Job::Rotate(Box::new(Rotation { last_group: self.group, closed, next })))?;
        self.counted = active.cursor();
        self.active = active;
        self.waiting_install = true;
        // The new segment's draws come from a new seed, committed to before its first draw.
        self.commit_seed(pool)
    }
}

impl Journal for WalJournal {
    fn reserve(&mut self, space: Space, pool: &mut Pool) -> Result<(), JournalError> {
        self.check()?;
        let frames = match space {
            Space::Draws(n) => {
                self.pending.ensure(n);
                batch_bytes_max(n)
            }
            Space::Update { id_len } => frame::update_frame_len(id_len),
            Space::Seed => SEED_FRAME_SIZE,
        };
        let needed = frames.saturating_add(COMMIT_FRAME_SIZE);
        // The segment keeps room for its seed's reveal after the group.
        if needed + SEED_GROUP_SIZE <= self.active.room() {
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
        let item = draw.item.map_or(EMPTY_ITEM, |ItemIndex(i)| i);
        let request_id = draw.request_id.0;
        if self.pending.items.is_empty() {
            self.pending.first = request_id;
        } else if request_id != self.pending.next_request_id()
            || self.pending.items.len() == BATCH_DRAWS_MAX
        {
            // Cold: ids always follow one another in a group, and groups are far shorter
            // than a batch's cap; a batch holds consecutive ids only.
            self.flush()?;
            self.pending.first = request_id;
        }
        let p = &mut self.pending;
        p.item_max_plus1 = p.item_max_plus1.max(item.wrapping_add(1));
        p.items.push(item);
        Ok(())
    }

    fn append_key(&mut self, key: u128, count: u32) -> Result<(), JournalError> {
        if key == 0 || count == 0 || count as usize > BATCH_DRAWS_MAX {
            return Err(JournalError::Other(format!(
                "key {key:032x} for {count} draws: a key is non-zero and covers 1 to \
                 {BATCH_DRAWS_MAX} draws"
            )));
        }
        let p = &self.pending;
        let announced_end = p.keys.last().map_or(0, |k| k.offset as usize + k.count as usize);
        if announced_end > p.items.len() {
            return Err(JournalError::Other(format!(
                "key {key:032x} announced before the previous key's draws were appended"
            )));
        }
        if p.keys.len() == BATCH_KEYS_MAX || p.items.len() + count as usize > BATCH_DRAWS_MAX {
            // A keyed request never spans two batches.
            self.flush()?;
        }
        let p = &mut self.pending;
        // Cannot truncate: items.len() < BATCH_DRAWS_MAX < 2^32.
        let offset = p.items.len() as u32;
        p.keys.push(BatchKey { key, offset, count });
        Ok(())
    }

    fn append_update(&mut self, index: ItemIndex, item: &ItemState) -> Result<(), JournalError> {
        // A batch never spans an update: the update may add an item that widens the next.
        self.flush()?;
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
        self.flush()?;
        let group = self.group + 1;
        let at =
            self.active.append(COMMIT_FRAME_SIZE, |buf| frame::encode_commit(buf, last.0, group));
        if at.is_none() {
            return Err(JournalError::Other("commit frame beyond the reserved space".into()));
        }
        self.group = group;
        // Relaxed: the gate's switch, turned on by the shipper before any draw.
        if self.stats.gated.load(Ordering::Relaxed) {
            if self.gate.len() == GATE_GROUPS_MAX {
                self.gate.pop_front();
            }
            self.gate.push_back((group, last.0));
        }
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
        let local = self.durable_locally()?;
        // Relaxed: the gate's switch (see `commit`).
        if !self.stats.gated.load(Ordering::Relaxed) {
            return Ok(local);
        }
        self.gated(local)
    }

    fn group_draws_max(&self) -> usize {
        // As `reserve` checks: the worst-case batch frames and the commit fit after the header
        // and the snapshot marker. `batch_bytes_max(n) <= 29 n + 56`: a split costs at most
        // 56 bytes per 2^14 draws.
        let n = (self.usable().saturating_sub(COMMIT_FRAME_SIZE + BATCH_OVERHEAD))
            / (DRAW_BYTES_MAX + 1);
        debug_assert!(batch_bytes_max(n) + COMMIT_FRAME_SIZE <= self.usable(), "n={n}");
        n
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
        // No more draws: the seed is revealed as the segment's last group.
        self.reveal_seed(pool.last_request_id())?;
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
