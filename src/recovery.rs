//! Recovery: from the files in a data directory back to the pool state of the last
//! acknowledged draw.
//!
//! # Decision table
//!
//! | condition                                              | decision |
//! |--------------------------------------------------------|----------|
//! | no segment, no snapshot                                | start from the config's catalog |
//! | no segment, only `snapshot.000000` (crash before the first segment was installed) | load it (SHA-256 checked) |
//! | no segment, a snapshot numbered above 0                | refuse: the log's segments are missing |
//! | a gap in segment sequence numbers                      | refuse: missing segment |
//! | header unreadable / bad magic / bad checksum / zeroed  | refuse: damaged header |
//! | header sequence differs from the file name             | refuse: copied or renamed segment |
//! | file shorter or longer than the header's segment size  | refuse: truncated or extended segment |
//! | request ids do not continue from the previous segment (its last commit + 1, or its closed header's `next_request_id`) | refuse: duplicated or foreign segment |
//! | an open segment that is not the newest, ending cleanly at a commit (crash during rotation) | accept, close it (reason: rotation) |
//! | an open segment that is not the newest, anything after its last commit | refuse |
//! | closed segment: any bad frame before `end_offset`      | refuse: damage |
//! | closed segment whose `next_request_id` is not above its last committed id | refuse |
//! | newest open segment: bad frame, a valid later commit follows | refuse: damage before the last commit |
//! | newest open segment: bad frame or uncommitted frames, no commit follows | trim the torn tail (never acknowledged) |
//! | newest segment closed by a rotation                    | refuse: its successor is missing (the newest segments were deleted or lost) |
//! | a snapshot numbered above the newest segment + 1       | refuse: segments are missing before it |
//! | `snapshot.N+1` beyond the newest segment N recording a request id above the log's end | refuse: a newer segment is missing |
//! | first frame of a segment is not a snapshot marker      | refuse |
//! | snapshot named by the newest segment missing, or SHA-256 mismatch | refuse |
//! | otherwise                                              | load the newest segment's snapshot, replay its committed groups |
//!
//! `snapshot.N+1` next to a newest segment N is normal: a clean shutdown writes it (the final
//! state), and a crash while installing segment N+1 leaves it; both record exactly the log's
//! end. The next request id is above the last committed one and above the newest closed
//! segment's `next_request_id` (the floor `wal repair` raises over every id it dropped), so
//! no id that may have been acknowledged is issued twice. See `wal::header` for how a close
//! reason proves the log's end.
//!
//! A power loss can tear the unsynced tail at page granularity: a later page of a group that
//! was never acknowledged may survive while an earlier one is lost, leaving a hole and then
//! a valid commit. The rule above then refuses (it cannot tell that from a bad sector in
//! acknowledged data, and trimming acknowledged data silently is worse than stopping);
//! `rewardpool wal repair` cuts at the hole, which drops only unacknowledged groups. The
//! power-loss test in `tests/it/recovery.rs` checks exactly that.
//!
//! Every row is a test in `tests/it/recovery.rs`. Segments are read with `read` (not
//! mapped), so a bad sector is an error rather than SIGBUS. Replay applies recorded
//! outcomes; it never draws.

use std::fmt;
use std::io;

use crate::layout::{classify, segment_name, FileKind};
use crate::pool::{
    Draw, ItemIndex, ItemSpec, ItemState, Pool, PoolError, PoolState, Quantity, RequestId, Rng,
};
use crate::snapshot::format as snapshot_format;
use crate::storage::Storage;
use crate::wal::frame::Record;
use crate::wal::header::{CloseReason, SegmentHeader, SegmentStatus, SEGMENT_HEADER_SIZE};
use crate::wal::reader::{find_commit_after, torn_write_between, ChunkedFrames, FrameIter};

/// Why recovery refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecoveryError {
    /// A file could not be read or written.
    Io {
        /// The file.
        file: String,
        /// The error.
        source: io::Error,
    },
    /// The log or a snapshot is damaged: nothing was changed.
    Damaged {
        /// The file.
        file: String,
        /// Byte offset in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The catalog (config) or the logged state is not a valid pool.
    Pool(PoolError),
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryError::Io { file, source } => write!(f, "{file}: {source}"),
            RecoveryError::Damaged { file, offset, reason } => {
                write!(f, "damaged log: {file} at offset {offset}: {reason}")
            }
            RecoveryError::Pool(e) => write!(f, "invalid pool: {e}"),
        }
    }
}

impl std::error::Error for RecoveryError {}

fn damaged(file: &str, offset: usize, reason: impl Into<String>) -> RecoveryError {
    RecoveryError::Damaged { file: file.to_owned(), offset: offset as u64, reason: reason.into() }
}

/// The files of a data directory, sorted by role.
#[derive(Debug, Default, Clone)]
pub struct Layout {
    /// `(sequence, name)` of `wal.NNNNNN`, ascending.
    pub segments: Vec<(u64, String)>,
    /// `(sequence, name)` of `snapshot.NNNNNN`, ascending.
    pub snapshots: Vec<(u64, String)>,
    /// Temporary files (`*.tmp`, `*.core`) left by an interrupted rotation.
    pub temporaries: Vec<String>,
}

/// Lists and classifies the directory ([`crate::layout::classify`]). Names that are neither
/// segments, snapshots nor temporaries (and the lock file) are ignored, never sorted as
/// segment 0.
///
/// # Errors
/// The directory cannot be listed.
pub fn layout(storage: &dyn Storage) -> Result<Layout, RecoveryError> {
    let names = storage
        .list()
        .map_err(|source| RecoveryError::Io { file: storage.describe(""), source })?;
    let mut layout = Layout::default();
    for name in names {
        match classify(&name) {
            FileKind::Segment(seq) => layout.segments.push((seq, name)),
            FileKind::Snapshot(seq) => layout.snapshots.push((seq, name)),
            FileKind::Temporary => layout.temporaries.push(name),
            FileKind::Other => {}
        }
    }
    layout.segments.sort();
    layout.snapshots.sort();
    Ok(layout)
}

/// One frame as recovery accepted it (or as torn tail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameInfo {
    /// Segment sequence.
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
    /// The decoded frame.
    pub record: Record,
    /// True for frames after the last commit (never acknowledged).
    pub torn: bool,
}

/// A frame of a group whose commit has not been seen yet. Draws (nearly every frame) are
/// kept in 24 bytes instead of a whole [`FrameInfo`] (about 100 bytes): replay speed.
enum Pending {
    Draw { offset: u64, request_id: u64, item: Option<u32> },
    Other(Box<FrameInfo>),
}

impl From<FrameInfo> for Pending {
    fn from(info: FrameInfo) -> Pending {
        match info.record {
            Record::Draw { request_id, item } => {
                Pending::Draw { offset: info.offset, request_id, item }
            }
            _ => Pending::Other(Box::new(info)),
        }
    }
}

impl Pending {
    fn into_info(self, segment: u64) -> FrameInfo {
        match self {
            Pending::Draw { offset, request_id, item } => FrameInfo {
                segment,
                offset,
                record: Record::Draw { request_id, item },
                torn: false,
            },
            Pending::Other(info) => *info,
        }
    }
}

/// Checks that a draw's request id increases and keeps it for its group's commit.
fn push_draw(
    file: &str,
    offset: usize,
    request_id: u64,
    item: Option<u32>,
    last_rid: &mut u64,
    group: &mut Vec<Pending>,
) -> Result<(), RecoveryError> {
    if request_id <= *last_rid {
        return Err(damaged(file, offset, format!("request id {request_id} follows {last_rid}")));
    }
    // No id can follow u64::MAX: the log would make the engine hand out ids from 0 again
    // (found by fuzzing the recovery of resealed frames).
    if request_id == u64::MAX {
        return Err(damaged(file, offset, "request id u64::MAX leaves no id to follow it"));
    }
    *last_rid = request_id;
    group.push(Pending::Draw { offset: offset as u64, request_id, item });
    Ok(())
}

/// What scanning one segment found.
#[derive(Debug)]
pub struct SegmentScan {
    /// File name.
    pub name: String,
    /// Its header.
    pub header: SegmentHeader,
    /// The snapshot marker (first frame): `(file name, sha256, last request id)`.
    pub marker: (String, [u8; 32], u64),
    /// Offset just past the last commit (or the marker).
    pub committed_end: usize,
    /// Last request id committed in this segment (the marker's when none).
    pub last_request_id: u64,
    /// Frames after `committed_end` that were trimmed (uncommitted or torn).
    pub torn_frames: u64,
    /// Committed frames (marker and commits included).
    pub frames: u64,
}

/// Reads and checks one segment; calls `each` for every frame accepted (in order), and for
/// torn frames too when `torn` is set. `newest` allows an open segment with a torn tail.
///
/// # Errors
/// Damage as in the decision table.
pub fn scan_segment(
    storage: &dyn Storage,
    name: &str,
    sequence: u64,
    newest: bool,
    each: impl FnMut(&FrameInfo) -> Result<(), RecoveryError>,
) -> Result<SegmentScan, RecoveryError> {
    scan_segment_with(storage, name, sequence, newest, false, each, &mut ScanProgress::default())
}

/// How far a scan got: on damage, what precedes it is intact.
#[derive(Debug, Default, Clone)]
pub struct ScanProgress {
    /// The header, once decoded.
    pub header: Option<SegmentHeader>,
    /// Offset just past the last commit accepted (0 before the marker).
    pub committed_end: usize,
    /// Last request id committed.
    pub last_request_id: u64,
}

/// [`scan_segment`] that records its progress, and with `tail` also reports the valid
/// frames after a closed segment's `end_offset` (trimmed by an earlier recovery) as torn.
///
/// # Errors
/// Damage as in the decision table.
pub fn scan_segment_with(
    storage: &dyn Storage,
    name: &str,
    sequence: u64,
    newest: bool,
    tail: bool,
    each: impl FnMut(&FrameInfo) -> Result<(), RecoveryError>,
    progress: &mut ScanProgress,
) -> Result<SegmentScan, RecoveryError> {
    let file = storage.describe(name);
    let io = |source| RecoveryError::Io { file: file.clone(), source };
    let (head, file_len) = storage.read_prefix(name, SEGMENT_HEADER_SIZE).map_err(io)?;
    let header = SegmentHeader::decode(&head)
        .map_err(|e| damaged(&file, 0, format!("bad segment header: {e}")))?;
    progress.header = Some(header);

    if header.sequence != sequence {
        return Err(damaged(
            &file,
            16,
            format!("header says sequence {}: a copied or renamed segment", header.sequence),
        ));
    }
    if header.segment_size < file_len {
        return Err(damaged(
            &file,
            48,
            format!("header says {} bytes, the file has {}", header.segment_size, file_len),
        ));
    }
    // A truncated file is damage, but what it still holds is walked first, so that the
    // progress (and a repair) keeps every commit before the cut.
    let walked = walk_segment(storage, name, &file, header, file_len, newest, tail, each, progress);
    if header.segment_size > file_len {
        return Err(damaged(
            &file,
            48,
            format!(
                "truncated: the header says {} bytes, the file has {} (its last intact commit \
                 ends at offset {})",
                header.segment_size, file_len, progress.committed_end
            ),
        ));
    }
    walked
}

/// The frames of a segment whose header is checked: the body of [`scan_segment_with`].
#[allow(clippy::too_many_arguments)]
fn walk_segment(
    storage: &dyn Storage,
    name: &str,
    file: &str,
    header: SegmentHeader,
    file_len: u64,
    newest: bool,
    tail: bool,
    mut each: impl FnMut(&FrameInfo) -> Result<(), RecoveryError>,
    progress: &mut ScanProgress,
) -> Result<SegmentScan, RecoveryError> {
    let sequence = header.sequence;
    let io = |source| RecoveryError::Io { file: file.to_owned(), source };
    let closed = header.status == SegmentStatus::Closed;
    // An open segment with a newer one after it: a crash between installing the next
    // segment and closing this one. Accepted only if it ends cleanly at a commit.
    let must_end_clean = !closed && !newest;
    // A closed segment is read only up to its last commit; an open one whole. Both in
    // chunks through one buffer (ChunkedFrames), never as one whole-file buffer.
    let file_len = usize::try_from(file_len).unwrap_or(usize::MAX);
    let end = if closed { header.end_offset as usize } else { file_len }.min(file_len);
    let mut frames = ChunkedFrames::new(storage, name, SEGMENT_HEADER_SIZE, end, header.version);
    let mut marker = None;
    let mut last_rid = 0_u64;
    let mut committed_end = SEGMENT_HEADER_SIZE;
    let mut committed_rid = 0_u64;
    let mut count = 0_u64;
    let mut group: Vec<Pending> = Vec::new();
    let mut bad = None;
    loop {
        // Fast path for the frame nearly every frame is: a valid draw inside a group.
        if marker.is_some() {
            if let Some((offset, request_id, item)) = frames.next_draw() {
                push_draw(file, offset, request_id, item, &mut last_rid, &mut group)?;
                continue;
            }
        }
        let Some(item) = frames.next_frame().map_err(io)? else {
            break;
        };
        let (offset, record) = match item {
            Ok(frame) => frame,
            Err(e) => {
                bad = Some(e.to_string());
                break;
            }
        };
        let info = FrameInfo { segment: sequence, offset: offset as u64, record, torn: false };
        match (&info.record, &marker) {
            (Record::Snapshot { file_name, sha256, last_request_id, .. }, None) => {
                // Checked: a marker (CRC valid, bytes damaged or crafted) may say u64::MAX.
                if last_request_id.checked_add(1) != Some(header.first_request_id) {
                    return Err(damaged(
                        file,
                        offset,
                        "snapshot marker's last request id does not precede the header's first",
                    ));
                }
                marker = Some((file_name.clone(), *sha256, *last_request_id));
                last_rid = *last_request_id;
                committed_rid = last_rid;
                committed_end = frames.offset();
                count += 1;
                each(&info)?;
                progress.committed_end = committed_end;
                progress.last_request_id = committed_rid;
                continue;
            }
            (_, None) => {
                return Err(damaged(file, offset, "the first frame is not a snapshot marker"))
            }
            (Record::Snapshot { .. }, Some(_)) => {
                return Err(damaged(file, offset, "a second snapshot marker"))
            }
            (Record::Draw { request_id, item }, Some(_)) => {
                push_draw(file, offset, *request_id, *item, &mut last_rid, &mut group)?;
                continue;
            }
            (Record::Commit { last_request_id, .. }, Some(_)) => {
                if *last_request_id != last_rid {
                    return Err(damaged(
                        file,
                        offset,
                        format!(
                            "commit says last request id {last_request_id}, frames say {last_rid}"
                        ),
                    ));
                }
            }
            // A key goes with its group, before its draws (the walker yields it there).
            // A seed frame is a group of its own, before the draws it seeds.
            (Record::Update { .. } | Record::Key { .. } | Record::Seed { .. }, Some(_)) => {}
            (Record::Batch(_), Some(_)) => {
                return Err(damaged(file, offset, "a batch frame the walker did not expand"))
            }
        }
        if !matches!(info.record, Record::Commit { .. }) {
            group.push(Pending::from(info));
        } else {
            for pending in group.drain(..) {
                count += 1;
                each(&pending.into_info(sequence))?;
            }
            count += 1;
            each(&info)?;
            committed_end = frames.offset();
            committed_rid = last_rid;
            progress.committed_end = committed_end;
            progress.last_request_id = committed_rid;
        }
    }
    if marker.is_none() {
        return Err(damaged(
            file,
            SEGMENT_HEADER_SIZE,
            bad.unwrap_or_else(|| "no snapshot marker".into()),
        ));
    }
    let torn_frames = group.len() as u64;
    if closed {
        if let Some(reason) = bad {
            return Err(damaged(file, frames.offset(), reason));
        }
        if !group.is_empty() || committed_end != end {
            return Err(damaged(file, committed_end, "closed segment ends inside a group"));
        }
        if header.next_request_id <= committed_rid
            && header.close_reason != Some(CloseReason::Unrecorded)
        {
            return Err(damaged(
                file,
                64,
                format!(
                    "closed header says the next request id is {}, but request id {committed_rid} \
                     is committed in it",
                    header.next_request_id
                ),
            ));
        }
    } else if must_end_clean && (bad.is_some() || !group.is_empty()) {
        return Err(damaged(
            file,
            frames.offset(),
            "segment is open, a newer segment exists, and it does not end at a commit",
        ));
    } else {
        // The open segment stopped early (a bad frame, or a zero header where a frame could
        // be): it is a torn tail if no committed data follows, or if what lies between is
        // what a torn write leaves (a lost sector: `torn_write_between`); then the groups
        // after it were never acknowledged and are dropped with the tail.
        let at = frames.offset();
        // Rare (after a crash): read the rest to look for a later commit.
        let bytes = storage.read(name).map_err(io)?;
        if let Some(commit) = find_commit_after(&bytes, at, bytes.len(), committed_rid) {
            if !torn_write_between(&bytes, at, commit) {
                let reason = bad.unwrap_or_else(|| "a zeroed frame header".into());
                return Err(damaged(
                    file,
                    at,
                    format!(
                        "{reason}; a valid commit follows at offset {commit} and no lost \
                         sector lies between, so this is not a torn tail"
                    ),
                ));
            }
        }
    }
    for pending in group {
        let mut info = pending.into_info(sequence);
        info.torn = true;
        each(&info)?;
    }
    if closed && tail {
        let bytes = storage.read(name).map_err(io)?;
        let frames = FrameIter::new(&bytes, end, bytes.len()).version(header.version);
        for (offset, record) in frames.map_while(Result::ok) {
            each(&FrameInfo { segment: sequence, offset: offset as u64, record, torn: true })?;
        }
    }
    Ok(SegmentScan {
        name: name.to_owned(),
        header,
        marker: marker.expect("checked above"),
        committed_end,
        last_request_id: committed_rid,
        torn_frames,
        frames: count,
    })
}

/// What recovery produced.
#[derive(Debug)]
pub struct Recovered {
    /// The state of the last acknowledged draw.
    pub state: PoolState,
    /// The segment to create next.
    pub next_sequence: u64,
    /// The catalog fingerprint the log was born with.
    pub catalog_fingerprint: u64,
    /// Headers to write before anything else: open segments (after a crash) closed at their
    /// last commit, and older segments whose successor exists re-marked as closed by a
    /// rotation.
    pub close: Vec<(String, SegmentHeader)>,
    /// Frames replayed.
    pub frames_replayed: u64,
    /// Torn frames trimmed.
    pub torn_frames: u64,
    /// Temporary files to delete.
    pub temporaries: Vec<String>,
    /// True when no log existed (started from the catalog).
    pub fresh: bool,
    /// The newest segment as scanned (before any close above), when there is one: where
    /// appending may resume.
    pub newest: Option<SegmentScan>,
}

/// Reads the snapshot file `name` and decodes its pool state; with `sha` (the digest a
/// segment's snapshot marker recorded), also checks the file against it.
///
/// # Errors
/// I/O errors; damage: a digest that does not match, a file that does not decode, or a
/// missing file when `sha` says it must exist.
pub fn load_snapshot(
    storage: &dyn Storage,
    name: &str,
    sha: Option<&[u8; 32]>,
) -> Result<PoolState, RecoveryError> {
    let file = storage.describe(name);
    let bytes = storage.read(name).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound && sha.is_some() {
            damaged(&file, 0, "missing, but a segment's snapshot marker names it")
        } else {
            RecoveryError::Io { file: file.clone(), source }
        }
    })?;
    if let Some(expected) = sha {
        let got = snapshot_format::sha256(&bytes);
        if &got != expected {
            return Err(damaged(&file, 0, "SHA-256 does not match the segment's snapshot marker"));
        }
    }
    let snapshot = snapshot_format::decode(&bytes).map_err(|e| damaged(&file, 0, e.to_string()))?;
    snapshot.to_pool().map_err(|e| damaged(&file, 0, e.to_string()))
}

/// Recovers the state in `storage` without changing anything; `catalog` is used only when
/// the directory holds neither segment nor snapshot.
///
/// # Errors
/// Damage (file, offset, reason), I/O errors, an invalid catalog.
pub fn recover(storage: &dyn Storage, catalog: &[ItemSpec]) -> Result<Recovered, RecoveryError> {
    recover_from(storage, layout(storage)?, catalog)
}

/// [`recover`] over the files of `layout` only (repair tries subsets of the segments).
///
/// # Errors
/// As [`recover`].
pub fn recover_from(
    storage: &dyn Storage,
    layout: Layout,
    catalog: &[ItemSpec],
) -> Result<Recovered, RecoveryError> {
    let recovered = recover_chain(storage, &layout, catalog)?;
    if let Some(newest) = &recovered.newest {
        check_end(storage, &layout, newest, recovered.state.last_request_id.0)?;
    }
    Ok(recovered)
}

/// [`recover_from`] without the checks of the log's end ([`check_end`]): the state the
/// segments of `layout` hold as a chain. `wal repair` weighs subsets of the segments with it.
///
/// # Errors
/// As [`recover`], but for a missing successor or a snapshot beyond the end.
pub fn recover_chain(
    storage: &dyn Storage,
    layout: &Layout,
    catalog: &[ItemSpec],
) -> Result<Recovered, RecoveryError> {
    let layout = layout.clone();
    let fingerprint = snapshot_format::catalog_fingerprint(catalog);
    let Some(&(newest_seq, _)) = layout.segments.last() else {
        let (state, next_sequence, fresh) = match layout.snapshots.last() {
            Some((seq, name)) if *seq > 0 => {
                return Err(damaged(
                    &storage.describe(name),
                    0,
                    format!(
                        "a snapshot numbered {seq} but no segment: {} and any later segments are \
                         missing (deleted or lost)",
                        segment_name(seq - 1)
                    ),
                ))
            }
            Some((seq, name)) => (load_snapshot(storage, name, None)?, *seq, false),
            None => {
                let pool = Pool::new(catalog, Rng::from_seed(0)).map_err(RecoveryError::Pool)?;
                (pool.state(), 0, true)
            }
        };
        return Ok(Recovered {
            state,
            next_sequence,
            catalog_fingerprint: fingerprint,
            close: Vec::new(),
            frames_replayed: 0,
            torn_frames: 0,
            temporaries: layout.temporaries,
            fresh,
            newest: None,
        });
    };
    let mut previous: Option<SegmentScan> = None;
    let mut close = Vec::new();
    for (i, (seq, name)) in layout.segments.iter().enumerate() {
        if let Some(prev) = &previous {
            if *seq != prev.header.sequence + 1 {
                let missing = segment_name(prev.header.sequence + 1);
                return Err(damaged(
                    &storage.describe(name),
                    0,
                    format!("missing segment {missing} before it"),
                ));
            }
        }
        let newest = i + 1 == layout.segments.len();
        if newest {
            break;
        }
        let scan = scan_segment(storage, name, *seq, false, |_| Ok(()))?;
        check_continuity(storage, previous.as_ref(), &scan)?;
        if scan.header.status == SegmentStatus::Open {
            // A crash during rotation: its successor exists.
            close.push(closed_header(name, &scan, CloseReason::Rotation));
        } else if scan.header.close_reason != Some(CloseReason::Rotation) {
            // A crash after a restart installed a successor but before it re-marked this
            // end: say now that a successor exists, so deleting it is never unnoticed.
            let h = scan.header;
            close.push((
                name.clone(),
                h.closed(h.end_offset, CloseReason::Rotation, h.next_request_id),
            ));
        }
        previous = Some(scan);
    }
    let newest_name = layout.segments.last().map(|(_, n)| n.clone()).expect("not empty");
    let (pool, scan, replayed) = replay_segment(storage, &newest_name, newest_seq, true, None)?;
    check_continuity(storage, previous.as_ref(), &scan)?;
    let mut state = pool.state();
    state.last_request_id.0 = state.last_request_id.0.max(next_request_id(&scan) - 1);
    if scan.header.status == SegmentStatus::Open {
        close.push(closed_header(&newest_name, &scan, CloseReason::Recovery));
    }
    Ok(Recovered {
        state,
        next_sequence: newest_seq + 1,
        catalog_fingerprint: scan.header.catalog_fingerprint,
        close,
        frames_replayed: replayed,
        torn_frames: scan.torn_frames,
        temporaries: layout.temporaries,
        fresh: false,
        newest: Some(scan),
    })
}

/// The header that closes an open segment at its last commit (trimming its torn tail).
fn closed_header(name: &str, scan: &SegmentScan, reason: CloseReason) -> (String, SegmentHeader) {
    let header = scan.header.closed(scan.committed_end as u64, reason, scan.last_request_id + 1);
    (name.to_owned(), header)
}

/// The first request id a segment after `scan` may use: its closed header's floor, or just
/// past its last commit while it is open.
#[must_use]
pub fn next_request_id(scan: &SegmentScan) -> u64 {
    match scan.header.status {
        SegmentStatus::Closed => scan.header.next_request_id.max(scan.last_request_id + 1),
        SegmentStatus::Open => scan.last_request_id + 1,
    }
}

/// Checks that the log ends where its newest segment `newest` says it does: not closed by
/// a rotation (whose successor must exist), and no snapshot beyond it records more than
/// `end` (the last request id recovered, floor included).
///
/// # Errors
/// Damage naming the segment or the snapshot.
pub fn check_end(
    storage: &dyn Storage,
    layout: &Layout,
    newest: &SegmentScan,
    end: u64,
) -> Result<(), RecoveryError> {
    let seq = newest.header.sequence;
    if newest.header.close_reason.is_some_and(CloseReason::has_successor) {
        return Err(damaged(
            &storage.describe(&newest.name),
            56,
            format!(
                "closed by a rotation, but its successor {} is missing: the newest segments were \
                 deleted or lost",
                segment_name(seq + 1)
            ),
        ));
    }
    for (snap_seq, name) in layout.snapshots.iter().filter(|(s, _)| *s > seq) {
        let file = storage.describe(name);
        if *snap_seq > seq + 1 {
            return Err(damaged(
                &file,
                0,
                format!(
                    "snapshot is newer than the log, whose newest segment is {}: segments up \
                     to {} are missing",
                    newest.name,
                    segment_name(snap_seq - 1)
                ),
            ));
        }
        let state = load_snapshot(storage, name, None)?;
        if state.last_request_id.0 > end {
            return Err(damaged(
                &file,
                0,
                format!(
                    "snapshot records request id {}, beyond the log's end {end} in {}: a newer \
                     segment is missing",
                    state.last_request_id.0, newest.name
                ),
            ));
        }
    }
    Ok(())
}

fn check_continuity(
    storage: &dyn Storage,
    previous: Option<&SegmentScan>,
    scan: &SegmentScan,
) -> Result<(), RecoveryError> {
    if let Some(prev) = previous {
        let expected = next_request_id(prev);
        if scan.header.first_request_id != expected {
            return Err(damaged(
                &storage.describe(&scan.name),
                24,
                format!(
                    "first request id {} does not follow {} (last in {}, which says the next is \
                     {expected}): a duplicated or foreign segment",
                    scan.header.first_request_id, prev.last_request_id, prev.name
                ),
            ));
        }
        if scan.header.catalog_fingerprint != prev.header.catalog_fingerprint {
            return Err(damaged(
                &storage.describe(&scan.name),
                32,
                "catalog fingerprint differs from the previous segment",
            ));
        }
    }
    Ok(())
}

/// Replays a segment's committed frames: from `start` (the state at the end of the segment
/// before it, which must match the snapshot marker's last request id) or, without one, from
/// the snapshot its marker names (SHA-256 checked). `newest` allows a torn tail.
///
/// # Errors
/// Damage in the segment or its snapshot; a `start` that does not meet the marker.
pub fn replay_segment(
    storage: &dyn Storage,
    name: &str,
    seq: u64,
    newest: bool,
    start: Option<Pool>,
) -> Result<(Pool, SegmentScan, u64), RecoveryError> {
    let file = storage.describe(name);
    let mut start = start;
    let mut pool: Option<Pool> = None;
    let mut replayed = 0_u64;
    let scan = scan_segment(storage, name, seq, newest, |info| {
        if info.torn {
            return Ok(());
        }
        let at = info.offset as usize;
        match &info.record {
            Record::Snapshot { last_request_id, .. } if start.is_some() => {
                let p = start.take().expect("checked");
                if p.last_request_id().0 != *last_request_id {
                    return Err(damaged(
                        &file,
                        at,
                        format!(
                            "snapshot marker says request id {last_request_id}, the segment \
                             before ends at {}",
                            p.last_request_id().0
                        ),
                    ));
                }
                pool = Some(p);
            }
            Record::Snapshot { file_name, sha256, last_request_id, .. } => {
                let state = load_snapshot(storage, file_name, Some(sha256))?;
                if state.last_request_id.0 != *last_request_id {
                    return Err(damaged(
                        &file,
                        at,
                        "snapshot's last request id differs from its marker",
                    ));
                }
                pool =
                    Some(Pool::from_state(&state, Rng::from_seed(0)).map_err(RecoveryError::Pool)?);
            }
            Record::Draw { request_id, item } => {
                let draw = Draw { request_id: RequestId(*request_id), item: item.map(ItemIndex) };
                let p = pool.as_mut().expect("the marker comes first");
                p.replay_draw(draw).map_err(|e| damaged(&file, at, e.to_string()))?;
            }
            Record::Update { index, item_id, quantity, weight } => {
                let quantity = Quantity::from_i64(*quantity)
                    .ok_or_else(|| damaged(&file, at, format!("quantity {quantity} below -1")))?;
                let state = ItemState { id: item_id.clone(), quantity, weight: *weight };
                let p = pool.as_mut().expect("the marker comes first");
                p.replay_update(ItemIndex(*index), &state)
                    .map_err(|e| damaged(&file, at, e.to_string()))?;
            }
            // A keyed request: its draws follow as records of their own, and the pool
            // records them as the key's outcome (the idempotency window, `pool::keys`).
            Record::Key { key, first_request_id, count, unix_s } => {
                let p = pool.as_mut().expect("the marker comes first");
                p.replay_key(*key, RequestId(*first_request_id), *count, *unix_s)
                    .map_err(|e| damaged(&file, at, e.to_string()))?;
            }
            // Seeds change no state: the outcomes they gave are in the log (`inspect::fairness`
            // checks them).
            Record::Commit { .. } | Record::Seed { .. } => {}
            Record::Batch(_) => {
                return Err(damaged(&file, at, "a batch frame the walker did not expand"))
            }
        }
        replayed += 1;
        Ok(())
    })?;
    let pool = pool.ok_or_else(|| damaged(&file, SEGMENT_HEADER_SIZE, "no snapshot marker"))?;
    Ok((pool, scan, replayed))
}
