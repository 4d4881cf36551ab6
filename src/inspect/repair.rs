//! `wal repair`: keep the newest state that is provably intact, after saying what will be
//! dropped, keep a copy of everything changed or dropped (`dropped.<file>`), and make sure
//! no request id that may have been acknowledged is ever issued again.
//!
//! # What a repair keeps, in order of preference
//!
//! | damage | repair | state kept |
//! |--------|--------|------------|
//! | a segment's snapshot missing or damaged, the segment before it intact | rebuild the snapshot from that segment's replay; only bytes whose SHA-256 equals the marker's are written | all |
//! | damage only in old segments (a bad frame, a missing middle segment, a bad header), newer segments intact on their own | move the old ones aside: the newer segments' snapshots hold the state | all |
//! | the log's end is missing (newest segment closed by a rotation, or a snapshot beyond the end) | mark the newest segment as the end, move snapshots beyond it aside | all that is left |
//! | a bad frame, or a truncated file, in the newest intact part | cut that segment just past its last intact commit (a truncated file gets its size back), move later segments aside | up to the cut |
//! | either of the two rows above, and a snapshot beyond the end that decodes and holds more (a clean shutdown's final state) | start the log again from that snapshot in a new segment; the segments become history | all the snapshot holds |
//!
//! A repair makes one of these moves; `rewardpool wal repair` plans and applies moves until
//! the log verifies (each move is printed before it is made).
//!
//! # Request ids
//!
//! Every move that drops bytes or finds segments missing raises the floor for request ids
//! in the closed header of the log's new end (`next_request_id`, see `wal::header`): above
//! every id seen anywhere in the directory (segments, copies of earlier repairs, snapshot
//! files) and, when some bytes could not be read (a bad frame before non-zero bytes, a lost
//! or truncated part, a missing successor), one whole segment's capacity above that
//! (a segment holds at most `segment_size` draws: a batch frame packs an item into one
//! byte, so no id in one unreadable segment can reach the floor). What this cannot bound: several deleted segments whose snapshots
//! are gone too; nothing left on disk records how far their ids went.

use super::{verify_layout, verify_with};
use crate::layout::{
    dropped_name, is_dropped_segment, original_name, parse_segment_name, parse_snapshot_name,
    repair_tmp_name, segment_name,
};
use crate::pool::{Pool, RequestId, Rng};
use crate::recovery::{
    self, layout, next_request_id, recover_chain, replay_segment, scan_segment_with, Layout,
    RecoveryError, ScanProgress,
};
use crate::snapshot::format::{self as snapshot_format, SnapshotState};
use crate::storage::Storage;
use crate::wal::frame::Record;
use crate::wal::header::{CloseReason, SegmentHeader, SegmentStatus, SEGMENT_HEADER_SIZE};
use crate::wal::reader::FrameIter;
use crate::wal::segment::close_file;

/// What a repair will do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepairPlan {
    /// The damage found (None: nothing to repair).
    pub damage: Option<String>,
    /// Snapshot files rebuilt from the replay of the segment before theirs, with their bytes
    /// (whose SHA-256 equals the one their segment's marker records).
    pub rebuilt_snapshots: Vec<(String, Vec<u8>)>,
    /// Segment closed at an offset as the log's new end (`name`, offset just past its last
    /// intact commit; its `end_offset` when only its end is re-marked).
    pub cut: Option<(String, u64)>,
    /// Segments moved aside whole.
    pub dropped_segments: Vec<String>,
    /// Snapshot files beyond the log's new end, moved aside.
    pub dropped_snapshots: Vec<String>,
    /// True when only old segments are moved aside: the damage is in history that the
    /// newer segments' snapshots already contain, so the state loses nothing.
    pub history_only: bool,
    /// Newer segments are missing (deleted or lost): their draws cannot be recovered.
    pub end_missing: bool,
    /// Readable frames dropped (frames after unreadable bytes cannot be counted).
    pub dropped_frames: u64,
    /// Draws among the readable dropped frames.
    pub dropped_draws: u64,
    /// Request ids no longer in the log: from just past the last kept commit to the highest
    /// readable dropped draw (None when no draw is dropped).
    pub dropped_request_ids: Option<(u64, u64)>,
    /// The first request id issued after the repair (the floor written into the log's new
    /// end); 0 when the move changes no end.
    pub next_request_id: u64,
    /// True when some dropped or missing bytes could not be read, so the floor leaves one
    /// segment's capacity above the highest id seen.
    pub unreadable: bool,
    /// The last request id the repaired log holds.
    pub kept_last_request_id: u64,
    /// A snapshot beyond the log's end that holds more than the segments left (a clean
    /// shutdown's final state): `(snapshot file, segment created from it)`. Every older
    /// segment is then moved aside as history.
    pub adopted_snapshot: Option<(String, String)>,
    /// The size of the segment an adoption creates (the log's segment size).
    pub adopted_segment_size: u64,
}

impl RepairPlan {
    /// True when carrying the plan out changes any file (a plan for damage that changes
    /// nothing means the repair cannot fix it).
    #[must_use]
    pub fn changes_anything(&self) -> bool {
        !self.rebuilt_snapshots.is_empty()
            || self.cut.is_some()
            || self.adopted_snapshot.is_some()
            || !self.dropped_segments.is_empty()
            || !self.dropped_snapshots.is_empty()
    }

    /// Counts the readable frames from `from`; notes whether anything after them is unreadable.
    fn count(&mut self, bytes: &[u8], from: usize, kept_last: u64) {
        let mut frames = FrameIter::new(bytes, from, bytes.len());
        for (_, record) in frames.by_ref().map_while(Result::ok) {
            self.dropped_frames += 1;
            if let Record::Draw { request_id, .. } = record {
                self.dropped_draws += 1;
                let (lo, hi) = self.dropped_request_ids.unwrap_or((kept_last + 1, request_id));
                self.dropped_request_ids = Some((lo, hi.max(request_id)));
            }
        }
        let rest = bytes.get(frames.offset()..).unwrap_or_default();
        self.unreadable |= rest.iter().any(|&b| b != 0);
    }

    fn count_file(
        &mut self,
        storage: &dyn Storage,
        name: &str,
        kept_last: u64,
    ) -> Result<(), RecoveryError> {
        let bytes = storage.read(name).map_err(io_error(storage, name))?;
        self.count(&bytes, SEGMENT_HEADER_SIZE, kept_last);
        Ok(())
    }
}

fn io_error(storage: &dyn Storage, name: &str) -> impl FnOnce(std::io::Error) -> RecoveryError {
    let file = storage.describe(name);
    move |source| RecoveryError::Io { file, source }
}

/// `Ok(true)` when `result` holds, `Ok(false)` when it found damage; an I/O error is an
/// error (a failed read says nothing about the bytes: never a reason to drop them).
fn intact<T>(result: Result<T, RecoveryError>) -> Result<bool, RecoveryError> {
    match result {
        Ok(_) => Ok(true),
        Err(RecoveryError::Damaged { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What a segment created by a repair takes from the log it replaces.
#[derive(Debug, Clone, Copy)]
struct Template {
    /// The catalog fingerprint a snapshot must have (`None`: no readable header says).
    fingerprint: Option<u64>,
    /// The segment file size.
    segment_size: u64,
}

impl Template {
    fn of(header: &SegmentHeader) -> Template {
        Template {
            fingerprint: Some(header.catalog_fingerprint),
            segment_size: header.segment_size,
        }
    }
}

/// Segment size when no segment is left to say: the largest earlier copy, or the default.
fn fallback_size(storage: &dyn Storage) -> Result<u64, RecoveryError> {
    let names = storage.list().map_err(io_error(storage, ""))?;
    let mut size = 0;
    for name in names.iter().filter(|n| is_dropped_segment(n)) {
        let (_, len) = storage.read_prefix(name, 0).map_err(io_error(storage, name))?;
        size = size.max(len);
    }
    Ok(if size >= SEGMENT_HEADER_SIZE as u64 {
        size
    } else {
        crate::store::WalOptions::default().segment_size_bytes
    })
}

fn segments_only(segments: &[(u64, String)]) -> Layout {
    Layout { segments: segments.to_vec(), ..Layout::default() }
}

/// Finds the damage and the move that keeps the most. Changes nothing.
///
/// # Errors
/// I/O errors (damage is what the plan describes, not an error).
pub fn plan_repair(storage: &dyn Storage) -> Result<RepairPlan, RecoveryError> {
    let full = layout(storage)?;
    let damage = match verify_layout(storage, &full) {
        Ok(_) => return Ok(RepairPlan::default()),
        Err(e @ RecoveryError::Damaged { .. }) => e.to_string(),
        Err(e) => return Err(e),
    };
    let mut plan = RepairPlan { damage: Some(damage), ..RepairPlan::default() };
    let segments = &full.segments;
    if segments.is_empty() {
        // Only snapshots (e.g. an adopting repair interrupted after it moved the segments
        // aside): start again from the newest one that decodes, if any.
        let template = Template { fingerprint: None, segment_size: fallback_size(storage)? };
        return adopt_newer_snapshot(storage, &full, plan, template);
    }
    plan.rebuilt_snapshots = rebuild_snapshots(storage, segments)?;
    if !plan.rebuilt_snapshots.is_empty() {
        return Ok(plan);
    }
    // The longest suffix of segments that holds a chain on its own.
    let mut chain_from = None;
    for i in 0..segments.len() {
        let sub = Layout { segments: segments[i..].to_vec(), ..full.clone() };
        if intact(verify_with(storage, &sub, false))? {
            chain_from = Some(i);
            break;
        }
    }
    if let Some(i) = chain_from {
        for (_, name) in &segments[..i] {
            plan.count_file(storage, name, 0)?;
            plan.dropped_segments.push(name.clone());
        }
        // Ids in old segments are below the newer ones' first: nothing to raise there.
        plan.dropped_request_ids = None;
        plan.unreadable = false;
        let sub = Layout { segments: segments[i..].to_vec(), ..full.clone() };
        if intact(verify_layout(storage, &sub))? {
            plan.history_only = true;
            return Ok(plan);
        }
        // The chain is intact but its end is not: newer segments are missing.
        let recovered = recover_chain(storage, &sub, &[])?;
        let newest = recovered.newest.as_ref().expect("a non-empty chain has a newest segment");
        plan.end_missing = true;
        plan.unreadable = true;
        plan.cut = Some((newest.name.clone(), newest.committed_end as u64));
        plan.dropped_snapshots = full
            .snapshots
            .iter()
            .filter(|(seq, _)| *seq > newest.header.sequence)
            .map(|(_, name)| name.clone())
            .collect();
        plan.kept_last_request_id = recovered.state.last_request_id.0;
        let template = Template::of(&newest.header);
        plan.next_request_id =
            floor(storage, &plan, recovered.state.last_request_id.0, template.segment_size)?;
        return adopt_newer_snapshot(storage, &full, plan, template);
    }
    let (plan, template) = plan_cut(storage, segments, plan)?;
    adopt_newer_snapshot(storage, &full, plan, template)
}

/// Replaces a plan that loses draws by one that starts the log again from the newest
/// snapshot beyond its end, when that snapshot decodes (its own SHA-256 checks out), was
/// written for this log (same catalog fingerprint) and holds more than the plan keeps: a
/// clean shutdown's final snapshot holds the whole state, whatever happened to the
/// segments since. The segments become history (moved aside); a new segment numbered
/// like the snapshot starts from it, closed by the repair with the request-id floor.
fn adopt_newer_snapshot(
    storage: &dyn Storage,
    full: &Layout,
    plan: RepairPlan,
    template: Template,
) -> Result<RepairPlan, RecoveryError> {
    let newest_seq = full.segments.last().map(|(seq, _)| *seq);
    let mut best = None;
    for (seq, name) in
        full.snapshots.iter().rev().filter(|(s, _)| newest_seq.is_none_or(|n| *s > n))
    {
        let bytes = storage.read(name).map_err(io_error(storage, name))?;
        let Ok(snapshot) = snapshot_format::decode(&bytes) else {
            continue;
        };
        let fits = template.fingerprint.is_none_or(|f| f == snapshot.catalog_fingerprint);
        if fits && snapshot.sequence == *seq {
            best = Some((*seq, name.clone(), snapshot.last_request_id));
            break;
        }
    }
    let Some((seq, name, last)) = best else {
        return Ok(plan);
    };
    if newest_seq.is_some() && last <= plan.kept_last_request_id {
        return Ok(plan);
    }
    let mut adopted = RepairPlan {
        damage: plan.damage.clone(),
        adopted_snapshot: Some((name, segment_name(seq))),
        dropped_segments: full.segments.iter().map(|(_, n)| n.clone()).collect(),
        dropped_snapshots: full
            .snapshots
            .iter()
            .filter(|(s, _)| *s > seq)
            .map(|(_, n)| n.clone())
            .collect(),
        unreadable: plan.unreadable,
        kept_last_request_id: last,
        adopted_segment_size: template.segment_size,
        ..RepairPlan::default()
    };
    for (_, name) in &full.segments {
        adopted.count_file(storage, name, last)?;
    }
    adopted.dropped_request_ids = None;
    adopted.unreadable = plan.unreadable || newest_seq.is_none();
    adopted.next_request_id = floor(storage, &adopted, last, template.segment_size)?;
    Ok(adopted)
}

/// Cuts at the first segment whose prefix no longer holds a chain: just past its last
/// intact commit, or, when nothing of it is intact, at the end of the segment before it.
/// Also returns what a segment created from a newer snapshot would take from the log.
fn plan_cut(
    storage: &dyn Storage,
    segments: &[(u64, String)],
    mut plan: RepairPlan,
) -> Result<(RepairPlan, Template), RecoveryError> {
    let n = segments.len();
    let mut k = n - 1;
    for i in 0..n {
        if !intact(verify_with(storage, &segments_only(&segments[..=i]), false))? {
            k = i;
            break;
        }
    }
    let (seq, name) = &segments[k];
    let mut progress = ScanProgress::default();
    let result = scan_segment_with(
        storage,
        name,
        *seq,
        true,
        false,
        |info| match &info.record {
            Record::Snapshot { file_name, sha256, .. } => {
                recovery::load_snapshot(storage, file_name, Some(sha256)).map(|_| ())
            }
            _ => Ok(()),
        },
        &mut progress,
    );
    let (end_header, kept_last) = match progress.header {
        Some(header) if result.is_err() && progress.committed_end > 0 => {
            if let Err(e @ RecoveryError::Io { .. }) = result {
                return Err(e);
            }
            let bytes = storage.read(name).map_err(io_error(storage, name))?;
            plan.cut = Some((name.clone(), progress.committed_end as u64));
            plan.count(&bytes, progress.committed_end, progress.last_request_id);
            // Bytes a truncation took beyond the last commit may have held anything.
            plan.unreadable |= (bytes.len() as u64) < header.segment_size
                && (header.status == SegmentStatus::Open || header.end_offset > bytes.len() as u64);
            for (_, later) in &segments[k + 1..] {
                plan.count_file(storage, later, progress.last_request_id)?;
                plan.dropped_segments.push(later.clone());
            }
            plan.kept_last_request_id = progress.last_request_id;
            (header, progress.last_request_id)
        }
        _ => {
            if let Err(e @ RecoveryError::Io { .. }) = result {
                return Err(e);
            }
            let Some(prev) = k.checked_sub(1) else {
                // Nothing of the log is intact: only a newer snapshot can help.
                let (_, size) = storage.read_prefix(name, 0).map_err(io_error(storage, name))?;
                let size = progress.header.map_or(size, |h| h.segment_size);
                return Ok((plan, Template { fingerprint: None, segment_size: size }));
            };
            let kept = recover_chain(storage, &segments_only(&segments[..=prev]), &[])?;
            let newest = kept.newest.as_ref().expect("a non-empty chain has a newest segment");
            plan.cut = Some((newest.name.clone(), newest.committed_end as u64));
            let kept_last = kept.state.last_request_id.0;
            for (_, dropped) in &segments[k..] {
                plan.count_file(storage, dropped, kept_last)?;
                plan.dropped_segments.push(dropped.clone());
            }
            // The dropped segment could not be read from its start.
            plan.unreadable = true;
            plan.kept_last_request_id = kept_last;
            (newest.header, kept_last)
        }
    };
    let end_seq = end_header.sequence;
    plan.dropped_snapshots = layout(storage)?
        .snapshots
        .iter()
        .filter(|(s, _)| *s > end_seq)
        .map(|(_, name)| name.clone())
        .collect();
    plan.next_request_id = floor(storage, &plan, kept_last, end_header.segment_size)?;
    Ok((plan, Template::of(&end_header)))
}

/// The first request id after the repair: above every id seen, and a segment's capacity
/// above that when some bytes could not be read.
fn floor(
    storage: &dyn Storage,
    plan: &RepairPlan,
    kept_last: u64,
    segment_size: u64,
) -> Result<u64, RecoveryError> {
    let seen = seen_request_ids(storage)?.max(kept_last);
    // At most one draw per unreadable byte (a batch frame packs an item into one byte).
    let gap = if plan.unreadable { segment_size } else { 0 };
    Ok(seen.saturating_add(1).saturating_add(gap))
}

/// The highest request id any file in the directory records: segments and earlier
/// repairs' copies (`dropped.wal.*`: headers, readable frames), snapshots (`snapshot.*`,
/// `dropped.snapshot.*`). Bytes that do not decode are skipped (the caller adds a margin).
///
/// # Errors
/// The directory or a file cannot be read.
pub(crate) fn seen_request_ids(storage: &dyn Storage) -> Result<u64, RecoveryError> {
    let names = storage
        .list()
        .map_err(|source| RecoveryError::Io { file: storage.describe(""), source })?;
    let mut seen = 0_u64;
    for name in names {
        let base = original_name(&name);
        if parse_segment_name(base).is_some() {
            let bytes = storage.read(&name).map_err(io_error(storage, &name))?;
            if let Ok(h) = SegmentHeader::decode(&bytes) {
                seen = seen.max(h.first_request_id.saturating_sub(1));
                seen = seen.max(h.next_request_id.saturating_sub(1));
            }
            for (_, record) in
                FrameIter::new(&bytes, SEGMENT_HEADER_SIZE, bytes.len()).map_while(Result::ok)
            {
                if let Record::Draw { request_id: id, .. }
                | Record::Commit { last_request_id: id, .. }
                | Record::Snapshot { last_request_id: id, .. } = record
                {
                    seen = seen.max(id);
                }
            }
        } else if parse_snapshot_name(base).is_some() {
            let bytes = storage.read(&name).map_err(io_error(storage, &name))?;
            if let Ok(snapshot) = snapshot_format::decode(&bytes) {
                seen = seen.max(snapshot.last_request_id);
            }
        }
    }
    Ok(seen)
}

/// Snapshots that fail to load but can be rebuilt exactly: replaying the segment before
/// gives a state whose encoding has the SHA-256 the marker records. A forward pass from
/// the oldest loadable snapshot, so a chain of damaged snapshots is rebuilt too.
fn rebuild_snapshots(
    storage: &dyn Storage,
    segments: &[(u64, String)],
) -> Result<Vec<(String, Vec<u8>)>, RecoveryError> {
    let mut rebuilt = Vec::new();
    // The state at the end of the previous segment, when it could be replayed, and the
    // last request id its successor's marker must record (its floor).
    let mut before: Option<(Pool, u64)> = None;
    let count = segments.len();
    for (i, (seq, name)) in segments.iter().enumerate() {
        let newest = i + 1 == count;
        let Some((file_name, sha256, last_id, fingerprint)) = marker(storage, name)? else {
            before = None;
            continue;
        };
        let loads = intact(recovery::load_snapshot(storage, &file_name, Some(&sha256)))?;
        let start = if loads {
            None
        } else {
            match before.take() {
                Some((pool, floor_last)) if floor_last == last_id => {
                    let mut state = pool.state();
                    state.last_request_id = RequestId(last_id);
                    let snapshot = SnapshotState::from_pool(&state, *seq, fingerprint);
                    let (bytes, sha) = snapshot_format::encode(&snapshot);
                    let Ok(pool) = Pool::from_state(&state, Rng::from_seed(0)) else { continue };
                    if sha != sha256 {
                        continue;
                    }
                    rebuilt.push((file_name, bytes));
                    Some(pool)
                }
                _ => continue,
            }
        };
        before = match replay_segment(storage, name, *seq, newest, start) {
            Ok((pool, scan, _)) => Some((pool, next_request_id(&scan) - 1)),
            Err(RecoveryError::Damaged { .. }) => None,
            Err(e) => return Err(e),
        };
    }
    Ok(rebuilt)
}

/// A segment's snapshot marker: file name, SHA-256, last request id, and the header's
/// catalog fingerprint.
type Marker = (String, [u8; 32], u64, u64);

/// Reads the [`Marker`] of segment `name`.
///
/// # Errors
/// The file cannot be read (a marker that does not decode is `None`).
fn marker(storage: &dyn Storage, name: &str) -> Result<Option<Marker>, RecoveryError> {
    let (bytes, _) =
        storage.read_prefix(name, SEGMENT_HEADER_SIZE + 4096).map_err(io_error(storage, name))?;
    let Ok(header) = SegmentHeader::decode(&bytes) else {
        return Ok(None);
    };
    Ok(match FrameIter::new(&bytes, SEGMENT_HEADER_SIZE, bytes.len()).next() {
        Some(Ok((_, Record::Snapshot { file_name, sha256, last_request_id, .. }))) => {
            Some((file_name, sha256, last_request_id, header.catalog_fingerprint))
        }
        _ => None,
    })
}

/// A name for the copy of `name` that no earlier repair used.
fn copy_name(storage: &dyn Storage, name: &str) -> String {
    let existing = storage.list().unwrap_or_default();
    let mut candidate = dropped_name(name, 0);
    let mut n = 1;
    while existing.contains(&candidate) {
        candidate = dropped_name(name, n);
        n += 1;
    }
    candidate
}

/// Carries out a plan: keeps a copy of each file it changes or drops as `dropped.<name>`,
/// writes rebuilt snapshots, closes the new end at the cut (restoring a truncated file's
/// size, zeroing everything after the cut) with the request-id floor, and moves dropped
/// segments and snapshots aside. Every file is replaced through a synced temporary file
/// and a rename, so a crash during a repair leaves each file old or new, never half.
///
/// # Errors
/// I/O errors.
pub fn apply_repair(storage: &dyn Storage, plan: &RepairPlan) -> Result<(), RecoveryError> {
    let io = |file: &str| {
        let file = storage.describe(file);
        move |source| RecoveryError::Io { file, source }
    };
    for (name, bytes) in &plan.rebuilt_snapshots {
        if storage.list().map_err(io(""))?.contains(name) {
            storage.rename(name, &copy_name(storage, name)).map_err(io(name))?;
        }
        replace(storage, name, bytes).map_err(io(name))?;
    }
    if let Some((name, offset)) = &plan.cut {
        let bytes = storage.read(name).map_err(io(name))?;
        storage.write_synced(&copy_name(storage, name), &bytes).map_err(io(name))?;
        let header = SegmentHeader::decode(&bytes).map_err(|e| RecoveryError::Damaged {
            file: storage.describe(name),
            offset: 0,
            reason: e.to_string(),
        })?;
        let next = plan.next_request_id.max(header.first_request_id);
        let header = header.closed(*offset, CloseReason::Repair, next);
        let size = usize::try_from(header.segment_size).unwrap_or(usize::MAX);
        let end = usize::try_from(*offset).unwrap_or(size).min(bytes.len()).min(size);
        let mut repaired = vec![0_u8; size];
        repaired[SEGMENT_HEADER_SIZE..end].copy_from_slice(&bytes[SEGMENT_HEADER_SIZE..end]);
        replace_closed(storage, name, &repaired, &header).map_err(io(name))?;
    }
    // The adopted segment first: a crash before the old segments are moved aside leaves a
    // log whose newest segment holds the whole state, and the next repair finishes by
    // moving the rest aside as history.
    if let Some((snapshot, segment)) = &plan.adopted_snapshot {
        let (bytes, header) = adopted_segment(storage, snapshot, plan).map_err(io(snapshot))?;
        replace_closed(storage, segment, &bytes, &header).map_err(io(segment))?;
    }
    for name in plan.dropped_segments.iter().chain(&plan.dropped_snapshots) {
        storage.rename(name, &copy_name(storage, name)).map_err(io(name))?;
    }
    storage.sync_dir().map_err(io(""))
}

/// A segment that starts from `snapshot` (its marker names it, with its SHA-256) and holds
/// no draw: its bytes (the header left zero), and the header that closes it with the
/// plan's request-id floor. Its size and catalog fingerprint are the dropped segments' (the
/// newest readable header).
fn adopted_segment(
    storage: &dyn Storage,
    snapshot: &str,
    plan: &RepairPlan,
) -> std::io::Result<(Vec<u8>, SegmentHeader)> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let file = storage.read(snapshot)?;
    let state = snapshot_format::decode(&file).map_err(|e| invalid(e.to_string()))?;
    let segment_size = plan.adopted_segment_size;
    let size = usize::try_from(segment_size).map_err(|e| invalid(e.to_string()))?;
    let mut bytes = vec![0_u8; size];
    let sha = snapshot_format::sha256(&file);
    let marker = bytes.get_mut(SEGMENT_HEADER_SIZE..).unwrap_or_default();
    let len = crate::wal::frame::encode_snapshot(
        marker,
        state.sequence,
        snapshot,
        &sha,
        state.last_request_id,
    )
    .map_err(|e| invalid(e.to_string()))?;
    let header = SegmentHeader {
        version: crate::wal::header::WAL_FORMAT_VERSION,
        status: SegmentStatus::Open,
        sequence: state.sequence,
        first_request_id: state.last_request_id + 1,
        catalog_fingerprint: state.catalog_fingerprint,
        end_offset: 0,
        segment_size,
        close_reason: None,
        next_request_id: 0,
    }
    .closed(
        (SEGMENT_HEADER_SIZE + len) as u64,
        CloseReason::Repair,
        plan.next_request_id.max(state.last_request_id + 1),
    );
    Ok((bytes, header))
}

/// Replaces segment `name` with `bytes` closed by `header`: the frames written to a synced
/// temporary file, closed there (`wal::segment::close_file`: header written and synced),
/// then renamed into place.
fn replace_closed(
    storage: &dyn Storage,
    name: &str,
    bytes: &[u8],
    header: &SegmentHeader,
) -> std::io::Result<()> {
    let tmp = repair_tmp_name(name);
    storage.write_synced(&tmp, bytes)?;
    close_file(storage, &tmp, header)?;
    storage.rename(&tmp, name)?;
    storage.sync_dir()
}

/// Replaces `name` with `bytes`: a synced temporary file renamed into place.
fn replace(storage: &dyn Storage, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = repair_tmp_name(name);
    storage.write_synced(&tmp, bytes)?;
    storage.rename(&tmp, name)?;
    storage.sync_dir()
}
