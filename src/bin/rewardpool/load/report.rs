//! The run's report: text, one JSON object (`--json`), and the SVG plot (`--plot`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::anyhow;
use serde::Serialize;

use super::plan::Mode;
use super::tally::{outcome_name, OUTCOMES};
use super::Outcome;
use crate::output::Out;
use crate::CmdResult;

/// Latency percentiles, ns.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// Send-lag percentiles, ns.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Lag {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// The open loop's account of its schedule (`null` in a closed loop).
#[derive(Debug, Serialize)]
pub(crate) struct Schedule {
    /// The rate at the ramp's peak, requests/s.
    pub offered_rate: f64,
    /// Requests sent more than 5 ms after they were due.
    pub sent_late: u64,
    /// How long after its due time a request was sent, ns: the generator's own lateness
    /// (tokio's timers fire on a 1 ms wheel, so ~1 ms at low rates), which the latencies
    /// include.
    pub send_lag_ns: Lag,
    /// Requests due before the end that were never sent.
    pub unsent: u64,
    /// Nothing unsent and at most 1 % late.
    pub rate_sustained: bool,
}

/// `--json`: one object.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub target: String,
    pub connections: u32,
    pub streams: u32,
    pub count: i32,
    pub in_flight: u32,
    #[serde(rename = "loop")]
    pub mode: &'static str,
    pub rate: Option<f64>,
    pub pause_ms: Option<f64>,
    pub duration_s: f64,
    pub ramp: Option<String>,
    pub pool: String,
    pub keys: bool,
    pub threads: usize,
    /// SIGINT ended the run before its planned length.
    pub interrupted: bool,
    pub requests: u64,
    pub requests_ok: u64,
    pub draws: u64,
    pub responses: u64,
    pub empty_draws: u64,
    pub seconds: f64,
    pub draws_per_sec: f64,
    pub requests_per_sec: f64,
    pub latency_ns: Latency,
    pub status_codes: BTreeMap<&'static str, u64>,
    pub errors: BTreeMap<&'static str, u64>,
    pub open_loop: Option<Schedule>,
}

fn by_name(counts: &[u64; OUTCOMES]) -> BTreeMap<&'static str, u64> {
    (0..OUTCOMES).filter(|&i| counts[i] > 0).map(|i| (outcome_name(i), counts[i])).collect()
}

fn quantile(h: &hdrhistogram::Histogram<u64>, p: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(p)
    }
}

fn per_sec(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

impl Report {
    pub(crate) fn of(o: &Outcome) -> Report {
        let (plan, t) = (&o.plan, &o.total);
        let q = |p: f64| quantile(&t.hist, p);
        let (mode, pause_ms) = match plan.mode {
            Mode::Closed { pause } => ("closed", Some(pause.as_secs_f64() * 1e3)),
            Mode::Open => ("open", None),
        };
        let open_loop = plan.rate().map(|offered_rate| Schedule {
            offered_rate,
            sent_late: t.late,
            send_lag_ns: Lag {
                p50: quantile(&t.lag, 0.5),
                p99: quantile(&t.lag, 0.99),
                max: t.lag.max(),
            },
            unsent: t.unsent,
            rate_sustained: t.unsent == 0 && t.late.saturating_mul(100) <= t.requests,
        });
        Report {
            target: plan.target.clone(),
            connections: plan.connections,
            streams: plan.streams,
            count: plan.count,
            in_flight: plan.in_flight,
            mode,
            rate: plan.rate(),
            pause_ms,
            duration_s: plan.ramp.total().as_secs_f64(),
            ramp: plan.ramp_text.clone(),
            pool: plan.pool.clone(),
            keys: plan.keys,
            threads: plan.threads,
            interrupted: o.interrupted,
            requests: t.requests,
            requests_ok: t.ok(),
            draws: t.draws,
            responses: t.responses,
            empty_draws: t.empty,
            seconds: o.seconds,
            draws_per_sec: per_sec(t.responses, o.seconds),
            requests_per_sec: per_sec(t.ok(), o.seconds),
            latency_ns: Latency {
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                p999: q(0.999),
                max: t.hist.max(),
            },
            status_codes: by_name(&t.outcomes),
            errors: by_name(&t.errors),
            open_loop,
        }
    }
}

/// Prints the report on stdout: one JSON object with `--json`, else text.
pub(crate) fn print(o: &Outcome) -> CmdResult {
    let r = Report::of(o);
    let mut out = Out::new();
    if o.plan.json {
        let text = serde_json::to_string(&r).map_err(|e| crate::Failure::failed(anyhow!(e)))?;
        out.line(&text)?;
    } else {
        for line in text(&r) {
            out.line(&line)?;
        }
    }
    out.flush()
}

fn ms(ns: u64) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

fn counts(map: &BTreeMap<&'static str, u64>) -> String {
    if map.is_empty() {
        return "none".to_owned();
    }
    map.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

/// The text report, line by line.
pub(super) fn text(r: &Report) -> Vec<String> {
    let pacing = match (r.mode, r.rate) {
        ("open", Some(rate)) => format!("open loop up to {rate:.0} requests/s"),
        _ => format!(
            "closed loop, {} in flight per stream, pause {:.0} ms",
            r.in_flight,
            r.pause_ms.unwrap_or(0.0)
        ),
    };
    let mut lines = vec![
        format!(
            "load {}: {} connection(s) × {} stream(s), count {}, {pacing}, {:.1} s{}",
            r.target,
            r.connections,
            r.streams,
            r.count,
            r.duration_s,
            r.ramp.as_ref().map(|t| format!(" (ramp {t})")).unwrap_or_default()
        ),
        format!(
            "requests   {} sent, {} answered in full ({:.0}/s)",
            r.requests, r.requests_ok, r.requests_per_sec
        ),
        format!(
            "draws      {} asked, {} answered ({:.0}/s), {} empty",
            r.draws, r.responses, r.draws_per_sec, r.empty_draws
        ),
        format!(
            "latency    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            ms(r.latency_ns.p50),
            ms(r.latency_ns.p90),
            ms(r.latency_ns.p99),
            ms(r.latency_ns.p999),
            ms(r.latency_ns.max)
        ),
        format!("requests   by status: {}", counts(&r.status_codes)),
        format!("errors     streams failed: {}", counts(&r.errors)),
    ];
    if let Some(s) = &r.open_loop {
        lines.push(format!(
            "schedule   sent behind time by p50 {} p99 {} max {}; {} late (> 5 ms), {} never \
             sent: {}",
            ms(s.send_lag_ns.p50),
            ms(s.send_lag_ns.p99),
            ms(s.send_lag_ns.max),
            s.sent_late,
            s.unsent,
            if s.rate_sustained {
                "the rate was sustained"
            } else {
                "the rate was NOT sustained (latency includes the wait to send)"
            }
        ));
    }
    if r.interrupted {
        lines.push(format!(
            "interrupted after {:.1} s of the planned {:.1} s",
            r.seconds, r.duration_s
        ));
    }
    if r.requests > r.requests_ok {
        lines.push(format!(
            "warning    {} of {} requests were not answered in full (see by status)",
            r.requests - r.requests_ok,
            r.requests
        ));
    }
    lines
}

/// One of a timeline point's latency figures.
type Percentile = fn(&super::timeline::Point) -> u64;

/// Latency percentiles (top, ms, log scale) and throughput (bottom) over time.
pub(crate) fn plot(path: &Path, o: &Outcome) -> anyhow::Result<()> {
    use plotters::prelude::*;

    let points = &o.timeline.points;
    let t_max = points.last().map_or(1.0, |p| p.t).max(0.001);
    let ms = |ns: u64| (ns.max(1) as f64) / 1e6;
    let answered: Vec<_> = points.iter().filter(|p| p.max > 0).collect();
    let y_max = answered.iter().map(|p| ms(p.max)).fold(0.001, f64::max) * 1.5;
    let y_min = answered.iter().map(|p| ms(p.p50)).fold(y_max, f64::min) / 1.5;
    let d_max = points.iter().map(|p| p.draws_per_sec).fold(1.0, f64::max) * 1.1;

    let root = SVGBackend::new(path, (900, 700)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(420);
        let r = Report::of(o);
        let caption = format!(
            "rewardpool load: {} conn × {} streams, count {}, {} loop{}",
            r.connections,
            r.streams,
            r.count,
            r.mode,
            r.rate.map(|x| format!(" at {x:.0} req/s")).unwrap_or_default()
        );
        let mut chart = ChartBuilder::on(&top)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..t_max, (y_min.min(y_max / 2.0)..y_max).log_scale())?;
        chart.configure_mesh().x_desc("seconds").y_desc("latency (ms)").draw()?;
        let series: [(&str, Percentile, RGBColor); 4] = [
            ("p50", |p| p.p50, BLUE),
            ("p90", |p| p.p90, GREEN),
            ("p99", |p| p.p99, RED),
            ("max", |p| p.max, BLACK),
        ];
        for (name, value, color) in series {
            chart
                .draw_series(LineSeries::new(answered.iter().map(|p| (p.t, ms(value(p)))), color))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        let mut rate = ChartBuilder::on(&bottom)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..t_max, 0.0..d_max)?;
        rate.configure_mesh().x_desc("seconds").y_desc("draws/s answered").draw()?;
        rate.draw_series(LineSeries::new(points.iter().map(|p| (p.t, p.draws_per_sec)), &BLUE))?
            .label(format!("{:.0} draws/s over the run", r.draws_per_sec))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        rate.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow!("cannot draw the plot {}: {e}", path.display()))
}
