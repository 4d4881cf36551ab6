//! `rewardpool load`: the gRPC load generator (the Go service's k6 script, replaced).
//!
//! `plan` turns the arguments into a [`plan::Plan`]; `connect` opens the HTTP/2
//! connections (exit 1 with a sentence when the target refuses or does not answer within
//! [`CONNECT_TIMEOUT`]); every stream runs as a task (`worker`) recording into its thread's
//! tally (`tally`), each Draw call made by `wire` (the generated messages, answers decoded
//! without allocating); this module's loop moves the ramp's level, samples the time series
//! (`timeline`) and the progress bar (`progress`); `report` prints text or JSON and draws
//! the plot.
//!
//! The generator shares the machine with the server: a small multi-thread runtime
//! (`--threads`, default 2), one lock per request (its own thread's), no allocation per
//! response beyond what decoding a message takes.

mod plan;
mod progress;
mod ramp;
mod report;
mod tally;
mod timeline;
mod wire;
mod worker;

#[cfg(test)]
mod test;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};

use self::plan::{Mode, Plan};
use self::tally::{Registry, Tally};
use self::timeline::Timeline;
use self::worker::{Control, Run};
use super::args::LoadArgs;
use super::bench::check_writable;
use super::{CmdResult, Failure};

/// How long opening a connection may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The control loop's period: level changes and progress.
const TICK: Duration = Duration::from_millis(20);

/// A finished run.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub plan: Plan,
    /// SIGINT ended the run early.
    pub interrupted: bool,
    pub total: Tally,
    /// From the start to the end of sending or the last answer, whichever came later.
    pub seconds: f64,
    pub timeline: Timeline,
}

/// `rewardpool load`.
pub(crate) fn run(args: &LoadArgs) -> CmdResult {
    let plan = plan::plan(args).map_err(|e| Failure::bad_input(anyhow!(e)))?;
    if let Some(path) = &plan.plot {
        check_writable("--plot", path)?;
    }
    let outcome = execute(plan)?;
    report::print(&outcome)?;
    if let Some(path) = &outcome.plan.plot {
        report::plot(path, &outcome).map_err(Failure::failed)?;
    }
    if outcome.total.ok() == 0 {
        return Err(Failure::failed(anyhow!(
            "every request failed ({} sent; see the status counts above)",
            outcome.total.requests
        )));
    }
    Ok(())
}

/// Runs the plan on its own runtime, SIGINT ending it early; `Err` only when the target
/// cannot be reached.
pub(crate) fn execute(plan: Plan) -> Result<Outcome, Failure> {
    execute_until(plan, interrupt())
}

/// [`execute`], with `stop` resolving to end the run early.
pub(crate) fn execute_until(
    plan: Plan,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Outcome, Failure> {
    let registry = Arc::new(Registry::default());
    let adopt = Arc::clone(&registry);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.threads)
        .thread_name("load")
        .enable_all()
        .on_thread_start(move || adopt.adopt_thread())
        .build()
        .map_err(|e| Failure::failed(anyhow::Error::new(e).context("cannot start the runtime")))?;
    let outcome = runtime.block_on(drive(plan, Arc::clone(&registry), stop));
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

async fn drive(
    plan: Plan,
    registry: Arc<Registry>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Outcome, Failure> {
    let channels = connect(&plan).await?;
    let start = Instant::now();
    let run = Arc::new(Run { end: start + plan.ramp.total(), start, plan });
    let first = Control { level: level(&run, Duration::ZERO), stop: None };
    let (control_tx, control_rx) = watch::channel(first);
    let mut streams = JoinSet::new();
    let connections = run.plan.connections;
    for s in 0..run.plan.streams {
        for (c, channel) in (0..connections).zip(&channels) {
            // Interleaved, so a rising level spreads its streams over the connections.
            let index = s * connections + c;
            let client = tonic::client::Grpc::new(channel.clone());
            streams.spawn(worker::stream(index, client, Arc::clone(&run), control_rx.clone()));
        }
    }
    let mut timeline = Timeline::new(&run);
    let mut bar = progress::Progress::new(&run);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut interrupt = std::pin::pin!(stop);
    let mut interrupted = false;
    loop {
        tokio::select! {
            joined = streams.join_next() => if joined.is_none() { break },
            () = &mut interrupt, if !interrupted => {
                // Streams stop sending and drain; the report follows.
                interrupted = true;
                control_tx.send_modify(|c| c.stop = Some(Instant::now()));
            }
            _ = tick.tick() => {
                let elapsed = run.start.elapsed();
                let now = level(&run, elapsed);
                control_tx.send_if_modified(|c| std::mem::replace(&mut c.level, now) != now);
                if timeline.due(elapsed) {
                    timeline.sample(&registry, elapsed, run.plan.ramp.level_at(elapsed));
                    bar.update(elapsed, &timeline);
                }
            }
        }
    }
    let elapsed = run.start.elapsed();
    timeline.sample(&registry, elapsed, run.plan.ramp.level_at(elapsed));
    bar.finish();
    let total = registry.total();
    // The run lasts until sending ended and the last answer came, not the streams' closing.
    let sent_until = control_tx.borrow().stop.map_or(run.end, |s| s.min(run.end));
    let last = total.last_answer.map_or(sent_until, |a| a.max(sent_until));
    let seconds = last.min(run.start + elapsed).saturating_duration_since(run.start);
    Ok(Outcome {
        plan: run.plan.clone(),
        interrupted,
        total,
        seconds: seconds.as_secs_f64(),
        timeline,
    })
}

/// Resolves on SIGINT, which ends the run early; a second SIGINT exits at once (130).
async fn interrupt() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
}

/// Closed loop: the streams active `t` into the run (all of them in an open loop).
fn level(run: &Run, t: Duration) -> u32 {
    match run.plan.mode {
        // Levels are integers up to the stream count, which is a u32.
        Mode::Closed { .. } => run.plan.ramp.level_at(t).floor().clamp(0.0, 4e9) as u32,
        Mode::Open => u32::MAX,
    }
}

/// One HTTP/2 connection per `--connections`, each opened and handshaken before the run.
async fn connect(plan: &Plan) -> Result<Vec<Channel>, Failure> {
    let endpoint = Endpoint::from_shared(plan.uri.clone())
        .map_err(|e| Failure::bad_input(anyhow!("--target {:?}: {e}", plan.target)))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // Room for many answers in flight before the window update comes back.
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(8 << 20);
    let mut channels = Vec::with_capacity(plan.connections as usize);
    for _ in 0..plan.connections {
        let opened =
            tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), endpoint.connect());
        let channel = match opened.await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => return Err(unreachable_target(plan, &deepest(&e))),
            Err(_) => {
                let secs = CONNECT_TIMEOUT.as_secs();
                return Err(unreachable_target(plan, &format!("no answer within {secs} s")));
            }
        };
        channels.push(channel);
    }
    Ok(channels)
}

fn unreachable_target(plan: &Plan, why: &str) -> Failure {
    Failure::failed(anyhow!(
        "cannot connect to {}: {why} (is `rewardpool serve` listening there?)",
        plan.target
    ))
}

/// The innermost cause of an error, which says what happened ("Connection refused").
fn deepest(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}
