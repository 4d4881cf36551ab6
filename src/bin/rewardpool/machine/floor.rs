//! The machine's stall floor, the jHiccup method: one thread pinned to each core spins
//! reading the clock and records every gap between two consecutive reads in an HDR
//! histogram. A gap is time the thread did not run: an interrupt, a kernel thread, another
//! process, or the hypervisor running something else (steal).
//!
//! Shared by `rewardpool-hiccup` (tools/hiccup.rs, which includes this file) and
//! `rewardpool bench` (its open-loop `floor` line and `floor_p99_ns`).
//!
//! Why a stall bounds an open-loop p99 from below: requests intended during a stall of
//! length `g` on a core the request path needs (producer or core thread) cannot be answered
//! before it ends, so a request intended `s` into it waits at least `g - s`. At any rate,
//! the share of requests waiting longer than `x` is then at least the *excess*
//! `sum(max(0, g - x)) / run time` over that core's gaps (more, counting the backlog drained
//! afterwards). An excess above 1 % means no engine sharing these cores can show a p99 of
//! `x` or less: the smallest `x` whose excess is at most 1 % is the machine's floor p99.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The share of a run that a p99 allows to wait longer than it.
pub(crate) const P99_SHARE: f64 = 0.01;

/// Gaps no longer than this are the spinning loop itself, not a stall (ns).
const GAP_MIN_NS: u64 = 1_000;

/// What one core's spinning thread saw.
#[derive(Debug)]
pub(crate) struct Gaps {
    /// The core the thread was pinned to (`None`: the core list was unreadable, unpinned).
    pub(crate) core: Option<usize>,
    /// How long it spun.
    pub(crate) seconds: f64,
    /// Every gap longer than 1 µs, in ns.
    pub(crate) hist: Histogram<u64>,
}

/// Spins one thread pinned to each core for `run` at the same time, and returns what each
/// saw, in core order. `None` when a spinning thread could not be started or panicked.
pub(crate) fn measure(run: Duration) -> Option<Vec<Gaps>> {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let cores: Vec<Option<usize>> =
        if ids.is_empty() { vec![None] } else { ids.iter().map(|c| Some(c.id)).collect() };
    std::thread::scope(|s| {
        let threads: Vec<_> = cores
            .into_iter()
            .map(|core| {
                std::thread::Builder::new().name("hiccup-spinner".to_owned()).spawn_scoped(
                    s,
                    move || {
                        if let Some(id) = core {
                            // Best effort: an unpinned spinner still sees stalls.
                            let _ = core_affinity::set_for_current(core_affinity::CoreId { id });
                        }
                        spin(core, run)
                    },
                )
            })
            .collect();
        // Join every started thread before answering, even when one failed to start.
        let joined: Vec<Option<Gaps>> =
            threads.into_iter().map(|t| t.ok().and_then(|t| t.join().ok())).collect();
        joined.into_iter().collect()
    })
}

/// Spins for `run`, recording every gap between consecutive clock reads longer than 1 µs.
fn spin(core: Option<usize>, run: Duration) -> Gaps {
    let mut hist = histogram();
    let start = Instant::now();
    let mut prev = start;
    loop {
        let now = Instant::now();
        let gap = u64::try_from((now - prev).as_nanos()).unwrap_or(u64::MAX);
        prev = now;
        if gap > GAP_MIN_NS {
            hist.saturating_record(gap);
        }
        if now - start >= run {
            break;
        }
    }
    Gaps { core, seconds: (prev - start).as_secs_f64(), hist }
}

/// A histogram for gaps: 1 ns to 100 s, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    // Constant bounds hdrhistogram accepts.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).unwrap_or_else(|_| unreachable!())
}

impl Gaps {
    /// Each recorded gap (the lowest value its bucket stands for, so the excess and the
    /// floor are never overstated) with its count, longest first.
    fn descending(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self
            .hist
            .iter_recorded()
            .map(|v| (self.hist.lowest_equivalent(v.value_iterated_to()), v.count_at_value()))
            .collect();
        v.sort_unstable_by_key(|&(g, _)| std::cmp::Reverse(g));
        v
    }

    /// `sum(max(0, g - bound))` over the gaps, in ns.
    pub(crate) fn excess_ns(&self, bound_ns: u64) -> u64 {
        self.descending()
            .iter()
            .take_while(|(g, _)| *g > bound_ns)
            .map(|(g, n)| (g - bound_ns).saturating_mul(*n))
            .fold(0, u64::saturating_add)
    }

    /// The excess over `bound_ns` as a share of the run (0.01 = 1 %).
    pub(crate) fn excess_share(&self, bound_ns: u64) -> f64 {
        self.excess_ns(bound_ns) as f64 / (self.seconds * 1e9).max(1.0)
    }

    /// The smallest `x` (ns) whose excess is at most `share` of the run: the floor under
    /// any percentile that lets `share` of the requests wait longer (`P99_SHARE`: p99).
    pub(crate) fn floor_ns(&self, share: f64) -> u64 {
        let allowed = share * self.seconds * 1e9;
        // The excess is piecewise linear in x: between two recorded gaps it is
        // `sum - count * x` over the gaps above x. Walk down from the longest gap until
        // the excess at the next gap down would exceed what is allowed.
        let (mut count, mut sum) = (0_f64, 0_f64);
        let gaps = self.descending();
        for (i, &(g, n)) in gaps.iter().enumerate() {
            count += n as f64;
            sum += g as f64 * n as f64;
            let below = gaps.get(i + 1).map_or(0, |&(next, _)| next);
            let x = ((sum - allowed) / count).ceil();
            if x >= below as f64 {
                // excess(g) <= allowed held before this gap was added, so x <= g.
                return x.max(0.0) as u64;
            }
        }
        0
    }
}

/// The floor p99 of the machine: the largest per-core floor (a request's path needs its
/// producer's core and the core thread's, and a stall on either delays it), in ns.
pub(crate) fn floor_p99_ns(cores: &[Gaps]) -> Option<u64> {
    cores.iter().map(|g| g.floor_ns(P99_SHARE)).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(values: &[u64], seconds: f64) -> Gaps {
        let mut hist = histogram();
        for &v in values {
            hist.record(v).unwrap();
        }
        Gaps { core: Some(0), seconds, hist }
    }

    // Values exact in a 3-digit histogram: 30_000 = 1875 * 16, 3 * 2^20, 1_500.
    const LONG: u64 = 3 << 20;

    #[test]
    fn excess_counts_only_the_part_of_each_gap_over_the_bound() {
        let g = gaps(&[30_000, LONG, 1_500], 1.0);
        assert_eq!(g.excess_ns(20_000), 10_000 + LONG - 20_000);
        assert_eq!(g.excess_ns(50_000), LONG - 50_000);
        assert_eq!(g.excess_ns(LONG), 0);
        assert_eq!(g.excess_ns(0), 30_000 + LONG + 1_500);
        assert!((g.excess_share(2_000_000) - (LONG - 2_000_000) as f64 / 1e9).abs() < 1e-12);
    }

    #[test]
    fn floor_is_the_smallest_bound_with_at_most_the_share_in_excess() {
        // 10 ms run, 1 % = 100 µs of excess allowed.
        let g = gaps(&[30_000, LONG, 1_500], 0.01);
        let x = g.floor_ns(0.01);
        assert_eq!(x, LONG - 100_000, "one gap above: its excess is the whole allowance");
        assert!(g.excess_ns(x) <= 100_000 && g.excess_ns(x - 1) > 100_000);
        // Two equal gaps share the allowance.
        let g = gaps(&[LONG, LONG], 0.01);
        assert_eq!(g.floor_ns(0.01), LONG - 50_000);
        // A quiet run (excess below the share even at x = 0), and one with no gaps.
        assert_eq!(gaps(&[30_000], 1.0).floor_ns(0.01), 0);
        assert_eq!(gaps(&[], 1.0).floor_ns(0.01), 0);
        // Crossing several gaps: 100 gaps of 30 µs in 0.1 s allow 1 ms of excess.
        let g = gaps(&[30_000; 100], 0.1);
        assert_eq!(g.floor_ns(0.01), 20_000);
        // The machine's floor is the worst core's.
        assert_eq!(floor_p99_ns(&[gaps(&[LONG], 0.01), gaps(&[], 0.01)]), Some(LONG - 100_000));
    }
}
