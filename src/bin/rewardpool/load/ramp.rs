//! The load's schedule: a level over time, in stages (k6's `stages`), and its grammar.
//!
//! ```text
//! RAMP     := STAGE ("," STAGE)*
//! STAGE    := LEVEL ":" LEVEL ":" DURATION   from the first level to the second, linearly
//!           | LEVEL ":" DURATION             from where the previous stage ended (0 first)
//!           | "hold:" DURATION               stay at the previous stage's end level
//! LEVEL    := INTEGER                        active streams (closed loop, k6's VUs)
//!           | NUMBER "/s"                    requests per second (open loop)
//! DURATION := NUMBER ("ms" | "s" | "m" | "h")     e.g. 500ms, 10s, 1.5m
//! ```
//!
//! Every level of one ramp has the same unit. The run lasts the sum of the stages.
//! `0:100:10s,hold:60s,0:10s` opens 100 streams over 10 s, keeps them busy for a minute and
//! winds down over 10 s; `0/s:20000/s:30s,hold:30s` raises an open loop's rate to 20 000
//! requests/s over 30 s and keeps it there for 30 s.

use std::time::Duration;

/// What a level counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Active streams (closed loop).
    Streams,
    /// Requests per second over all streams (open loop).
    Rate,
}

/// One stage: the level moves linearly from `from` to `to` over `length`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stage {
    pub from: f64,
    pub to: f64,
    pub length: Duration,
}

/// Stages of one unit, run one after another.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ramp {
    pub unit: Unit,
    pub stages: Vec<Stage>,
}

/// The longest run a ramp or `--duration` may ask for.
pub(crate) const RUN_MAX: Duration = Duration::from_secs(7 * 24 * 3600);

impl Ramp {
    /// One stage at a constant level.
    pub(crate) fn constant(unit: Unit, level: f64, length: Duration) -> Ramp {
        Ramp { unit, stages: vec![Stage { from: level, to: level, length }] }
    }

    /// Parses the grammar above; the error is a sentence naming the stage at fault.
    pub(crate) fn parse(text: &str) -> Result<Ramp, String> {
        let mut stages = Vec::new();
        let mut unit = None;
        let mut previous = 0.0;
        for (i, stage_text) in text.split(',').enumerate() {
            let stage_text = stage_text.trim();
            let at = |why: String| format!("--ramp stage {} {stage_text:?}: {why}", i + 1);
            let parts: Vec<&str> = stage_text.split(':').map(str::trim).collect();
            let (from, to, length) = match parts.as_slice() {
                ["hold", d] => (None, None, *d),
                [to, d] => (None, Some(*to), *d),
                [from, to, d] => (Some(*from), Some(*to), *d),
                _ => {
                    return Err(at(
                        "a stage is FROM:TO:DURATION, TO:DURATION or hold:DURATION (e.g. \
                         0:100:10s,hold:60s)"
                            .to_owned(),
                    ))
                }
            };
            let mut level = |t: &str| -> Result<f64, String> {
                let (value, u) = parse_level(t).map_err(&at)?;
                match unit {
                    Some(seen) if seen != u => Err(at(
                        "every level of a ramp has the same unit: streams (100) or requests \
                         per second (100/s)"
                            .to_owned(),
                    )),
                    _ => {
                        unit = Some(u);
                        Ok(value)
                    }
                }
            };
            let from = match from {
                Some(t) => level(t)?,
                None => previous,
            };
            let to = match to {
                Some(t) => level(t)?,
                None => from,
            };
            let length = parse_duration(length).map_err(&at)?;
            stages.push(Stage { from, to, length });
            previous = to;
        }
        let ramp = Ramp { unit: unit.unwrap_or(Unit::Streams), stages };
        let total = ramp.total();
        if total.is_zero() {
            return Err("--ramp: the stages last 0 s in all; give at least one a length".into());
        }
        if total > RUN_MAX {
            return Err(format!("--ramp lasts {total:?}: at most {RUN_MAX:?}"));
        }
        Ok(ramp)
    }

    /// The whole run's length.
    pub(crate) fn total(&self) -> Duration {
        self.stages.iter().map(|s| s.length).sum()
    }

    /// The highest level of the run.
    pub(crate) fn peak(&self) -> f64 {
        self.stages.iter().map(|s| s.from.max(s.to)).fold(0.0, f64::max)
    }

    /// The level `t` into the run (the last stage's end level after the end).
    pub(crate) fn level_at(&self, t: Duration) -> f64 {
        let mut start = Duration::ZERO;
        for s in &self.stages {
            if t < start + s.length {
                let x = (t - start).as_secs_f64() / s.length.as_secs_f64();
                return s.from + (s.to - s.from) * x;
            }
            start += s.length;
        }
        self.stages.last().map_or(0.0, |s| s.to)
    }

    /// The integral of the level from the start to `t` (requests scheduled, for a rate).
    pub(crate) fn cumulative(&self, t: Duration) -> f64 {
        let mut sum = 0.0;
        let mut start = Duration::ZERO;
        for s in &self.stages {
            let length = s.length.as_secs_f64();
            if t <= start {
                break;
            }
            let x = (t - start).as_secs_f64().min(length);
            let slope = if length > 0.0 { (s.to - s.from) / length } else { 0.0 };
            sum += s.from * x + slope * x * x / 2.0;
            start += s.length;
        }
        sum
    }

    /// The earliest time at which [`Ramp::cumulative`] reaches `n` (when the `n`-th request
    /// of a rate is due), or `None` when the run ends first.
    pub(crate) fn time_of(&self, n: f64) -> Option<Duration> {
        if n <= 0.0 {
            return Some(Duration::ZERO);
        }
        let mut sum = 0.0;
        let mut start = Duration::ZERO;
        for s in &self.stages {
            let length = s.length.as_secs_f64();
            let area = (s.from + s.to) / 2.0 * length;
            if area > 0.0 && sum + area >= n {
                // Solve from·x + a·x² = c for x in [0, length], a = slope / 2, in the form
                // that stays exact as a → 0 (no division by a).
                let c = n - sum;
                let a = (s.to - s.from) / length / 2.0;
                let root = (s.from * s.from + 4.0 * a * c).max(0.0).sqrt();
                let x = if s.from + root > 0.0 { 2.0 * c / (s.from + root) } else { length };
                return Some(start + Duration::from_secs_f64(x.clamp(0.0, length)));
            }
            sum += area;
            start += s.length;
        }
        None
    }
}

/// `100` (streams) or `2500/s` or `2.5/s` (requests per second).
fn parse_level(text: &str) -> Result<(f64, Unit), String> {
    if let Some(rate) = text.strip_suffix("/s") {
        match rate.trim().parse::<f64>() {
            Ok(r) if r.is_finite() && r >= 0.0 => Ok((r, Unit::Rate)),
            _ => {
                Err(format!("{text:?} is not a rate: a number of requests per second, e.g. 500/s"))
            }
        }
    } else {
        match text.parse::<u32>() {
            Ok(n) => Ok((f64::from(n), Unit::Streams)),
            Err(_) => Err(format!(
                "{text:?} is not a level: a number of streams (e.g. 100) or a rate (e.g. 500/s)"
            )),
        }
    }
}

/// `500ms`, `10s`, `1.5m`, `2h`: a non-negative number and a unit.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "" => return Err(format!("{text:?} has no unit: write e.g. 500ms, 10s, 2m or 1h")),
        _ => return Err(format!("{text:?}: the unit is one of ms, s, m, h (e.g. 10s)")),
    };
    let value = number
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("{text:?} is not a duration: e.g. 500ms, 10s, 2m or 1h"))?;
    let seconds = value * scale;
    if seconds > RUN_MAX.as_secs_f64() {
        return Err(format!("{text:?} is too long: at most {} h", RUN_MAX.as_secs() / 3600));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{parse_duration, Ramp, Stage, Unit};

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn durations_need_a_number_and_a_unit() {
        assert_eq!(parse_duration("500ms"), Ok(secs(0.5)));
        assert_eq!(parse_duration("10s"), Ok(secs(10.0)));
        assert_eq!(parse_duration("1.5m"), Ok(secs(90.0)));
        assert_eq!(parse_duration("2h"), Ok(secs(7200.0)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for (bad, why) in [
            ("10", "no unit"),
            ("10d", "the unit is one of"),
            ("-1s", "not a duration"),
            ("s", "not a duration"),
            ("NaNs", "the unit is one of"),
            ("1000h", "too long"),
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn the_k6_shape_parses_into_stages() {
        let ramp = Ramp::parse("0:100:10s, hold:60s,0:10s").unwrap();
        assert_eq!(ramp.unit, Unit::Streams);
        assert_eq!(
            ramp.stages,
            vec![
                Stage { from: 0.0, to: 100.0, length: secs(10.0) },
                Stage { from: 100.0, to: 100.0, length: secs(60.0) },
                Stage { from: 100.0, to: 0.0, length: secs(10.0) },
            ]
        );
        assert_eq!(ramp.total(), secs(80.0));
        assert_eq!(ramp.peak(), 100.0);
        assert_eq!(ramp.level_at(secs(5.0)), 50.0);
        assert_eq!(ramp.level_at(secs(30.0)), 100.0);
        assert_eq!(ramp.level_at(secs(75.0)), 50.0);
        assert_eq!(ramp.level_at(secs(99.0)), 0.0);
    }

    #[test]
    fn rates_and_a_first_stage_without_from_start_at_zero() {
        let ramp = Ramp::parse("1000/s:10s,2.5/s:2.5/s:1m").unwrap();
        assert_eq!(ramp.unit, Unit::Rate);
        assert_eq!(ramp.stages[0], Stage { from: 0.0, to: 1000.0, length: secs(10.0) });
        assert_eq!(ramp.stages[1], Stage { from: 2.5, to: 2.5, length: secs(60.0) });
    }

    #[test]
    fn bad_ramps_say_which_stage_and_why() {
        for (bad, why) in [
            ("", "a stage is"),
            ("0:100", "has no unit"),
            ("0:100:10s:5s", "a stage is"),
            ("0:100:10s,,hold:5s", "stage 2"),
            ("x:10s", "not a level"),
            ("-5:10s", "not a level"),
            ("0:100/s:10s", "same unit"),
            ("10/s:-1/s:1s", "not a rate"),
            ("hold:0s,5:0s", "0 s in all"),
            ("1:10x", "the unit is one of"),
        ] {
            let e = Ramp::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.contains("--ramp"), "{bad:?}: {e}");
        }
    }

    /// The inverse of the integral: request n is due when n requests' worth of rate has
    /// elapsed, across a linear ramp, a step and a hold, and none past the end.
    #[test]
    fn time_of_inverts_cumulative() {
        let ramp = Ramp::parse("0/s:100/s:10s,50/s:50/s:0s,hold:10s").unwrap();
        assert_eq!(ramp.cumulative(secs(10.0)), 500.0);
        assert_eq!(ramp.cumulative(secs(20.0)), 1000.0);
        for n in [1.0, 2.0, 50.0, 499.0, 500.0, 501.0, 999.0, 1000.0] {
            let t = ramp.time_of(n).unwrap();
            let back = ramp.cumulative(t);
            assert!((back - n).abs() < 1e-6, "n={n} t={t:?} back={back}");
        }
        assert_eq!(ramp.time_of(0.0), Some(Duration::ZERO));
        assert_eq!(ramp.time_of(1000.5), None);
        // A constant rate: request n at n / rate.
        let flat = Ramp::constant(Unit::Rate, 4.0, secs(1.0));
        assert_eq!(flat.time_of(2.0), Some(secs(0.5)));
        // A falling rate inverts too.
        let down = Ramp::parse("100/s:0/s:10s").unwrap();
        let t = down.time_of(375.0).unwrap();
        assert!((down.cumulative(t) - 375.0).abs() < 1e-6, "{t:?}");
    }
}
