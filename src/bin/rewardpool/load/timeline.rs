//! The run over time: per interval, answered requests and draws per second and latency
//! percentiles (the plot's data, and the progress bar's).

use std::time::Duration;

use hdrhistogram::Histogram;

use super::tally::{histogram, Registry};
use super::worker::Run;

/// About this many points over a run, each at least 100 ms and at most 1 s long.
const POINTS: u32 = 60;

/// One interval's figures, at its end `t` seconds into the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub t: f64,
    pub requests_per_sec: f64,
    pub draws_per_sec: f64,
    /// Latency percentiles of the requests answered in the interval, ns (0 when none).
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    /// The ramp's level: active streams or offered requests/s.
    pub level: f64,
}

/// The points so far, and the scratch histogram the intervals merge into.
#[derive(Debug)]
pub(crate) struct Timeline {
    pub points: Vec<Point>,
    pub interval: Duration,
    last: Duration,
    scratch: Histogram<u64>,
}

impl Timeline {
    pub(crate) fn new(run: &Run) -> Timeline {
        let interval = (run.plan.ramp.total() / POINTS)
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        Timeline { points: Vec::new(), interval, last: Duration::ZERO, scratch: histogram(2) }
    }

    /// Whether an interval ended by `elapsed`.
    pub(crate) fn due(&self, elapsed: Duration) -> bool {
        elapsed >= self.last + self.interval
    }

    /// Closes the interval ending at `elapsed`: takes every thread's interval figures.
    pub(crate) fn sample(&mut self, registry: &Registry, elapsed: Duration, level: f64) {
        let seconds = (elapsed - self.last.min(elapsed)).as_secs_f64();
        if seconds <= 0.0 {
            return;
        }
        self.scratch.reset();
        let mut responses = 0;
        registry.each(|t| {
            // Same bounds on both sides: `add` cannot fail.
            let _ = self.scratch.add(&t.interval);
            t.interval.reset();
            responses += std::mem::take(&mut t.interval_responses);
        });
        let h = &self.scratch;
        let q = |p: f64| if h.is_empty() { 0 } else { h.value_at_quantile(p) };
        self.points.push(Point {
            t: elapsed.as_secs_f64(),
            requests_per_sec: h.len() as f64 / seconds,
            draws_per_sec: responses as f64 / seconds,
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: h.max(),
            level,
        });
        self.last = elapsed;
    }
}
