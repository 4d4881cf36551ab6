//! `wal stats`: the probability-disclosure audit. Counts what was drawn per item and
//! compares it with what the weights promised *given availability at each draw*: an item
//! that ran out stops being expected from then on.
//!
//! Over any range of segments ([`audit_range`]): the state at the range's start is its
//! first segment's snapshot (every segment begins with one), and only the draws in the
//! range's segments count.
//!
//! Expected counts are accumulated lazily: `S = Σ 1/W(t)` over draws (W = live weight at
//! the draw), and an item with live weight `w` over a stretch where `S` grew by `ΔS` is
//! expected `w·ΔS` times. O(1) per draw, exact to floating-point rounding.

use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::range::{RangeAuditError, SegmentRange};
use crate::pool::{Draw, ItemIndex, ItemState, Pool, Quantity, RequestId, Rng};
use crate::recovery::{self, layout, scan_segment, RecoveryError};
use crate::storage::Storage;
use crate::wal::frame::Record;

/// One item's line of the audit.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemAudit {
    /// The item.
    pub item_id: String,
    /// Units drawn in the retained log.
    pub drawn: u64,
    /// `drawn / draws that handed out an item`.
    pub observed_share: f64,
    /// The share the weights promised, given availability at each draw.
    pub expected_share: f64,
    /// The item's configured weight at the end of the audited segments.
    pub weight: u32,
}

/// The whole audit.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    /// The first and last segments audited (sequence numbers; `None`: the log has none).
    pub segments: Option<(u64, u64)>,
    /// Draws in the audited segments (empty ones included).
    pub draws: u64,
    /// Draws that found nothing available.
    pub empty_draws: u64,
    /// Per item, in index order.
    pub items: Vec<ItemAudit>,
    /// Pearson's chi-square statistic over items with a non-zero expectation.
    pub chi_square: f64,
    /// Degrees of freedom (items with a non-zero expectation, minus one).
    pub degrees_of_freedom: u64,
    /// P(χ² ≥ chi_square) under the weights: small values mean the draws do not follow them.
    pub p_value: f64,
}

impl Audit {
    /// The audit of a log with no draws.
    #[must_use]
    pub fn empty() -> Audit {
        Audit {
            segments: None,
            draws: 0,
            empty_draws: 0,
            items: Vec::new(),
            chi_square: 0.0,
            degrees_of_freedom: 0,
            p_value: 1.0,
        }
    }
}

#[derive(Default)]
struct Tally {
    s: f64,
    drawn: Vec<u64>,
    acc: Vec<f64>,
    mark: Vec<f64>,
    live: Vec<f64>,
    draws: u64,
    empty: u64,
}

impl Tally {
    fn sync_item(&mut self, pool: &Pool, i: usize) {
        while self.acc.len() <= i {
            self.drawn.push(0);
            self.acc.push(0.0);
            self.mark.push(self.s);
            self.live.push(0.0);
        }
        self.acc[i] += self.live[i] * (self.s - self.mark[i]);
        self.mark[i] = self.s;
        let item = pool.item(ItemIndex(i as u32));
        self.live[i] = if item.quantity.is_available() { f64::from(item.weight) } else { 0.0 };
    }
}

/// Replays every retained segment from its own snapshot and tallies the draws.
///
/// # Errors
/// Damage or I/O errors, as `wal verify` would report them.
pub fn audit(storage: &dyn Storage) -> Result<Audit, RecoveryError> {
    recovery::recover(storage, &[])?;
    let layout = layout(storage)?;
    audit_segments(storage, &layout, 0..layout.segments.len())
}

/// [`audit`] over the segments of `range` only: the pool's state at the range's start is
/// its first segment's snapshot, and only the draws in its segments are counted and
/// expected (given availability at each of them).
///
/// # Errors
/// [`RangeAuditError::Range`] when the range is reversed or names a segment the log does
/// not hold; [`RangeAuditError::Log`] for damage or I/O errors anywhere in the log (it is
/// recovered whole first, as [`audit`] does).
pub fn audit_range(storage: &dyn Storage, range: SegmentRange) -> Result<Audit, RangeAuditError> {
    recovery::recover(storage, &[])?;
    let layout = layout(storage)?;
    let sequences: Vec<u64> = layout.segments.iter().map(|(seq, _)| *seq).collect();
    let positions = range.select(&sequences)?;
    Ok(audit_segments(storage, &layout, positions)?)
}

/// Tallies the draws of `layout.segments[positions]`.
fn audit_segments(
    storage: &dyn Storage,
    layout: &recovery::Layout,
    positions: std::ops::Range<usize>,
) -> Result<Audit, RecoveryError> {
    let count = layout.segments.len();
    let mut tally = Tally::default();
    let mut pool: Option<Pool> = None;
    let Some(chosen) = layout.segments.get(positions.clone()) else {
        return Ok(Audit::empty());
    };
    for (i, (seq, name)) in positions.zip(chosen) {
        let file = storage.describe(name);
        scan_segment(storage, name, *seq, i + 1 == count, |info| {
            if info.torn {
                return Ok(());
            }
            match &info.record {
                Record::Seed { .. } => {}
                Record::Snapshot { file_name, sha256, .. } => {
                    let state = recovery::load_snapshot(storage, file_name, Some(sha256))?;
                    let p =
                        Pool::from_state(&state, Rng::from_seed(0)).map_err(RecoveryError::Pool)?;
                    for item in 0..p.len() {
                        tally.sync_item(&p, item);
                    }
                    pool = Some(p);
                }
                Record::Draw { request_id, item } => {
                    let p = pool.as_mut().expect("the marker comes first");
                    let total = p.live_weight();
                    tally.draws += 1;
                    if total > 0 {
                        tally.s += 1.0 / total as f64;
                    }
                    let draw =
                        Draw { request_id: RequestId(*request_id), item: item.map(ItemIndex) };
                    p.replay_draw(draw).map_err(|e| damage(&file, info.offset, &e.to_string()))?;
                    match item {
                        Some(index) => {
                            let i = *index as usize;
                            tally.sync_item(p, i);
                            tally.drawn[i] += 1;
                        }
                        None => tally.empty += 1,
                    }
                }
                Record::Update { index, item_id, quantity, weight } => {
                    let p = pool.as_mut().expect("the marker comes first");
                    let quantity = Quantity::from_i64(*quantity).unwrap_or(Quantity::Finite(0));
                    let state = ItemState { id: item_id.clone(), quantity, weight: *weight };
                    p.replay_update(ItemIndex(*index), &state)
                        .map_err(|e| damage(&file, info.offset, &e.to_string()))?;
                    tally.sync_item(p, *index as usize);
                }
                // Keys say which draws answer one keyed request; the draws follow as
                // records of their own. The walker never yields a whole batch.
                Record::Commit { .. } | Record::Key { .. } | Record::Batch(_) => {}
            }
            Ok(())
        })?;
    }
    let mut audit = finish(tally, pool.as_ref());
    audit.segments = chosen.first().zip(chosen.last()).map(|(a, b)| (a.0, b.0));
    Ok(audit)
}

fn damage(file: &str, offset: u64, reason: &str) -> RecoveryError {
    RecoveryError::Damaged { file: file.to_owned(), offset, reason: reason.to_owned() }
}

fn finish(mut tally: Tally, pool: Option<&Pool>) -> Audit {
    let Some(pool) = pool else {
        return Audit::empty();
    };
    for i in 0..tally.acc.len() {
        tally.sync_item(pool, i);
    }
    let handed_out = tally.draws - tally.empty;
    let expected_total: f64 = tally.acc.iter().sum();
    let mut chi_square = 0.0;
    let mut cells = 0_u64;
    let items = (0..tally.acc.len())
        .map(|i| {
            let expected = tally.acc[i];
            let drawn = tally.drawn[i];
            if expected > 0.0 {
                chi_square += (drawn as f64 - expected).powi(2) / expected;
                cells += 1;
            } else if drawn > 0 {
                // Drawn although the weights promised nothing: impossible under the weights.
                chi_square = f64::INFINITY;
            }
            let state = pool.item(ItemIndex(i as u32));
            ItemAudit {
                item_id: state.id,
                drawn,
                observed_share: if handed_out > 0 { drawn as f64 / handed_out as f64 } else { 0.0 },
                expected_share: if expected_total > 0.0 { expected / expected_total } else { 0.0 },
                weight: state.weight,
            }
        })
        .collect();
    let degrees_of_freedom = cells.saturating_sub(1);
    let p_value = if chi_square.is_infinite() {
        0.0
    } else if degrees_of_freedom == 0 {
        1.0
    } else {
        ChiSquared::new(degrees_of_freedom as f64).map_or(1.0, |d| 1.0 - d.cdf(chi_square))
    };
    Audit {
        segments: None,
        draws: tally.draws,
        empty_draws: tally.empty,
        items,
        chi_square,
        degrees_of_freedom,
        p_value,
    }
}
