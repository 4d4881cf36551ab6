//! The dashboard's arithmetic on readings: bounded time series, counters turned into rates,
//! and histogram deltas turned into quantiles. Pure: no clock, no I/O.

use std::collections::VecDeque;

use crate::service::proto::Histogram;

/// A time series that keeps its newest `len_max` samples (one per reading).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Series {
    samples: VecDeque<u64>,
    len_max: usize,
}

impl Series {
    /// An empty series keeping at most `len_max` samples (at least 1).
    pub(crate) fn new(len_max: usize) -> Series {
        let len_max = len_max.max(1);
        Series { samples: VecDeque::with_capacity(len_max), len_max }
    }

    /// Appends a sample, dropping the oldest when full.
    pub(crate) fn push(&mut self, sample: u64) {
        if self.samples.len() == self.len_max {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The newest sample.
    pub(crate) fn last(&self) -> Option<u64> {
        self.samples.back().copied()
    }

    /// The largest sample kept.
    pub(crate) fn max(&self) -> Option<u64> {
        self.samples.iter().copied().max()
    }

    /// The samples, oldest first.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = u64> + ExactSizeIterator + '_ {
        self.samples.iter().copied()
    }

    /// The newest `n` samples at most, oldest first (what a pane `n` cells wide shows).
    pub(crate) fn tail(&self, n: usize) -> Vec<u64> {
        let skip = self.samples.len().saturating_sub(n);
        self.samples.iter().skip(skip).copied().collect()
    }

    /// Samples kept.
    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }
}

/// The events per second between two readings of a counter that only grows, `None` when
/// there is no rate to tell: the counter went back (the server restarted: a reset) or no
/// time passed.
pub(crate) fn rate_per_s(before: u64, after: u64, interval_ms: u64) -> Option<u64> {
    if interval_ms == 0 {
        return None;
    }
    let delta = after.checked_sub(before)?;
    let per_s = u128::from(delta) * 1000 / u128::from(interval_ms);
    Some(u64::try_from(per_s).unwrap_or(u64::MAX))
}

/// A histogram's samples between two readings: per-bucket counts over the same bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Delta {
    /// Each bucket's inclusive upper bound but the last (unbounded).
    upper_bounds: Vec<u64>,
    /// Samples per bucket in the interval (one more entry than `upper_bounds`).
    counts: Vec<u64>,
    /// The sum of the interval's samples.
    sum: u64,
}

impl Delta {
    /// The samples `after` holds beyond `before`; `None` when the two do not share bounds,
    /// are malformed, or any count went back (a reset).
    pub(crate) fn between(before: &Histogram, after: &Histogram) -> Option<Delta> {
        let (bounds_before, before_counts) = parts(before)?;
        let (upper_bounds, after_counts) = parts(after)?;
        if bounds_before != upper_bounds || before_counts.len() != after_counts.len() {
            return None;
        }
        let mut counts = Vec::with_capacity(after_counts.len());
        let (mut below_before, mut below_after) = (0u64, 0u64);
        for (b, a) in before_counts.iter().zip(after_counts) {
            let (in_before, in_after) = (b.checked_sub(below_before)?, a.checked_sub(below_after)?);
            counts.push(in_after.checked_sub(in_before)?);
            (below_before, below_after) = (*b, *a);
        }
        let sum = after.sum.checked_sub(before.sum)?;
        Some(Delta { upper_bounds: upper_bounds.to_vec(), counts, sum })
    }

    /// The whole of a first reading (the samples since the engine started).
    #[cfg(test)]
    pub(crate) fn from_start(h: &Histogram) -> Option<Delta> {
        let zero = Histogram {
            le: h.le.clone(),
            cumulative: vec![0; h.cumulative.len()],
            count: 0,
            sum: 0,
        };
        Delta::between(&zero, h)
    }

    /// Samples in the interval.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The mean sample, `None` without samples.
    pub(crate) fn mean(&self) -> Option<u64> {
        self.sum.checked_div(self.count())
    }

    /// The quantile `q` (0..=1) as the upper bound of the bucket that holds it (so "at most
    /// this", at the buckets' power-of-two resolution); the unbounded last bucket reads as
    /// twice the last bound. `None` without samples.
    pub(crate) fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        let mut seen = 0u64;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            // `seen / total >= q`, in integers: seen * 10^6 >= q * 10^6 * total.
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "q in 0..=1"
            )]
            let q_ppm = (q * 1_000_000.0).round() as u128;
            if u128::from(seen) * 1_000_000 >= q_ppm * u128::from(total) && *n > 0 {
                return Some(self.bound(i));
            }
        }
        Some(self.bound(self.counts.len() - 1))
    }

    /// Bucket `i`'s upper bound (the unbounded last one: twice the last bound).
    fn bound(&self, i: usize) -> u64 {
        match self.upper_bounds.get(i) {
            Some(b) => *b,
            None => self.upper_bounds.last().map_or(u64::MAX, |b| b.saturating_mul(2)),
        }
    }
}

/// A reading's bounds but the last (unbounded, `u64::MAX` on the wire) and its cumulative
/// counts (one per bound, the last one every sample); `None` when malformed.
fn parts(h: &Histogram) -> Option<(&[u64], &[u64])> {
    let (last, bounds) = h.le.split_last()?;
    (*last == u64::MAX && h.cumulative.len() == h.le.len()).then_some((bounds, &h.cumulative))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A histogram with bounds 1, 2, 4, 8 (+ unbounded) and these per-bucket counts.
    fn hist(counts: [u64; 5], sum: u64) -> Histogram {
        let cumulative: Vec<u64> = counts
            .iter()
            .scan(0, |t, n| {
                *t += n;
                Some(*t)
            })
            .collect();
        let count = cumulative.last().copied().unwrap_or(0);
        Histogram { le: vec![1, 2, 4, 8, u64::MAX], cumulative, count, sum }
    }

    #[test]
    fn series_keeps_the_newest_samples() {
        let mut s = Series::new(3);
        for v in 1..=5 {
            s.push(v);
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!((s.len(), s.last(), s.max()), (3, Some(5), Some(5)));
        assert_eq!(s.tail(2), [4, 5]);
        assert_eq!(s.tail(10), [3, 4, 5]);
        assert_eq!(Series::new(0).len_max, 1);
    }

    #[test]
    fn rates_from_counter_deltas() {
        assert_eq!(rate_per_s(100, 1100, 500), Some(2000));
        assert_eq!(rate_per_s(5, 5, 1000), Some(0));
        // A counter that went back (a restarted server) or no time: no rate.
        assert_eq!(rate_per_s(1000, 10, 1000), None);
        assert_eq!(rate_per_s(0, 10, 0), None);
        assert_eq!(rate_per_s(0, u64::MAX, 1), Some(u64::MAX));
    }

    #[test]
    fn histogram_deltas_and_quantiles() {
        let before = hist([1, 0, 0, 0, 0], 1);
        let after = hist([1, 90, 9, 0, 1], 1 + 180 + 36 + 100);
        let d = Delta::between(&before, &after).expect("same bounds");
        assert_eq!(d.count(), 100);
        assert_eq!(d.mean(), Some(3));
        assert_eq!(d.quantile(0.5), Some(2));
        assert_eq!(d.quantile(0.9), Some(2));
        assert_eq!(d.quantile(0.99), Some(4));
        // The unbounded bucket reads as twice the last bound.
        assert_eq!(d.quantile(0.999), Some(16));
        assert_eq!(d.quantile(0.0), Some(2), "the first non-empty bucket");
    }

    #[test]
    fn histogram_resets_and_mismatches_give_no_delta() {
        let big = hist([5, 5, 0, 0, 0], 15);
        let small = hist([1, 0, 0, 0, 0], 1);
        assert_eq!(Delta::between(&big, &small), None, "a reset");
        let other =
            Histogram { le: vec![1, 2, u64::MAX], cumulative: vec![0, 0, 0], count: 0, sum: 0 };
        assert_eq!(Delta::between(&big, &other), None, "other bounds");
        let short = Histogram { le: vec![1, 2, u64::MAX], cumulative: vec![0], count: 0, sum: 0 };
        assert_eq!(Delta::from_start(&short), None, "malformed");
        let unbounded_last = Histogram { le: vec![1, 2], cumulative: vec![0, 0], count: 0, sum: 0 };
        assert_eq!(Delta::from_start(&unbounded_last), None, "no unbounded last bucket");
        assert_eq!(Delta::from_start(&short), None, "malformed");
        let empty = Delta::between(&small, &small).expect("no samples");
        assert_eq!((empty.count(), empty.quantile(0.5), empty.mean()), (0, None, None));
        let first = Delta::from_start(&big).expect("since start");
        assert_eq!((first.count(), first.quantile(0.5)), (10, Some(1)));
    }
}
