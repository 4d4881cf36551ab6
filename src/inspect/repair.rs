//! `wal repair`: cut the log at its first damage, after saying what will be dropped, and
//! keep a copy of everything cut (`dropped.<file>`).

use crate::recovery::{self, layout, scan_segment_with, RecoveryError, ScanProgress};
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
    /// Segments dropped whole.
    pub dropped_segments: Vec<String>,
    /// Readable frames dropped (frames after unreadable bytes cannot be counted).
    pub dropped_frames: u64,
    /// Draws among them, and their request-id range.
    pub dropped_draws: u64,
    /// Lowest and highest request id among the dropped draws.
    pub dropped_request_ids: Option<(u64, u64)>,
}

impl RepairPlan {
    fn count(&mut self, bytes: &[u8], from: usize) {
        for (_, record) in FrameIter::new(bytes, from, bytes.len()).map_while(Result::ok) {
            self.dropped_frames += 1;
            if let Record::Draw { request_id, .. } = record {
                self.dropped_draws += 1;
                let (lo, hi) = self.dropped_request_ids.unwrap_or((request_id, request_id));
                self.dropped_request_ids = Some((lo.min(request_id), hi.max(request_id)));
            }
        }
    }
}

/// Finds the first damage and what cutting there drops. Changes nothing.
///
/// # Errors
/// I/O errors (damage is what the plan describes, not an error).
pub fn plan_repair(storage: &dyn Storage) -> Result<RepairPlan, RecoveryError> {
    let damage = match recovery::recover(storage, &[]) {
        Ok(_) => return Ok(RepairPlan::default()),
        Err(e @ RecoveryError::Damaged { .. }) => e.to_string(),
        Err(e) => return Err(e),
    };
    let layout = layout(storage)?;
    let count = layout.segments.len();
    let mut plan = RepairPlan { damage: Some(damage), ..RepairPlan::default() };
    let mut first_dropped = count;
    let mut previous: Option<u64> = None;
    let mut last: Option<(u64, u64)> = None;
    for (i, (seq, name)) in layout.segments.iter().enumerate() {
        if previous.is_some_and(|p| *seq != p + 1) {
            first_dropped = i;
            break;
        }
        previous = Some(*seq);
        let mut progress = ScanProgress::default();
        let newest = i + 1 == count;
        let result =
            scan_segment_with(storage, name, *seq, newest, false, |_| Ok(()), &mut progress);
        if let Ok(scan) = &result {
            let continues = last.as_ref().is_none_or(|(rid, fingerprint)| {
                scan.header.first_request_id == rid + 1
                    && scan.header.catalog_fingerprint == *fingerprint
            });
            if !continues {
                first_dropped = i;
                break;
            }
            last = Some((scan.last_request_id, scan.header.catalog_fingerprint));
        }
        let failed = result.is_err() || (newest && replay_fails(storage));
        if !failed {
            continue;
        }
        let bytes = storage
            .read(name)
            .map_err(|source| RecoveryError::Io { file: storage.describe(name), source })?;
        if progress.committed_end > 0 && result.is_err() {
            plan.cut = Some((name.clone(), progress.committed_end as u64));
            plan.count(&bytes, progress.committed_end);
            first_dropped = i + 1;
        } else {
            first_dropped = i;
        }
        break;
    }
    for (_, name) in layout.segments.iter().skip(first_dropped) {
        if let Ok(bytes) = storage.read(name) {
            plan.count(&bytes, SEGMENT_HEADER_SIZE);
        }
        plan.dropped_segments.push(name.clone());
    }
    Ok(plan)
}

fn replay_fails(storage: &dyn Storage) -> bool {
    recovery::recover(storage, &[]).is_err()
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
        storage.write_synced(&format!("dropped.{name}"), &bytes).map_err(io(name))?;
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
        storage.rename(name, &format!("dropped.{name}")).map_err(io(name))?;
    }
    storage.sync_dir().map_err(io(""))
}
