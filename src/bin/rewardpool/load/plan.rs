//! The raw `load` arguments → a validated [`Plan`]. Every refusal is one sentence naming
//! the flag (exit 2).

use std::path::PathBuf;
use std::time::Duration;

use super::ramp::{parse_duration, Ramp, Unit};
use crate::args::LoadArgs;

/// Most HTTP/2 connections.
pub(crate) const CONNECTIONS_MAX: u32 = 256;
/// Most streams over all connections.
pub(crate) const STREAMS_MAX: u32 = 100_000;
/// Most draws per request the generator sends (the server has its own, lower, maximum).
pub(crate) const COUNT_MAX: i32 = 1_000_000;
/// Most requests outstanding per stream.
pub(crate) const IN_FLIGHT_MAX: u32 = 65_536;
/// Open loop: requests outstanding per stream unless `--in-flight` says otherwise.
pub(crate) const OPEN_IN_FLIGHT_DEFAULT: u32 = 4096;
/// Most runtime threads.
pub(crate) const THREADS_MAX: usize = 64;
/// Highest `--rate`.
pub(crate) const RATE_MAX: f64 = 100_000_000.0;
/// The run's length without `--duration` or `--ramp`.
pub(crate) const DURATION_DEFAULT: Duration = Duration::from_secs(10);

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    /// Each stream keeps up to `in_flight` requests outstanding, each slot waiting `pause`
    /// after its answer before the next request; the ramp's level is the active streams.
    Closed { pause: Duration },
    /// Requests go out on the ramp's schedule (its level is requests/s), whatever the
    /// answers; a stream with `in_flight` requests outstanding sends late.
    Open,
}

/// A validated `load` run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// `HOST:PORT`, as given.
    pub target: String,
    /// `http://HOST:PORT`.
    pub uri: String,
    pub connections: u32,
    /// Streams per connection.
    pub streams: u32,
    pub count: i32,
    /// Requests outstanding per stream, at most.
    pub in_flight: u32,
    pub mode: Mode,
    /// The level over time: streams (closed loop) or requests/s (open loop).
    pub ramp: Ramp,
    /// `--ramp` as given.
    pub ramp_text: Option<String>,
    pub pool: String,
    pub keys: bool,
    pub threads: usize,
    pub json: bool,
    pub plot: Option<PathBuf>,
}

impl Plan {
    /// Streams over all connections.
    pub(crate) fn streams_total(&self) -> u32 {
        self.connections * self.streams
    }

    /// The open loop's rate at its peak (`None` in a closed loop).
    pub(crate) fn rate(&self) -> Option<f64> {
        matches!(self.mode, Mode::Open).then(|| self.ramp.peak())
    }
}

/// Checks the arguments and fills in the defaults.
pub(crate) fn plan(args: &LoadArgs) -> Result<Plan, String> {
    let (target, uri) = parse_target(&args.target)?;
    if args.connections == 0 || args.connections > CONNECTIONS_MAX {
        return Err(format!(
            "--connections is {}: it must be between 1 and {CONNECTIONS_MAX}",
            args.connections
        ));
    }
    if args.count < 1 || args.count > COUNT_MAX {
        return Err(format!("--count is {}: it must be between 1 and {COUNT_MAX}", args.count));
    }
    if args.threads == 0 || args.threads > THREADS_MAX {
        return Err(format!(
            "--threads is {}: it must be between 1 and {THREADS_MAX}",
            args.threads
        ));
    }
    if let Some(w) = args.in_flight {
        if w == 0 || w > IN_FLIGHT_MAX {
            return Err(format!("--in-flight is {w}: it must be between 1 and {IN_FLIGHT_MAX}"));
        }
    }
    let mut ramp = schedule(args)?;
    let mode = match ramp.unit {
        Unit::Rate => {
            if args.pause.is_some() {
                return Err("--pause is think time of the closed loop: an open loop (--rate or \
                            a rate --ramp) sends on its schedule"
                    .to_owned());
            }
            Mode::Open
        }
        Unit::Streams => {
            let pause = match &args.pause {
                Some(p) => parse_duration(p).map_err(|e| format!("--pause {e}"))?,
                None => Duration::ZERO,
            };
            Mode::Closed { pause }
        }
    };
    let streams = streams_per_connection(args, &ramp)?;
    if !ramp.peak().is_finite() {
        // A closed loop without --ramp: every stream, the whole run.
        ramp = Ramp::constant(Unit::Streams, f64::from(args.connections * streams), ramp.total());
    }
    let in_flight = args.in_flight.unwrap_or(match mode {
        Mode::Closed { .. } => 1,
        Mode::Open => OPEN_IN_FLIGHT_DEFAULT,
    });
    Ok(Plan {
        target,
        uri,
        connections: args.connections,
        streams,
        count: args.count,
        in_flight,
        mode,
        ramp,
        ramp_text: args.ramp.clone(),
        pool: args.pool.clone().unwrap_or_default(),
        keys: args.keys,
        threads: args.threads,
        json: args.json,
        plot: args.plot.clone(),
    })
}

/// The ramp: `--ramp`, or one constant stage of `--duration` at `--rate` (open loop) or at
/// every stream (closed loop).
fn schedule(args: &LoadArgs) -> Result<Ramp, String> {
    if let Some(r) = args.rate {
        if !r.is_finite() || r <= 0.0 || r > RATE_MAX {
            return Err(format!(
                "--rate is {r}: it must be a number of requests per second above 0 and at most \
                 {RATE_MAX:.0}"
            ));
        }
    }
    match (&args.ramp, &args.duration) {
        (Some(_), Some(_)) => {
            Err("--duration and --ramp both set the run's length: the ramp's stages add up to \
                 it, so give one of them"
                .to_owned())
        }
        (Some(text), None) => {
            let ramp = Ramp::parse(text)?;
            if args.rate.is_some() {
                return Err(match ramp.unit {
                    Unit::Rate => "--rate and a rate --ramp both set the rate: give one of them",
                    Unit::Streams => {
                        "--rate asks for an open loop, whose --ramp levels are rates: write \
                         them as requests per second (e.g. 0/s:5000/s:10s,hold:60s)"
                    }
                }
                .to_owned());
            }
            if ramp.unit == Unit::Rate && ramp.peak() > RATE_MAX {
                return Err(format!(
                    "--ramp reaches {:.0}/s: at most {RATE_MAX:.0}/s",
                    ramp.peak()
                ));
            }
            if ramp.peak() <= 0.0 {
                return Err("--ramp never rises above 0: no request would be sent".to_owned());
            }
            Ok(ramp)
        }
        (None, duration) => {
            let length = match duration {
                Some(d) => parse_duration(d).map_err(|e| format!("--duration {e}"))?,
                None => DURATION_DEFAULT,
            };
            if length.is_zero() {
                return Err("--duration is 0: give the run a length, e.g. 30s".to_owned());
            }
            Ok(match args.rate {
                Some(r) => Ramp::constant(Unit::Rate, r, length),
                // The level is filled in once the stream count is known.
                None => Ramp::constant(Unit::Streams, f64::INFINITY, length),
            })
        }
    }
}

/// `--streams`, or with a stream ramp enough for its peak; a stream ramp's peak must fit.
fn streams_per_connection(args: &LoadArgs, ramp: &Ramp) -> Result<u32, String> {
    let c = args.connections;
    let peak = ramp.peak();
    let needed = if ramp.unit == Unit::Streams && peak.is_finite() {
        // A level is at most u32::MAX (the grammar's integer), so this does not truncate.
        Some(peak as u64)
    } else {
        None
    };
    let streams = match (args.streams, needed) {
        (Some(s), _) => s,
        (None, Some(n)) => u32::try_from(n.div_ceil(u64::from(c)).max(1)).unwrap_or(u32::MAX),
        (None, None) => 1,
    };
    let total = u64::from(streams) * u64::from(c);
    if streams == 0 || total > u64::from(STREAMS_MAX) {
        return Err(format!(
            "--connections {c} × --streams {streams} is {total} streams: it must be between 1 \
             and {STREAMS_MAX}"
        ));
    }
    if let Some(n) = needed {
        if n > total {
            return Err(format!(
                "--ramp reaches {n} streams but --connections {c} × --streams {streams} opens \
                 only {total}: raise --streams or leave it out"
            ));
        }
    }
    Ok(streams)
}

/// `HOST:PORT` (an IPv6 host in brackets) → itself and `http://HOST:PORT`.
fn parse_target(text: &str) -> Result<(String, String), String> {
    let bad =
        |why: &str| format!("--target {text:?}: {why}; expected HOST:PORT, e.g. 127.0.0.1:50051");
    let rest = text.strip_prefix("http://").unwrap_or(text);
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(bad("the port is not a number from 1 to 65535")),
    }
    let uri = format!("http://{rest}");
    tonic::transport::Endpoint::from_shared(uri.clone()).map_err(|_| bad("not an address"))?;
    Ok((rest.to_owned(), uri))
}
