//! A range of log segments by sequence number (`wal stats --from SEG --to SEG`): which of a
//! data directory's segments a read-side tool looks at.

use std::fmt;

use crate::recovery::RecoveryError;

/// Segments `from..=to` by sequence number (the `NNNNNN` of `wal.NNNNNN`); `None` is the
/// log's first (for `from`) or last (for `to`) retained segment. The default is the whole
/// retained log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentRange {
    /// The first segment to include.
    pub from: Option<u64>,
    /// The last segment to include.
    pub to: Option<u64>,
}

impl SegmentRange {
    /// Every retained segment.
    pub const ALL: SegmentRange = SegmentRange { from: None, to: None };

    /// True when neither end is given.
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// The positions in `segments` (sequence numbers, ascending, as a
    /// [`crate::recovery::Layout`] lists them) that the range covers, as `start..end`.
    ///
    /// # Errors
    /// [`RangeError::Reversed`] when `from > to`; [`RangeError::NotInLog`] when an end names a
    /// segment the log does not hold (also when it holds none), with the ones it holds.
    pub fn select(&self, segments: &[u64]) -> Result<std::ops::Range<usize>, RangeError> {
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if from > to {
                return Err(RangeError::Reversed { from, to });
            }
        }
        let held = segments.first().zip(segments.last()).map(|(a, b)| (*a, *b));
        let position = |segment: u64| {
            segments
                .iter()
                .position(|s| *s == segment)
                .ok_or(RangeError::NotInLog { segment, held })
        };
        let start = match self.from {
            Some(from) => position(from)?,
            None => 0,
        };
        let end = match self.to {
            Some(to) => position(to)? + 1,
            None => segments.len(),
        };
        debug_assert!(start <= end, "start={start} end={end}");
        Ok(start..end)
    }
}

/// Why a [`SegmentRange`] does not fit the log.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RangeError {
    /// `from` comes after `to`.
    Reversed {
        /// The first segment asked for.
        from: u64,
        /// The last segment asked for.
        to: u64,
    },
    /// A segment the log does not hold (never written, or deleted by retention).
    NotInLog {
        /// The segment asked for.
        segment: u64,
        /// The first and last segments the log holds (`None`: it holds none).
        held: Option<(u64, u64)>,
    },
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeError::Reversed { from, to } => {
                write!(f, "segment range {from} to {to} is reversed: --from must not exceed --to")
            }
            RangeError::NotInLog { segment, held: None } => {
                write!(f, "segment {segment} is not in the log: the log holds no segments")
            }
            RangeError::NotInLog { segment, held: Some((first, last)) } if first == last => {
                write!(f, "segment {segment} is not in the log: it holds segment {first} only")
            }
            RangeError::NotInLog { segment, held: Some((first, last)) } => write!(
                f,
                "segment {segment} is not in the log: it holds segments {first} to {last}"
            ),
        }
    }
}

impl std::error::Error for RangeError {}

/// Why an audit over a range of segments failed: the range, or the log.
#[derive(Debug)]
#[non_exhaustive]
pub enum RangeAuditError {
    /// The range does not fit the log (bad input).
    Range(RangeError),
    /// The log is damaged or unreadable.
    Log(RecoveryError),
}

impl fmt::Display for RangeAuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeAuditError::Range(e) => e.fmt(f),
            RangeAuditError::Log(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RangeAuditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RangeAuditError::Range(e) => Some(e),
            RangeAuditError::Log(e) => Some(e),
        }
    }
}

impl From<RecoveryError> for RangeAuditError {
    fn from(e: RecoveryError) -> Self {
        RangeAuditError::Log(e)
    }
}

impl From<RangeError> for RangeAuditError {
    fn from(e: RangeError) -> Self {
        RangeAuditError::Range(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(from: Option<u64>, to: Option<u64>) -> SegmentRange {
        SegmentRange { from, to }
    }

    #[test]
    fn selects_positions_inclusive() {
        let log = [3, 4, 5, 6];
        assert_eq!(SegmentRange::ALL.select(&log), Ok(0..4));
        assert_eq!(range(Some(4), Some(5)).select(&log), Ok(1..3));
        assert_eq!(range(Some(5), Some(5)).select(&log), Ok(2..3));
        assert_eq!(range(Some(5), None).select(&log), Ok(2..4));
        assert_eq!(range(None, Some(3)).select(&log), Ok(0..1));
        assert_eq!(SegmentRange::ALL.select(&[]), Ok(0..0));
    }

    #[test]
    fn refuses_reversed_and_missing_segments_naming_the_log() {
        let log = [3, 4, 5, 6];
        let e = range(Some(5), Some(4)).select(&log).unwrap_err();
        assert_eq!(e, RangeError::Reversed { from: 5, to: 4 });
        assert!(e.to_string().contains("5 to 4"), "{e}");
        let e = range(Some(2), None).select(&log).unwrap_err();
        assert_eq!(e.to_string(), "segment 2 is not in the log: it holds segments 3 to 6");
        let e = range(None, Some(7)).select(&log).unwrap_err();
        assert_eq!(e, RangeError::NotInLog { segment: 7, held: Some((3, 6)) });
        let e = range(Some(0), None).select(&[]).unwrap_err();
        assert_eq!(e.to_string(), "segment 0 is not in the log: the log holds no segments");
        let e = range(Some(1), None).select(&[0]).unwrap_err();
        assert_eq!(e.to_string(), "segment 1 is not in the log: it holds segment 0 only");
        // A reversed range is reported as such even when its ends are missing too.
        assert!(matches!(range(Some(9), Some(8)).select(&log), Err(RangeError::Reversed { .. })));
    }
}
