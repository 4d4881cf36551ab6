//! `wal repair`: cut the log at its first damage, after saying what will be dropped, and
//! keep a copy of everything cut (`dropped.<file>`).

use super::verify_layout;
use crate::recovery::{self, layout, scan_segment_with, Layout, RecoveryError, ScanProgress};
use crate::storage::Storage;
use crate::wal::frame::Record;
use crate::wal::header::{SegmentStatus, SEGMENT_HEADER_SIZE};
use crate::wal::reader::FrameIter;

/// What a repair will do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepairPlan {
    /// The damage found (None: nothing to repair).
    pub damage: Option<String>,
    /// Segment cut at an offset (`name`, offset just past its last intact commit).
    pub cut: Option<(String, u64)>,
    /// Segments moved aside whole.
    pub dropped_segments: Vec<String>,
    /// True when only old segments are moved aside: the damage is in history that the
    /// newer segments' snapshots already contain, so the state loses nothing.
    pub history_only: bool,
    /// Readable frames dropped (frames after unreadable bytes cannot be counted).
    pub dropped_frames: u64,
    /// Draws among the readable dropped frames.
    pub dropped_draws: u64,
    /// Request ids no longer in the log: from just past the last kept commit to the highest
    /// readable dropped draw (None when no draw is dropped).
    pub dropped_request_ids: Option<(u64, u64)>,
}

impl RepairPlan {
    fn count(&mut self, bytes: &[u8], from: usize, kept_last: u64) {
        for (_, record) in FrameIter::new(bytes, from, bytes.len()).map_while(Result::ok) {
            self.dropped_frames += 1;
            if let Record::Draw { request_id, .. } = record {
                self.dropped_draws += 1;
                let (lo, hi) = self.dropped_request_ids.unwrap_or((kept_last + 1, request_id));
                self.dropped_request_ids = Some((lo, hi.max(request_id)));
            }
        }
    }

    fn count_file(&mut self, storage: &dyn Storage, name: &str, kept_last: u64) {
        if let Ok(bytes) = storage.read(name) {
            self.count(&bytes, SEGMENT_HEADER_SIZE, kept_last);
        }
    }
}

fn subset(segments: &[(u64, String)]) -> Layout {
    Layout { segments: segments.to_vec(), ..Layout::default() }
}

/// Finds the first damage and what repairing it drops. Changes nothing.
///
/// Damage in old segments whose newer successors verify on their own is repaired by moving
/// the old ones aside (each segment starts with its own snapshot, so the state is kept);
/// otherwise the log is cut just past the last intact commit before the damage and every
/// later segment is moved aside.
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
    let n = segments.len();
    if n == 0 {
        // Only snapshots, and one is damaged: nothing in the log to cut.
        return Ok(plan);
    }
    // The first segment whose prefix no longer verifies.
    let k = (0..n)
        .find(|&i| verify_layout(storage, &subset(&segments[..=i])).is_err())
        .unwrap_or(n - 1);
    if k + 1 < n && verify_layout(storage, &subset(&segments[k + 1..])).is_ok() {
        plan.history_only = true;
        for (_, name) in &segments[..=k] {
            plan.count_file(storage, name, 0);
            plan.dropped_segments.push(name.clone());
        }
        plan.dropped_request_ids = None;
        return Ok(plan);
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
    let kept_last = match k.checked_sub(1) {
        Some(prev) => recovery::recover_from(storage, subset(&segments[..=prev]), &[])
            .map_or(0, |r| r.state.last_request_id.0),
        None => 0,
    };
    if result.is_err() && progress.committed_end > 0 {
        let bytes = storage
            .read(name)
            .map_err(|source| RecoveryError::Io { file: storage.describe(name), source })?;
        plan.cut = Some((name.clone(), progress.committed_end as u64));
        plan.count(&bytes, progress.committed_end, progress.last_request_id);
        for (_, later) in &segments[k + 1..] {
            plan.count_file(storage, later, progress.last_request_id);
            plan.dropped_segments.push(later.clone());
        }
    } else {
        for (_, dropped) in &segments[k..] {
            plan.count_file(storage, dropped, kept_last);
            plan.dropped_segments.push(dropped.clone());
        }
    }
    Ok(plan)
}

/// A name for the copy of `name` that no earlier repair used.
fn copy_name(storage: &dyn Storage, name: &str) -> String {
    let existing = storage.list().unwrap_or_default();
    let mut candidate = format!("dropped.{name}");
    let mut n = 1;
    while existing.contains(&candidate) {
        candidate = format!("dropped.{name}.{n}");
        n += 1;
    }
    candidate
}

/// Carries out a plan: keeps a copy of each file it changes or drops as `dropped.<name>`,
/// closes the cut segment at the cut, and moves dropped segments aside.
///
/// # Errors
/// I/O errors.
pub fn apply_repair(storage: &dyn Storage, plan: &RepairPlan) -> Result<(), RecoveryError> {
    let io = |file: &str| {
        let file = storage.describe(file);
        move |source| RecoveryError::Io { file, source }
    };
    if let Some((name, offset)) = &plan.cut {
        let bytes = storage.read(name).map_err(io(name))?;
        storage.write_synced(&copy_name(storage, name), &bytes).map_err(io(name))?;
        let mut header = crate::wal::header::SegmentHeader::decode(&bytes).map_err(|e| {
            RecoveryError::Damaged {
                file: storage.describe(name),
                offset: 0,
                reason: e.to_string(),
            }
        })?;
        header.status = SegmentStatus::Closed;
        header.end_offset = *offset;
        let map = storage.open_segment(name).map_err(io(name))?;
        crate::wal::segment::write_at(&*map, 0, &header.encode());
        let end = usize::try_from(*offset).unwrap_or(map.len()).min(map.len());
        crate::wal::segment::write_at(&*map, end, &vec![0; map.len() - end]);
        map.sync_range(0, map.len()).map_err(io(name))?;
    }
    for name in &plan.dropped_segments {
        storage.rename(name, &copy_name(storage, name)).map_err(io(name))?;
    }
    storage.sync_dir().map_err(io(""))
}
