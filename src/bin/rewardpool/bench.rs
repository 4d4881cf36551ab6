//! `rewardpool bench`: end-to-end in-process benchmark.
//!
//! P producer threads, each with its own [`Client`], submit draws with `try_draw` and collect
//! them with `drain`, keeping up to `--window` in flight (closed loop), or following an
//! intended send schedule (`--rate`, open loop). A draw's latency is the time from its send
//! (open loop: its *intended* send, so a stall is charged to every request it delayed, the
//! coordinated-omission correction) to the producer observing its acknowledgement. Each
//! producer records into its own HDR histogram, created with fixed bounds so recording never
//! allocates; they are merged at the end.
//!
//! Cost of the measurement itself (MEASURED.md): `Instant::now()` ~34 ns, read once per
//! submitted draw and once per non-empty drain batch.
//!
//! The same run measures a baseline: one thread calling `Pool::draw` in a loop over the same
//! catalog (no rings, no log), so the ratio between the two is what the engine costs.
//!
//! Plain output also says what the machine took during the run (`machine` line: steal time,
//! and how often the core, producer and log threads were switched out while runnable), so a
//! tail can be told apart from the engine. An open loop also measures the machine's floor
//! p99 (`machine::floor`, as `rewardpool-hiccup` does) for [`FLOOR_RUN`] just before the
//! run, while nothing of the run is on the cores, and prints it beside the engine's p99.
//!
//! Defaults: each flag, else the `--config` file's value, else [`ModeDefaults::of`] the
//! durability mode (chosen by measurement, so each mode shows what it can do in seconds).
//!
//! It never hangs: producers stop when the engine stops (drain then delivers every request
//! with an error), and a watchdog aborts the run after `STALL_LIMIT` without progress.
//!
//! No surprises: `--hist-out` and `--plot` are checked for writing before the run; a
//! durable run's directory is removed also when SIGINT or SIGTERM ends the run (exit
//! 128 + the signal's number); an open-loop rate that the run could not keep to is said so
//! (`rate_sustained`); `--config` supplies durability, group and window unless their flags
//! are given.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::args::{BenchArgs, DurabilityArg, GlobalArgs};
use super::output::Out;
use super::pool_cmd::open_failure;
use super::{load_config, CmdResult, Failure};
use rewardpool::config::Config;
use rewardpool::engine::{available_cores, Client, CorePin, DrawError, EngineConfig};
use rewardpool::pool::{ItemSpec, Pool, Quantity, Rng};
use rewardpool::store::{self, Durability, WalOptions};

/// Histogram bounds: 1 ns to 10 s, 3 significant digits (STYLE §2.8).
const HIST_LOW: u64 = 1;
const HIST_HIGH: u64 = 10_000_000_000;
/// A run that makes no progress for this long is aborted (an engine bug, not a slow disk).
const STALL_LIMIT: Duration = Duration::from_secs(30);
/// The progress bar appears only for runs longer than this, and only when stderr is a
/// terminal.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);
/// How long an open loop measures the machine's floor before the run (every core spinning:
/// during the run it would take the run's cores).
const FLOOR_RUN: Duration = Duration::from_secs(1);
/// Spins on an empty drain before yielding the CPU.
const IDLE_SPINS: u32 = 64;
/// Yields on an empty drain for this long, then sleeps until an outcome is ready
/// (`Client::park_until_ready`): a producer that never sleeps keeps the kernel's disk-flush
/// worker off its core, and under `sync` each acknowledgement then waited ~10 ms. Measured
/// against 0, 20, 100, 200 and 1000 µs (perf/results/2026-11-30-slow-sync): 50 µs had no
/// slow run and the best throughput; shorter sleeps more often (a wake-up costs more than
/// the wait it saves), longer leaves the flush worker waiting longer.
const IDLE_YIELD_FOR: Duration = Duration::from_micros(50);
/// Longest sleep on an empty drain (the core wakes the producer when it publishes).
const IDLE_PARK_MAX: Duration = Duration::from_millis(2);
/// Most producers: the engine's default `clients_max`.
const PRODUCERS_MAX: usize = 64;
/// Most items (a sane bound for a benchmark catalog).
const ITEMS_MAX: u32 = 1 << 24;
/// An open loop counts as sustained when every producer's last send was at most this share
/// of the schedule's length (draws / rate) behind its intended time, or [`RATE_SLACK_MIN`].
const RATE_SLACK: f64 = 0.05;
/// The least lag that is always allowed (a machine stall near the end of a short run).
const RATE_SLACK_MIN: Duration = Duration::from_millis(2);

/// The JSON report: exactly these keys, in this order (SPEC §7).
#[derive(Debug, Serialize)]
struct Report {
    draws: u64,
    seconds: f64,
    draws_per_sec: f64,
    latency_ns: Latency,
    baseline_draws_per_sec: f64,
    producers: usize,
    items: u32,
    durability: String,
    group: u32,
    window: usize,
    /// Draws per request (1: single draws).
    pull: u32,
    rate: Option<f64>,
    /// Open loop: whether every producer kept to the offered rate (its last send at most
    /// [`RATE_SLACK`] behind schedule); `null` in a closed loop.
    rate_sustained: Option<bool>,
    /// Groups committed in the run (plain output only: the JSON shape is a contract).
    #[serde(skip)]
    groups: u64,
    /// Log bytes appended per acknowledged draw (frames, commits, snapshot markers), as the
    /// journal measured them; `null` without a log (`memory`).
    log_bytes_per_draw: Option<f64>,
    /// Open loop: the machine's floor p99 in ns, measured just before the run
    /// (`machine::floor`); `null` in a closed loop or when it could not be measured.
    floor_p99_ns: Option<u64>,
    /// Pools (engines, each with its own core thread and log); `draws_per_sec` is their
    /// aggregate.
    pools: usize,
    /// Each pool's draws/s: its producers' acknowledged draws over their own time (first
    /// start to last end); `null` with one pool.
    pool_draws_per_sec: Option<Vec<f64>>,
    /// The journal's counters at the end of the run (plain output only), if it keeps any.
    #[serde(skip)]
    journal: Option<JournalFigures>,
    /// Open loop: on how many cores and for how long the floor was measured (plain output).
    #[serde(skip)]
    floor: Option<FloorFigures>,
    /// What the machine took during the run (plain output only).
    #[serde(skip)]
    machine: Option<(super::machine::Taken, u64)>,
}

/// How the floor was measured: cores spun on, seconds each.
#[derive(Debug, Clone, Copy)]
struct FloorFigures {
    cores: usize,
    seconds: f64,
}

/// What the durable log wrote and synced during the run (measured by the journal).
#[derive(Debug, Clone, Copy)]
struct JournalFigures {
    bytes_appended: u64,
    syncs: u64,
    bytes_synced: u64,
    sync_ns_total: u64,
    sync_ns_max: u64,
}

#[derive(Debug, Serialize)]
struct Latency {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

/// What one producer did.
struct ProducerResult {
    hist: Histogram<u64>,
    start: Instant,
    end: Instant,
    acknowledged: u64,
    error: Option<DrawError>,
    /// Involuntary context switches of this producer thread during the run.
    preempted: u64,
    /// Open loop: how far behind its intended time the last draw was sent.
    lag: Duration,
}

/// Parameters shared by every producer.
#[derive(Clone, Copy)]
struct Plan {
    /// Requests in flight (draws, or pulls of `pull` draws).
    window: u64,
    /// Draws per request with `--pull` (each request a pull); 0: single draws.
    pull: u64,
    /// Open loop: nanoseconds between intended sends of one producer.
    interval: Option<f64>,
    /// `--keys`: this producer's index + 1, which its idempotency keys are made from
    /// (`bench_key`); 0: no keys.
    key_high: u64,
}

/// The idempotency key of producer `producer`'s (1-based) request `n`: random-looking,
/// as clients send them (UUIDs, hashes), not a counter: counters had a fixed index hash
/// spread them over the index far more evenly than any real keys, and the benchmark
/// flattered the key table. Unique per (producer, request) (the low half is a bijection
/// of both while `n` < 2^40), never 0 (the high half is odd).
fn bench_key(producer: u64, n: u64) -> u128 {
    // splitmix64's finalizer: a bijection of u64 that mixes every bit into every other.
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let lo = mix(n.wrapping_add(producer << 40));
    let hi = mix(lo ^ producer) | 1;
    (u128::from(hi) << 64) | u128::from(lo)
}

/// What a run uses when neither a flag nor `--config` says, per durability mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ModeDefaults {
    draws: u64,
    group: u32,
    window: usize,
    /// With `--pull N`: the draws the window holds (the window is `pull_window_draws / N`
    /// requests), when the mode bounds draws rather than requests in flight.
    pull_window_draws: Option<usize>,
}

impl ModeDefaults {
    /// Chosen by two interleaved sweeps of window {256, 1024, 4096, 8192, 16384} × group
    /// {200, 1000, 4096} per mode on the 2-core machine (release build, 4 M draws, 7 runs
    /// each, medians; README "bench"). `memory` and `buffered`: a larger window bought
    /// nothing on a busy machine but a millisecond tail. `sync`: throughput grows with the
    /// window (an fdatasync covers more draws), 1.9 M at 4096/1000 and 7.3 M at
    /// 16384/4096, where the run of 10 M draws takes seconds, not the minute of 256/200.
    const fn of(durability: Durability) -> ModeDefaults {
        match durability {
            Durability::Memory => {
                ModeDefaults { draws: 10_000_000, group: 200, window: 256, pull_window_draws: None }
            }
            Durability::Buffered => {
                ModeDefaults { draws: 10_000_000, group: 200, window: 256, pull_window_draws: None }
            }
            // Pulls of 10 at window 16384 requests held 163,840 draws in flight: p99 11 ms.
            // 1024 pulls (10,240 draws): 30–31 M draws/s, p99 1.3 ms; 1638: 33–34 M, p99
            // 3.6–3.9 ms; 4096: 38–39 M, p99 4.4–6.4 ms (two runs each, this machine).
            Durability::Sync => ModeDefaults {
                draws: 10_000_000,
                group: 4096,
                window: 16384,
                pull_window_draws: Some(10_240),
            },
        }
    }

    /// The window (requests in flight per producer) for pulls of `pull` draws, or for single
    /// draws (`None`).
    fn window_for(self, pull: Option<u32>) -> usize {
        match (self.pull_window_draws, pull) {
            (Some(draws), Some(n)) => (draws / n.max(1) as usize).max(1),
            _ => self.window,
        }
    }
}

/// What the run uses: each flag, else the `--config` file's value, else the mode's default.
struct Resolved {
    durability: Durability,
    draws: u64,
    group: u32,
    window: usize,
    engine: EngineConfig,
}

fn resolve(global: &GlobalArgs, args: &BenchArgs, config: &Config) -> Resolved {
    let from_file = global.config.is_some();
    let base = if from_file { config.engine_config() } else { Config::default().engine_config() };
    let durability = match args.durability {
        Some(DurabilityArg::Memory) => Durability::Memory,
        Some(DurabilityArg::Buffered) => Durability::Buffered,
        Some(DurabilityArg::Sync) => Durability::Sync,
        None if from_file => config.wal.durability,
        None => Durability::Memory,
    };
    let mode = ModeDefaults::of(durability);
    let draws = args.draws.unwrap_or(mode.draws);
    let group = args.group.unwrap_or(if from_file { base.flush_after_n_draw } else { mode.group });
    let window = args.window.unwrap_or(if from_file {
        base.ring_capacity
    } else {
        mode.window_for(args.pull)
    });
    Resolved { durability, draws, group, window, engine: base }
}

pub(crate) fn run(global: &GlobalArgs, args: &BenchArgs) -> CmdResult {
    let config = load_config(global)?;
    let Resolved { durability, draws, group, window: window_arg, engine: base } =
        resolve(global, args, &config);
    check_args(args, draws, group, window_arg)?;
    let producers = args.producers.unwrap_or(args.pools);
    for (flag, path) in [("--hist-out", &args.hist_out), ("--plot", &args.plot)] {
        if let Some(path) = path {
            check_writable(flag, path)?;
        }
    }
    let catalog: Vec<ItemSpec> = (1..=args.items)
        .map(|w| ItemSpec { id: format!("item{w}"), quantity: Quantity::Unlimited, weight: w })
        .collect();

    // Read the core list before any thread is pinned (MEASURED.md: core_affinity lists only
    // the calling thread's mask).
    let cores = available_cores().to_vec();
    // Before the engine starts: nothing of the run is on the cores yet.
    let floor = args.rate.map(|_| super::machine::floor::measure(FLOOR_RUN));
    let dir = BenchDir::create(global, durability)?;
    let engine_config = EngineConfig {
        flush_after_n_draw: group,
        ring_capacity: window_arg.max(1),
        core: CorePin::Auto,
        clients_max: PRODUCERS_MAX,
        // With --pull, a client's pull area holds a window of pulls.
        pull_area_len: (window_arg.max(1) * args.pull.unwrap_or(1) as usize)
            .clamp(base.pull_area_len, 1 << 24),
        ..base
    };
    let engines = open_pools(args, &config, &catalog, dir.path(), durability, engine_config)?;
    let producer_cores: Vec<usize> =
        cores.iter().copied().filter(|c| engines.iter().all(|e| Some(*c) != e.core_id())).collect();

    // Producer i draws from pool i mod P (`check_args`: at least one producer per pool).
    let mut clients = Vec::with_capacity(producers);
    for i in 0..producers {
        clients.push(engines[i % engines.len()].client().map_err(|e| {
            Failure::failed(anyhow::Error::new(e).context("cannot register a producer"))
        })?);
    }
    let window = u64::try_from(window_arg).unwrap_or(u64::MAX);
    let plan = Plan {
        window: window.min(clients[0].capacity() as u64),
        pull: args.pull.map_or(0, u64::from),
        interval: args.rate.map(|r| producers as f64 * 1e9 / r),
        key_high: 0,
    };

    let progress: Arc<Vec<CachePadded<AtomicU64>>> =
        Arc::new((0..producers).map(|_| CachePadded::new(AtomicU64::new(0))).collect());
    let abort = Arc::new(AtomicBool::new(false));
    // A start flag rather than a Barrier: a producer that fails to spawn must not leave the
    // others waiting forever.
    let go = Arc::new(AtomicBool::new(false));
    let per = draws / producers as u64;
    let extra = draws % producers as u64;

    let keys = args.keys;
    let mut handles = Vec::with_capacity(producers);
    for (i, client) in clients.into_iter().enumerate() {
        let draws = per + u64::from((i as u64) < extra);
        // With no core free of core threads (several pools on few cores) producers run
        // unpinned: pinned beside their pool's core thread they ran at half the rate (the
        // two spin in turn for whole time slices: p99 5 ms), measured on 2 cores.
        let core = (!producer_cores.is_empty()).then(|| producer_cores[i % producer_cores.len()]);
        let (progress, stop, go) = (Arc::clone(&progress), Arc::clone(&abort), Arc::clone(&go));
        let handle = thread::Builder::new()
            .name(format!("bench-producer-{i}"))
            .spawn(move || {
                if let Some(id) = core {
                    // Best effort: an unpinned producer still measures, just more noisily.
                    let _ = core_affinity::set_for_current(core_affinity::CoreId { id });
                }
                let key_high = if keys { i as u64 + 1 } else { 0 };
                produce(client, draws, Plan { key_high, ..plan }, &progress[i], &stop, &go)
            })
            .map_err(|e| Failure::failed(anyhow::Error::new(e).context("cannot spawn a producer")));
        match handle {
            Ok(h) => handles.push(h),
            Err(f) => {
                abort.store(true, Ordering::Relaxed);
                return Err(f);
            }
        }
    }

    let machine_before = super::machine::Sample::now();
    go.store(true, Ordering::Release);
    watch(&handles, &progress, &abort, draws);

    let mut results = Vec::with_capacity(handles.len());
    let mut panicked = false;
    for h in handles {
        match h.join() {
            Ok(r) => results.push(r),
            Err(_) => panicked = true,
        }
    }
    // Before shutdown: the engine's threads are still there to be read.
    let machine_taken = machine_before.until(&super::machine::Sample::now());
    let failure = engines.iter().find_map(rewardpool::Engine::failure);
    // Relaxed: counters read after the producers finished.
    let groups = engines.iter().map(|e| e.stats().groups_committed.load(Ordering::Relaxed)).sum();
    let journal =
        engines.iter().filter_map(|e| e.journal_stats()).fold(None::<JournalFigures>, |sum, j| {
            let j = JournalFigures {
                bytes_appended: j.bytes_appended.load(Ordering::Relaxed),
                syncs: j.syncs.load(Ordering::Relaxed),
                bytes_synced: j.bytes_synced.load(Ordering::Relaxed),
                sync_ns_total: j.sync_ns_total.load(Ordering::Relaxed),
                sync_ns_max: j.sync_ns_max.load(Ordering::Relaxed),
            };
            Some(match sum {
                None => j,
                Some(s) => JournalFigures {
                    bytes_appended: s.bytes_appended + j.bytes_appended,
                    syncs: s.syncs + j.syncs,
                    bytes_synced: s.bytes_synced + j.bytes_synced,
                    sync_ns_total: s.sync_ns_total + j.sync_ns_total,
                    sync_ns_max: s.sync_ns_max.max(j.sync_ns_max),
                },
            })
        });
    let pools = engines.len();
    // Every pool is shut down, whatever the others' outcome; the first error is reported.
    let shutdown: Result<Vec<_>, _> = engines
        .into_iter()
        .map(rewardpool::Engine::shutdown)
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    drop(dir);

    if panicked {
        return Err(Failure::failed(anyhow!("a producer thread panicked")));
    }
    if abort.load(Ordering::Relaxed) {
        return Err(Failure::failed(anyhow!(
            "the benchmark made no progress for {} s and was aborted",
            STALL_LIMIT.as_secs()
        )));
    }
    if let Some(e) = results.iter().find_map(|r| r.error) {
        let mut err = anyhow!("a draw failed during the benchmark: {e}");
        if let Some(reason) = failure {
            err = err.context(reason);
        }
        return Err(Failure::failed(err));
    }
    shutdown
        .map_err(|e| Failure::failed(anyhow::Error::new(e).context("engine shutdown failed")))?;

    let mut hist = new_histogram();
    for r in &results {
        hist.add(&r.hist)
            .map_err(|e| Failure::failed(anyhow!("cannot merge histograms: {e:?}")))?;
    }
    let start = results.iter().map(|r| r.start).min();
    let end = results.iter().map(|r| r.end).max();
    let seconds = match (start, end) {
        (Some(s), Some(e)) => (e - s).as_secs_f64(),
        _ => 0.0,
    };
    let acknowledged: u64 = results.iter().map(|r| r.acknowledged).sum();
    let rate_sustained = args.rate.map(|rate| {
        let schedule = Duration::from_secs_f64(draws as f64 / rate);
        let allowed = schedule.mul_f64(RATE_SLACK).max(RATE_SLACK_MIN);
        results.iter().all(|r| r.lag <= allowed)
    });
    let baseline = baseline(&catalog, draws, args.seed.unwrap_or(1));

    let report = Report {
        draws: acknowledged,
        seconds,
        draws_per_sec: per_sec(acknowledged, seconds),
        latency_ns: Latency {
            p50: hist.value_at_quantile(0.50),
            p90: hist.value_at_quantile(0.90),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
        },
        baseline_draws_per_sec: baseline,
        producers,
        items: args.items,
        durability: durability.to_string(),
        group,
        window: window_arg,
        pull: args.pull.unwrap_or(1),
        rate: args.rate,
        rate_sustained,
        log_bytes_per_draw: journal
            .filter(|_| acknowledged > 0)
            .map(|j| j.bytes_appended as f64 / acknowledged as f64),
        floor_p99_ns: floor
            .as_ref()
            .and_then(|f| f.as_deref().and_then(super::machine::floor::floor_p99_ns)),
        pools,
        pool_draws_per_sec: (pools > 1).then(|| {
            (0..pools)
                .map(|p| {
                    // Over its own producers' time: pools that finish early show it.
                    let own = || results.iter().skip(p).step_by(pools);
                    let (start, end) = (own().map(|r| r.start).min(), own().map(|r| r.end).max());
                    let seconds = start.zip(end).map_or(0.0, |(s, e)| (e - s).as_secs_f64());
                    per_sec(own().map(|r| r.acknowledged).sum(), seconds)
                })
                .collect()
        }),
        groups,
        journal,
        floor: floor.flatten().map(|f| FloorFigures {
            cores: f.len(),
            seconds: f.iter().map(|g| g.seconds).fold(0.0, f64::max),
        }),
        machine: Some((machine_taken, results.iter().map(|r| r.preempted).sum())),
    };

    if let Some(path) = &args.hist_out {
        write_hgrm(path, &hist).map_err(Failure::failed)?;
    }
    if let Some(path) = &args.plot {
        plot(path, &hist, &report).map_err(Failure::failed)?;
    }
    let mut out = Out::new();
    if args.json {
        let text = serde_json::to_string(&report).context("cannot encode the report");
        out.line(&text.map_err(Failure::failed)?)?;
    } else {
        print_plain(&mut out, &report)?;
    }
    out.flush()
}

/// Opens `--pools` engines on `catalog`, each seeded apart (`seed + i`), logging (unless in
/// memory) in `dir` itself for one pool, or in `dir/pool-<i>/` for several. One pool runs
/// where `CorePin::Auto` puts it, as it always did; several follow the host's core plan
/// (one core thread per core, helpers off the core threads when there are spare cores).
fn open_pools(
    args: &BenchArgs,
    config: &Config,
    catalog: &[ItemSpec],
    dir: &Path,
    durability: Durability,
    engine_config: EngineConfig,
) -> Result<Vec<rewardpool::Engine>, Failure> {
    let mut cores = available_cores().to_vec();
    // Core threads from the highest core down, as `CorePin::Auto`: producers start low.
    cores.reverse();
    let plan =
        if args.pools > 1 { rewardpool::host::plan_cores(args.pools, &cores) } else { vec![] };
    let mut engines = Vec::with_capacity(args.pools);
    for i in 0..args.pools {
        let dir = if args.pools == 1 { dir.to_owned() } else { dir.join(format!("pool-{i}")) };
        let wal = WalOptions { dir, durability, ..config.wal_options() };
        let mut engine_config = engine_config.clone();
        if let Some(p) = plan.get(i) {
            engine_config.core = CorePin::Core(p.core);
            engine_config.helper_core = p.helpers;
        }
        let seed = args.seed.map(|s| s.wrapping_add(i as u64));
        // On failure the engines already open are dropped, which shuts them down.
        engines.push(
            store::open_engine(catalog, &wal, engine_config, seed)
                .map_err(|e| open_failure(e, config))?,
        );
    }
    Ok(engines)
}

/// Fails at once (exit 2) when `path` cannot be written, rather than after the run: an
/// existing file is opened for writing (not truncated), a new one is created and removed.
pub(crate) fn check_writable(flag: &str, path: &Path) -> CmdResult {
    let result = if path.exists() {
        fs::OpenOptions::new().write(true).open(path).map(drop)
    } else {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|_| fs::remove_file(path))
    };
    result.map_err(|e| {
        Failure::bad_input(
            anyhow::Error::new(e)
                .context(format!("{flag} {}: cannot write the file there", path.display())),
        )
    })
}

fn check_args(args: &BenchArgs, draws: u64, group: u32, window: usize) -> CmdResult {
    let producers = args.producers.unwrap_or(args.pools);
    let bad = |m: String| Err(Failure::bad_input(anyhow!(m)));
    if draws == 0 {
        return bad("--draws must be at least 1".into());
    }
    if args.pools == 0 || args.pools > PRODUCERS_MAX {
        return bad(format!("--pools is {}: it must be between 1 and {PRODUCERS_MAX}", args.pools));
    }
    if args.items == 0 || args.items > ITEMS_MAX {
        return bad(format!("--items is {}: it must be between 1 and {ITEMS_MAX}", args.items));
    }
    if producers == 0 || producers > PRODUCERS_MAX {
        return bad(format!(
            "--producers is {}: it must be between 1 and {PRODUCERS_MAX}",
            producers
        ));
    }
    if producers < args.pools || !producers.is_multiple_of(args.pools) {
        return bad(format!(
            "--producers is {} with --pools {}: every pool needs the same number of producers \
             (a multiple of --pools)",
            producers, args.pools
        ));
    }
    if window == 0 || window > 1 << 20 {
        return bad(format!("--window is {window}: it must be between 1 and 1048576"));
    }
    if group == 0 || group > 1 << 20 {
        return bad(format!("--group is {group}: it must be between 1 and 1048576"));
    }
    if let Some(r) = args.rate {
        if !r.is_finite() || r <= 0.0 {
            return bad(format!("--rate is {r}: it must be a positive number of draws/s"));
        }
    }
    if let Some(n) = args.pull {
        if n == 0 || n > rewardpool::PULL_LEN_MAX {
            let max = rewardpool::PULL_LEN_MAX;
            return bad(format!("--pull is {n}: a pull asks for 1 to {max} draws"));
        }
    }
    Ok(())
}

fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(HIST_LOW, HIST_HIGH, 3).unwrap_or_else(|_| unreachable!())
}

fn per_sec(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// One producer: keeps up to `plan.window` draws in flight (closed loop) or sends on the
/// intended schedule (open loop), and records each draw's latency.
fn produce(
    mut client: Client,
    draws: u64,
    plan: Plan,
    progress: &AtomicU64,
    abort: &AtomicBool,
    go: &AtomicBool,
) -> ProducerResult {
    let mut hist = new_histogram();
    // Send time of each request in flight, indexed by ticket id modulo the client capacity.
    let cap = client.capacity();
    let mask = cap as u64 - 1;
    let mut sent_at: Vec<Instant> = vec![Instant::now(); cap];
    let (mut sent, mut done) = (0_u64, 0_u64);
    let mut error = None;
    let mut idle = 0_u32;
    let mut lag = Duration::ZERO;
    let mut idle_since = Instant::now();

    while !go.load(Ordering::Acquire) && !abort.load(Ordering::Relaxed) {
        thread::yield_now();
    }
    let start = Instant::now();
    let preempted_before = super::machine::own_preemptions();
    while done < draws && error.is_none() {
        // Submit.
        let mut pushed = false;
        // One clock read per burst (MEASURED.md: ~34 ns each, 19 % of the producer's time
        // when read per draw): a burst of at most `window` pushes takes ~1 µs, which is the
        // most a send time can be early by.
        let burst_time = Instant::now();
        while sent < draws && sent - done < plan.window * plan.pull.max(1) {
            let send_time = match plan.interval {
                None => burst_time,
                Some(interval_ns) => {
                    // f64: a fractional interval must not drift over millions of sends.
                    let intended = start + Duration::from_nanos((sent as f64 * interval_ns) as u64);
                    if burst_time < intended {
                        break;
                    }
                    intended
                }
            };
            // A pull of up to `plan.pull` draws (the last one may be shorter), or one draw.
            // With --keys, a fresh key per request; 0 otherwise (no key).
            let key = if plan.key_high == 0 { 0 } else { bench_key(plan.key_high, sent) };
            let submitted = if plan.pull > 0 {
                let len = plan.pull.min(draws - sent);
                client.try_pull_keyed(len as u32, key).map(|t| (t.id(), len))
            } else {
                client.try_draw_keyed(key).map(|t| (t.id(), 1))
            };
            match submitted {
                Ok((id, len)) => {
                    sent_at[(id & mask) as usize] = send_time;
                    sent += len;
                    pushed = true;
                    // Open loop: send_time is the intended time (closed loop: no lag).
                    lag = burst_time.saturating_duration_since(send_time);
                }
                Err(DrawError::Full) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if pushed {
            client.flush();
        }
        // Collect: one clock read per non-empty batch, taken after drain has read the
        // completion counter, so every delivered outcome completed before it.
        let mut now: Option<Instant> = None;
        let delivered = client.drain(|seq, result| match result {
            Ok(_) => {
                let t = *now.get_or_insert_with(Instant::now);
                let ns = t.saturating_duration_since(sent_at[(seq & mask) as usize]).as_nanos();
                hist.saturating_record(u64::try_from(ns).unwrap_or(u64::MAX).max(1));
                done += 1;
            }
            Err(e) => {
                error.get_or_insert(e);
            }
        });
        if delivered > 0 {
            progress.store(done, Ordering::Relaxed);
            idle = 0;
        } else {
            if abort.load(Ordering::Relaxed) {
                break;
            }
            idle += 1;
            if idle < IDLE_SPINS {
                std::hint::spin_loop();
            } else if idle == IDLE_SPINS {
                idle_since = Instant::now();
                thread::yield_now();
            } else if idle_since.elapsed() < IDLE_YIELD_FOR {
                thread::yield_now();
            } else {
                // Open loop: never sleep past the next intended send time.
                let park = match plan.interval {
                    None => IDLE_PARK_MAX,
                    Some(interval_ns) => {
                        let next = start + Duration::from_nanos((sent as f64 * interval_ns) as u64);
                        next.saturating_duration_since(Instant::now()).min(IDLE_PARK_MAX)
                    }
                };
                if park.is_zero() {
                    thread::yield_now();
                } else {
                    client.park_until_ready(park);
                }
            }
        }
    }
    let end = Instant::now();
    let preempted = super::machine::own_preemptions().saturating_sub(preempted_before);
    ProducerResult { hist, start, end, acknowledged: done, error, preempted, lag }
}

/// Waits for the producers, showing a progress line on a terminal for long runs, and aborts
/// the run when it stalls.
fn watch(
    handles: &[thread::JoinHandle<ProducerResult>],
    progress: &[CachePadded<AtomicU64>],
    abort: &AtomicBool,
    total: u64,
) {
    use std::io::IsTerminal as _;
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let (mut last, mut last_change) = (0_u64, Instant::now());
    while !handles.iter().all(thread::JoinHandle::is_finished) {
        thread::sleep(Duration::from_millis(50));
        let done: u64 = progress.iter().map(|p| p.load(Ordering::Relaxed)).sum();
        if done != last {
            last = done;
            last_change = Instant::now();
        } else if last_change.elapsed() > STALL_LIMIT {
            abort.store(true, Ordering::Relaxed);
        }
        if terminal && bar.is_none() && started.elapsed() > PROGRESS_AFTER {
            let b = indicatif::ProgressBar::with_draw_target(
                Some(total),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("bench {bar:30} {pos}/{len} draws  {msg}")
            {
                b.set_style(style);
            }
            bar = Some(b);
        }
        if let Some(b) = &bar {
            b.set_position(done);
            // Our own rate: indicatif's estimate starts when the bar appears, not the run.
            let rate = done as f64 / started.elapsed().as_secs_f64() / 1e6;
            b.set_message(format!("{rate:.2} M draws/s"));
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

/// `draws` calls of `Pool::draw` in one thread over the same catalog: no rings, no log.
fn baseline(catalog: &[ItemSpec], draws: u64, seed: u64) -> f64 {
    let Ok(mut pool) = Pool::new(catalog, Rng::from_seed(seed)) else {
        return 0.0;
    };
    let start = Instant::now();
    for _ in 0..draws {
        std::hint::black_box(pool.draw());
    }
    per_sec(draws, start.elapsed().as_secs_f64())
}

/// The log directory of a durable run: a fresh directory under `--data-dir` (default
/// `./bench-data`), removed when dropped, or by [`remove_on_signal`]'s thread when SIGINT
/// or SIGTERM ends the run. Memory runs get none.
struct BenchDir {
    path: PathBuf,
    /// What to remove: taken by whoever removes it first (drop or the signal thread).
    cleanup: Arc<Mutex<Option<Cleanup>>>,
}

/// A created run directory, and its parent when this run created that too.
struct Cleanup {
    path: PathBuf,
    /// The parent, when this run created it (then removed too, if empty).
    created_parent: Option<PathBuf>,
}

impl Cleanup {
    fn remove(self) {
        // The engine may still be creating a segment (a signal arrives mid-run): retry.
        for _ in 0..10 {
            match fs::remove_dir_all(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    thread::sleep(Duration::from_millis(10));
                }
                _ => break,
            }
        }
        if let Some(parent) = &self.created_parent {
            // Only if empty: another run may be using it.
            let _ = fs::remove_dir(parent);
        }
    }
}

/// SIGINT and SIGTERM remove the run's directory and end the process with 128 + the
/// signal's number (a later signal, after the run, only ends the process).
fn remove_on_signal(cleanup: Arc<Mutex<Option<Cleanup>>>) -> Result<(), Failure> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install the SIGINT/SIGTERM handler")
        .map_err(Failure::failed)?;
    thread::Builder::new()
        .name("bench-signals".to_owned())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let taken = cleanup.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(c) = taken {
                    let path = c.path.display().to_string();
                    c.remove();
                    eprintln!("rewardpool bench: interrupted (signal {signal}); removed {path}");
                }
                std::process::exit(128 + signal);
            }
        })
        .context("cannot spawn the signal thread")
        .map_err(Failure::failed)?;
    Ok(())
}

impl BenchDir {
    fn create(global: &GlobalArgs, durability: Durability) -> Result<BenchDir, Failure> {
        let base = global.data_dir.clone().unwrap_or_else(|| PathBuf::from("bench-data"));
        let name = format!(
            "run-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let path = base.join(name);
        let cleanup = Arc::new(Mutex::new(None));
        if durability == Durability::Memory {
            return Ok(BenchDir { path, cleanup });
        }
        // Installed before the directory exists: no moment where a signal leaves it behind.
        remove_on_signal(Arc::clone(&cleanup))?;
        let created_parent = (!base.exists()).then(|| base.clone());
        let mut slot = cleanup.lock().unwrap_or_else(PoisonError::into_inner);
        let created = fs::create_dir_all(&path)
            .with_context(|| format!("cannot create the benchmark directory {}", path.display()))
            .map_err(Failure::bad_input);
        // Even a failed create may have made the parent.
        *slot = Some(Cleanup { path: path.clone(), created_parent });
        drop(slot);
        created?;
        Ok(BenchDir { path, cleanup })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let taken = self.cleanup.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(c) = taken {
            c.remove();
        }
    }
}

/// Writes the percentile distribution like HdrHistogram's `.hgrm` output (values in µs).
fn write_hgrm(path: &Path, hist: &Histogram<u64>) -> anyhow::Result<()> {
    let mut text = Vec::new();
    writeln!(
        text,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0_u64;
    for v in hist.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value_us = v.value_iterated_to() as f64 / 1000.0;
        if q < 1.0 {
            writeln!(text, "{value_us:>12.3} {q:>14.12} {total:>10} {:>14.2}", 1.0 / (1.0 - q))?;
        } else {
            writeln!(text, "{value_us:>12.3} {q:>14.12} {total:>10}")?;
        }
    }
    writeln!(
        text,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        hist.mean() / 1000.0,
        hist.stdev() / 1000.0
    )?;
    writeln!(
        text,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        hist.max() as f64 / 1000.0,
        hist.len()
    )?;
    writeln!(text, "#[Values in microseconds; latency from send to acknowledgement]")?;
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Latency (µs, log scale) against percentile, x axis 1/(1-p) on a log scale.
fn plot(path: &Path, hist: &Histogram<u64>, report: &Report) -> anyhow::Result<()> {
    use plotters::prelude::*;

    let points: Vec<(f64, f64)> = hist
        .iter_quantiles(5)
        .filter(|v| v.quantile_iterated_to() < 1.0)
        .map(|v| {
            (1.0 / (1.0 - v.quantile_iterated_to()), (v.value_iterated_to().max(1) as f64) / 1000.0)
        })
        .collect();
    let x_max = points.iter().map(|p| p.0).fold(10.0_f64, f64::max) * 1.5;
    let y_max = (hist.max().max(1) as f64 / 1000.0) * 1.5;
    let y_min = (hist.min().max(1) as f64 / 1000.0) / 1.5;

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let caption = format!(
            "rewardpool bench: {} producer(s), {} items, {}, group {}, window {}{}",
            report.producers,
            report.items,
            report.durability,
            report.group,
            report.window,
            report.rate.map(|r| format!(", rate {r:.0}/s")).unwrap_or_default()
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((1.0..x_max).log_scale(), (y_min..y_max).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (µs)")
            .x_label_formatter(&|x| {
                let p = format!("{:.4}", 100.0 * (1.0 - 1.0 / x));
                format!("{}%", p.trim_end_matches('0').trim_end_matches('.'))
            })
            .draw()?;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), &BLUE))?
            .label(format!("{:.2} M draws/s", report.draws_per_sec / 1e6))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow!("cannot draw the plot {}: {e}", path.display()))
}

fn print_plain(out: &mut Out, r: &Report) -> CmdResult {
    let us = |ns: u64| format!("{:.1} µs", ns as f64 / 1000.0);
    let mode = match r.rate {
        Some(rate) => format!("open loop at {rate:.0} draws/s"),
        None => "closed loop".to_owned(),
    };
    out.line(&format!(
        "rewardpool bench: {} draws, {} producer(s), {} items, durability {}, group {}, window {}, {mode}",
        r.draws, r.producers, r.items, r.durability, r.group, r.window
    ))?;
    out.line(&format!("throughput  {:.2} M draws/s  ({:.3} s)", r.draws_per_sec / 1e6, r.seconds))?;
    if let Some(per_pool) = &r.pool_draws_per_sec {
        let each: Vec<String> = per_pool.iter().map(|d| format!("{:.2}", d / 1e6)).collect();
        out.line(&format!(
            "pools       {} (M draws/s each: {}; the throughput above is their sum)",
            r.pools,
            each.join(", ")
        ))?;
    }
    let l = &r.latency_ns;
    out.line(&format!(
        "latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        us(l.p50),
        us(l.p90),
        us(l.p99),
        us(l.p999),
        us(l.max)
    ))?;
    out.line(&format!(
        "baseline    {:.2} M draws/s  (Pool::draw in one thread: no rings, no log; same run)",
        r.baseline_draws_per_sec / 1e6
    ))?;
    if r.rate.is_some() {
        let floor = match (r.floor_p99_ns, r.floor) {
            (Some(ns), Some(f)) => format!(
                "p99 {} for this machine, beside the engine's p99 {}: the smallest bound whose \
                 stall excess is at most 1 % (spinning on {} core(s) for {:.1} s just before \
                 the run, as rewardpool-hiccup does)",
                us(ns),
                us(l.p99),
                f.cores,
                f.seconds
            ),
            _ => "not measured (a spinning thread could not start)".to_owned(),
        };
        out.line(&format!("floor       {floor}"))?;
    }
    if r.groups > 0 {
        let mean = r.draws as f64 / r.groups as f64;
        let log = match r.log_bytes_per_draw {
            Some(bytes) => format!("{bytes:.1} log bytes per draw"),
            None => "no log".to_owned(),
        };
        out.line(&format!(
            "groups      {} committed, {mean:.1} draws each on average; {log}",
            r.groups
        ))?;
    }
    if let Some(j) = r.journal.filter(|j| j.syncs > 0) {
        out.line(&format!(
            "syncs       {} ({:.1} groups each), {:.1} KiB each on average, {} mean, {} max",
            j.syncs,
            r.groups as f64 / j.syncs as f64,
            j.bytes_synced as f64 / j.syncs as f64 / 1024.0,
            us(j.sync_ns_total / j.syncs),
            us(j.sync_ns_max)
        ))?;
    }
    if let (Some(rate), Some(sustained)) = (r.rate, r.rate_sustained) {
        let (verdict, how) = if sustained {
            ("sustained", "the producers kept to the schedule")
        } else {
            ("NOT sustained", "the producers fell behind the schedule")
        };
        out.line(&format!(
            "rate        {verdict}: achieved {:.3} M of {:.3} M draws/s offered ({how})",
            r.draws_per_sec / 1e6,
            rate / 1e6
        ))?;
    }
    if let Some((m, producers)) = r.machine {
        let count = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
        let steal = m.steal_ms.map_or_else(|| "?".to_owned(), |ms| format!("{ms:.0} ms"));
        out.line(&format!(
            "machine     steal {steal}; switched out while runnable (preempted, or yielded to a \
             waiting thread): core thread {}, producers {producers}, log threads {}",
            count(m.core_thread),
            count(m.helper_threads),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_keys_are_unique_not_zero_and_not_a_counter() {
        let mut seen = std::collections::HashSet::new();
        for producer in 1..=3 {
            for n in 0..20_000 {
                let key = bench_key(producer, n);
                assert_ne!(key, 0);
                assert!(seen.insert(key), "producer {producer} request {n} repeats a key");
            }
        }
        // Consecutive requests' keys differ in about half their bits, in both halves.
        let flips: Vec<u32> =
            (0..1000).map(|n| (bench_key(1, n) ^ bench_key(1, n + 1)).count_ones()).collect();
        let mean = flips.iter().sum::<u32>() as f64 / flips.len() as f64;
        assert!((56.0..72.0).contains(&mean), "mean bits flipped {mean}");
    }

    #[test]
    fn sync_pulls_bound_the_draws_in_flight_other_modes_the_requests() {
        let sync = ModeDefaults::of(Durability::Sync);
        assert_eq!(sync.window_for(None), 16384);
        assert_eq!(sync.window_for(Some(10)), 1024);
        assert_eq!(sync.window_for(Some(1000)), 10);
        assert_eq!(sync.window_for(Some(20_000)), 1);
        for mode in [Durability::Memory, Durability::Buffered] {
            let m = ModeDefaults::of(mode);
            assert_eq!((m.window_for(None), m.window_for(Some(10))), (256, 256));
        }
    }

    #[test]
    fn output_paths_are_probed_without_leaving_or_changing_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("plot.svg");
        assert!(check_writable("--plot", &new).is_ok());
        assert!(!new.exists(), "the probe file is removed");
        let old = dir.path().join("h.hgrm");
        fs::write(&old, b"kept").unwrap();
        assert!(check_writable("--hist-out", &old).is_ok());
        assert_eq!(fs::read(&old).unwrap(), b"kept", "an existing file is not truncated");
        for bad in [dir.path().to_owned(), dir.path().join("no/such/x.svg")] {
            match check_writable("--plot", &bad) {
                Err(Failure::BadInput(e)) => {
                    assert!(e.to_string().contains("--plot"), "{e}");
                }
                other => panic!("{}: {other:?}", bad.display()),
            }
        }
    }
}
