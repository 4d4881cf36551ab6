//! Read-side tools over a data directory: `dump` every frame recovery accepts, `verify`
//! everything (headers, checksums, sequence, every snapshot's SHA-256), `repair` at the
//! first damage, `stats` (the probability-disclosure audit, over any range of segments), and
//! [`fairness`]: the list of seed commitments and the audit that recomputes every draw from
//! its revealed seed.

mod audit;
pub mod fairness;
mod range;
mod repair;

pub use audit::{audit, audit_range, Audit, ItemAudit};
pub use fairness::{
    audit as audit_fairness, commitments, hex, FairnessFailure, FairnessReport, FramePlace,
    RunStatus, SeedRun,
};
pub use range::{RangeAuditError, RangeError, SegmentRange};
pub use repair::{apply_repair, plan_repair, RepairPlan};

use crate::recovery::{
    self, layout, scan_segment_with, FrameInfo, Layout, RecoveryError, ScanProgress,
};
use crate::storage::Storage;
use crate::wal::frame::Record;

/// Calls `each` for every frame recovery accepts, in log order; with `all`, also for the
/// torn tail (frames after the last commit, `torn: true`). Stops at the first damage with
/// its error, after reporting every complete group before it.
///
/// # Errors
/// Damage, an I/O error, or an error returned by `each`.
pub fn dump(
    storage: &dyn Storage,
    all: bool,
    mut each: impl FnMut(&FrameInfo) -> Result<(), RecoveryError>,
) -> Result<(), RecoveryError> {
    let layout = layout(storage)?;
    let count = layout.segments.len();
    let mut previous: Option<u64> = None;
    let mut newest = None;
    for (i, (seq, name)) in layout.segments.iter().enumerate() {
        if let Some(prev) = previous {
            if *seq != prev + 1 {
                return Err(RecoveryError::Damaged {
                    file: storage.describe(name),
                    offset: 0,
                    reason: format!("missing segment before it (previous is {prev})"),
                });
            }
        }
        previous = Some(*seq);
        let mut progress = ScanProgress::default();
        newest = Some(scan_segment_with(
            storage,
            name,
            *seq,
            i + 1 == count,
            all,
            |info| {
                if info.torn && !all {
                    Ok(())
                } else {
                    each(info)
                }
            },
            &mut progress,
        )?);
    }
    if let Some(scan) = &newest {
        recovery::check_end(storage, &layout, scan, recovery::next_request_id(scan) - 1)?;
    }
    Ok(())
}

/// What `verify` checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Segments checked.
    pub segments: usize,
    /// Frames accepted.
    pub frames: u64,
    /// Frames in the newest segment's torn tail (not damage).
    pub torn_frames: u64,
    /// Snapshot files whose SHA-256 matched their marker.
    pub snapshots: usize,
    /// The last committed request id.
    pub last_request_id: u64,
}

/// Checks every header, frame checksum, the sequence, request-id continuity, every
/// segment's snapshot (SHA-256 against its marker), and replays the newest segment.
///
/// # Errors
/// The first damage found (file, offset, reason), or an I/O error.
pub fn verify(storage: &dyn Storage) -> Result<VerifyReport, RecoveryError> {
    verify_layout(storage, &layout(storage)?)
}

/// [`verify`] over the files of `layout` only.
///
/// # Errors
/// As [`verify`].
pub fn verify_layout(
    storage: &dyn Storage,
    layout: &Layout,
) -> Result<VerifyReport, RecoveryError> {
    verify_with(storage, layout, true)
}

/// [`verify_layout`]; with `end` false, without the checks of the log's end (a missing
/// successor, a snapshot beyond the newest segment): whether the segments hold a chain.
///
/// # Errors
/// As [`verify`].
pub fn verify_with(
    storage: &dyn Storage,
    layout: &Layout,
    end: bool,
) -> Result<VerifyReport, RecoveryError> {
    let recovered = if end {
        recovery::recover_from(storage, layout.clone(), &[])?
    } else {
        recovery::recover_chain(storage, layout, &[])?
    };
    let mut report = VerifyReport {
        segments: layout.segments.len(),
        torn_frames: recovered.torn_frames,
        last_request_id: recovered.state.last_request_id.0,
        ..VerifyReport::default()
    };
    let count = layout.segments.len();
    for (i, (seq, name)) in layout.segments.iter().enumerate() {
        let mut marker = None;
        let scan = recovery::scan_segment(storage, name, *seq, i + 1 == count, |info| {
            if let Record::Snapshot { file_name, sha256, .. } = &info.record {
                marker = Some((file_name.clone(), *sha256));
            }
            Ok(())
        })?;
        report.frames += scan.frames;
        if let Some((file_name, sha256)) = marker {
            recovery::load_snapshot(storage, &file_name, Some(&sha256))?;
            report.snapshots += 1;
        }
    }
    Ok(report)
}
