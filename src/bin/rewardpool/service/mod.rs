//! `serve` (alias `run`): the gRPC service.
//!
//! The way of a draw through the files here:
//! `api.rs` (the RPC handlers) → `draw.rs` (one Draw stream: read ahead, answer in order)
//! → `gateway.rs` (threads owning engine clients: the bridge from async to the engine) →
//! the engine; `status.rs` maps the engine's error kinds to gRPC codes; `pools.rs` is what
//! the handlers share; `health.rs` the health service's statuses.
//!
//! # Shutdown (SIGINT or SIGTERM)
//! 1. intake stops: new RPCs get `UNAVAILABLE`, health turns NOT_SERVING, open Draw streams
//!    read no further request; tonic stops accepting connections;
//! 2. every request already read is answered (its group is durable), then each stream ends
//!    with `UNAVAILABLE`; the server waits for that (at most `--drain-timeout-ms`), then at most
//!    [`GRACE`] for the connections to close (streams of other services, e.g. a health
//!    watcher's, never end by themselves: they are cut);
//! 3. the gateways stop, then `Host::shutdown`: each pool's final snapshot, segments closed;
//! 4. exit 0 (1 when a pool's journal had failed).
//!
//! # Standby (`--standby`)
//! Every pool with a `replication` section is followed instead of served: a
//! [`Standby`] (the follower of `rewardpool follow`, on a thread of its own) replays its
//! stream into the pool's directory. Draws and updates on it are `FAILED_PRECONDITION`;
//! `ListPools`, `GetState` (the replica's items as of its last checkpoint), `Watch` and
//! `ListCommitments` answer, with the role and the follower's lag (`Watch`, `/metrics`).
//! Promotion in place: the `Promote` RPC (`rewardpool promote --connect`, `standby.rs`)
//! stops the pool's follower, takes the pool over and serves it as a primary from then on.
//! Or stop the server (the followers record what they applied and close their logs), then
//! `serve --takeover` with the same configuration.
//!
//! `grpc.enabled: false` in the configuration (the built-in one says so too): `serve`
//! refuses (exit 2) unless `--listen` names an address — an explicit flag is taken as the
//! operator's intent; a configuration that disables gRPC is not silently overridden.

pub(crate) mod api;
mod draw;
mod gateway;
mod health;
mod http;
mod metrics;
mod pools;
pub(crate) mod proto;
mod standby;
mod status;
mod validate;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use rewardpool::config::{Config, ReplicaAck};
use rewardpool::Host;
use rewardpool::Meter;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use super::args::{GlobalArgs, ServeArgs};
use super::{load_config, CmdResult, Failure};
use api::Api;
use metrics::MetricsView;
use metrics::PromotedMeters;
use pools::{Parts, Pools, Settings, StandbyEntry};
use proto::reward_pool_service_server::RewardPoolServiceServer;

use crate::replica::follow::{FollowStats, Standby};
use crate::replica::ship::{Shipper, Shipping};

/// Jobs each gateway's queue holds (bounded: past it, streams wait, then give up).
const QUEUE_LEN: usize = 4096;
/// Once every call of ours has ended, how long the connections get to deliver the last
/// frames and close before they are cut.
const GRACE: Duration = Duration::from_secs(1);

/// `rewardpool serve`: every pool of the configuration over gRPC until SIGINT/SIGTERM.
pub(crate) fn serve(global: &GlobalArgs, args: &ServeArgs) -> CmdResult {
    let config = load_config(global)?;
    let settings = settings(args)?;
    let listen = listen_address(&config, args)?;
    if args.takeover {
        crate::replica::promote::take_over_all(&config)?;
    }
    let metrics_listen = args
        .metrics_listen
        .clone()
        .or_else(|| config.metrics.as_ref().map(|m| m.listen_address.clone()))
        .map(|address| every_interface(&address));
    // `--standby`: the replicated pools are followed, not opened (dropped on an early
    // return, the followers stop).
    let standbys = start_standbys(&config, args.standby)?;
    let host = Host::open_only(&config, |name| standbys.iter().all(|s| s.pool() != name))
        .map_err(|e| Failure::bad_input(anyhow!(e).context("cannot open the pools")))?;
    keep_off_engine_cores(&host);
    let shippers = match start_shippers(&config, &host) {
        Ok(shippers) => shippers,
        Err(e) => {
            let _ = host.shutdown();
            return Err(e);
        }
    };
    let shipping: Shipping =
        shippers.iter().map(|s| (s.pool().to_owned(), Arc::clone(s.stats()))).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rewardpool-rpc")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = host.shutdown();
            return Err(Failure::failed(anyhow!(e).context("cannot start the async runtime")));
        }
    };
    let log_dirs = match log_dirs(&config) {
        Ok(dirs) => dirs,
        Err(e) => {
            let _ = host.shutdown();
            return Err(e);
        }
    };
    let standby_entries = standby_entries(&config, standbys)?;
    let following: Following = standby_entries
        .iter()
        .map(|s| (s.name.clone(), Arc::clone(&s.stats), Arc::clone(&s.promoted_meters)))
        .collect();
    let pools = match Pools::start(host, settings, &log_dirs, standby_entries) {
        Ok(pools) => Arc::new(pools),
        Err((host, why)) => {
            let _ = host.shutdown();
            return Err(Failure::failed(anyhow!(why)));
        }
    };
    let drain = Duration::from_millis(args.drain_timeout_ms);
    let served = runtime.block_on(run(
        Arc::clone(&pools),
        &listen,
        metrics_listen.map(|address| (address, shipping, following)),
        drain,
        args.json,
    ));
    // Every stream has ended (or the drain timeout passed): what is left are idle tasks.
    runtime.shutdown_timeout(Duration::from_secs(5));
    let watchdog = gate_watchdog(&config, &shippers, &pools);
    let (stopped, promoted_shippers, standbys) = stop_pools(pools);
    drop(watchdog);
    // The pools' final groups are durable: ship them, then stop.
    for shipper in shippers.into_iter().chain(promoted_shippers) {
        let pool = shipper.pool().to_owned();
        if let Err(why) = shipper.stop(SHIP_DRAIN) {
            eprintln!("rewardpool: pool {pool:?}: {why}");
        }
    }
    // The followers record what they applied and close their logs (the directories can
    // then be promoted: `serve --takeover`).
    let mut followed = Ok(());
    for standby in standbys {
        let pool = standby.pool().to_owned();
        match standby.stop() {
            Ok(()) => eprintln!("rewardpool: pool {pool:?}: the standby's follower stopped"),
            Err(why) => {
                eprintln!("rewardpool: pool {pool:?}: the standby's follower had failed: {why:#}");
                followed = Err(Failure::failed(why));
            }
        }
    }
    served.and(stopped).and(followed)
}

/// Each standby pool's name, follower counters and (once promoted in place) meters: the
/// metrics server's view.
type Following = Vec<(String, Arc<FollowStats>, Arc<PromotedMeters>)>;

/// `--standby`: a follower for every pool with a `replication` section (none without the
/// flag).
fn start_standbys(config: &Config, standby: bool) -> Result<Vec<Standby>, Failure> {
    if !standby {
        return Ok(Vec::new());
    }
    let dirs = rewardpool::host::pool_dirs(config).map_err(Failure::bad_input)?;
    let mut standbys = Vec::new();
    for (index, dir) in dirs.into_iter().enumerate() {
        let Some(view) = config.for_pool(index, dir) else { continue };
        if view.replication.is_none() {
            continue;
        }
        standbys.push(Standby::start(view).map_err(Failure::failed)?);
    }
    if standbys.is_empty() {
        return Err(Failure::bad_input(anyhow!(
            "--standby: no pool of the configuration has a replication section: there is \
             nothing to follow"
        )));
    }
    Ok(standbys)
}

/// What the service keeps of each standby: its follower and counters, its log's directory
/// and its own configuration (for a promotion in place).
fn standby_entries(config: &Config, standbys: Vec<Standby>) -> Result<Vec<StandbyEntry>, Failure> {
    let dirs = rewardpool::host::pool_dirs(config).map_err(Failure::bad_input)?;
    Ok(standbys
        .into_iter()
        .filter_map(|s| {
            let index = config.pools.iter().position(|p| p.name == s.pool())?;
            let dir = dirs.get(index)?.clone();
            Some(StandbyEntry {
                name: s.pool().to_owned(),
                stats: Arc::clone(s.stats()),
                config: config.for_pool(index, dir.clone())?,
                log_dir: dir,
                follower: std::sync::Mutex::new(Some(s)),
                promoted: std::sync::OnceLock::new(),
                promoted_meters: Arc::new(PromotedMeters::new()),
            })
        })
        .collect())
}

/// How long `serve` ships the pools' last groups after they stopped.
const SHIP_DRAIN: Duration = Duration::from_secs(10);

/// Under `ack: replica` a pool's shutdown waits until JetStream stored its last groups: with
/// NATS unreachable that never happens, so after [`SHIP_DRAIN`] the gated pools are fenced
/// (they stop, failing what was not stored; it is in the log and ships at the next start).
/// Dropping the sender ends the watchdog.
fn gate_watchdog(
    config: &Config,
    shippers: &[Shipper],
    pools: &Pools,
) -> std::sync::mpsc::Sender<()> {
    let gated: Vec<Meter> = config
        .pools
        .iter()
        .filter(|p| p.replication.as_ref().is_some_and(|r| r.ack == ReplicaAck::Replica))
        .filter_map(|p| {
            let shipped = shippers.iter().any(|s| s.pool() == p.name);
            let meter = pools.host().pool(&p.name).map(rewardpool::Engine::meter);
            // A pool promoted in place ships from its own shipper.
            let promoted = || {
                pools
                    .primaries()
                    .find(|(_, e)| e.promoted && e.name == p.name)
                    .map(|(_, e)| e.meter.clone())
            };
            if shipped {
                meter
            } else {
                promoted()
            }
        })
        .collect();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    if !gated.is_empty() {
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(SHIP_DRAIN) {
                for meter in &gated {
                    if let Some(journal) = meter.journal_stats() {
                        // Release: pairs with the journal's Acquire in its gate.
                        journal.fenced.store(true, std::sync::atomic::Ordering::Release);
                    }
                }
            }
        });
    }
    done
}

/// Each pool's log directory (`ListCommitments` reads the log), for the pools that keep one.
fn log_dirs(config: &Config) -> Result<Vec<(String, std::path::PathBuf)>, Failure> {
    let dirs = rewardpool::host::pool_dirs(config).map_err(Failure::bad_input)?;
    Ok(config
        .pools
        .iter()
        .zip(dirs)
        .filter(|(pool, _)| pool.wal.durability != rewardpool::Durability::Memory)
        .map(|(pool, dir)| (pool.name.clone(), dir))
        .collect())
}

/// One shipper per pool with a `replication` section.
fn start_shippers(config: &Config, host: &Host) -> Result<Vec<Shipper>, Failure> {
    let dirs = rewardpool::host::pool_dirs(config).map_err(Failure::bad_input)?;
    let mut shippers = Vec::new();
    for (pool, dir) in config.pools.iter().zip(dirs) {
        let (Some(replication), Some(engine)) = (&pool.replication, host.pool(&pool.name)) else {
            continue;
        };
        let shipper = Shipper::start(&pool.name, dir, engine.meter(), replication.clone())
            .map_err(|e| Failure::failed(anyhow!(e).context("cannot start a shipper thread")))?;
        shippers.push(shipper);
    }
    Ok(shippers)
}

/// Restricts this thread, and so every thread it starts from now on (the async runtime's,
/// the gateways), to the cores no engine's core thread is pinned to, when there are such
/// cores. A core thread spins for a while between requests: a gateway or async thread woken
/// onto its core waited for that spin to end (~0.8 ms a request after an idle moment, seen
/// in a syscall trace). With no free core (as many pools as cores) nothing changes.
fn keep_off_engine_cores(host: &Host) {
    let engines: Vec<usize> = host.engines().filter_map(|(_, engine)| engine.core_id()).collect();
    let free: Vec<usize> = rewardpool::engine::available_cores()
        .iter()
        .copied()
        .filter(|c| !engines.contains(c))
        .collect();
    if free.is_empty() || engines.is_empty() {
        return;
    }
    if let Err(e) = rewardpool::engine::restrict_current_to(&free) {
        eprintln!("rewardpool: the service threads may share the engines' cores: {e}");
    }
}

/// `serve`'s flags, checked.
fn settings(args: &ServeArgs) -> Result<Settings, Failure> {
    if !(1..=16).contains(&args.gateways) {
        return Err(Failure::bad_input(anyhow!("--gateways {}: 1 to 16", args.gateways)));
    }
    if !(1..=65_536).contains(&args.stream_window) {
        return Err(Failure::bad_input(anyhow!(
            "--stream-window {}: 1 to 65536",
            args.stream_window
        )));
    }
    Ok(Settings {
        gateways: args.gateways,
        queue_len: QUEUE_LEN,
        stream_window: args.stream_window,
        queue_timeout: Duration::from_millis(args.queue_timeout_ms),
    })
}

/// Where to listen: `--listen`, else `grpc.listen_address` when `grpc.enabled`. An empty
/// host (Go's `":50051"`) means every interface.
fn listen_address(config: &Config, args: &ServeArgs) -> Result<String, Failure> {
    let address = match &args.listen {
        Some(address) => address.clone(),
        None if config.grpc.enabled => config.grpc.listen_address.clone(),
        None => {
            return Err(Failure::bad_input(anyhow!(
                "grpc.enabled is false in the configuration: set grpc.enabled: true (and \
                 grpc.listen_address), or pass --listen ADDR"
            )))
        }
    };
    Ok(every_interface(&address))
}

/// Go's `":50051"` form (an empty host) as every interface.
fn every_interface(address: &str) -> String {
    match address.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => address.to_owned(),
    }
}

/// Serves until a stop signal, then until every stream has answered what it holds.
async fn run(
    pools: Arc<Pools>,
    listen: &str,
    metrics_listen: Option<(String, Shipping, Following)>,
    drain: Duration,
    json: bool,
) -> CmdResult {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))
        .map_err(Failure::bad_input)?;
    let local = listener.local_addr().map_err(|e| Failure::failed(anyhow!(e)))?;
    let metrics = match metrics_listen {
        Some((address, shipping, following)) => {
            let listener = tokio::net::TcpListener::bind(&address)
                .await
                .with_context(|| format!("cannot listen on {address} (the metrics server)"))
                .map_err(Failure::bad_input)?;
            let local = listener.local_addr().map_err(|e| Failure::failed(anyhow!(e)))?;
            let view = MetricsView::of_host(pools.host(), Arc::clone(pools.grpc_calls()))
                .with_shipping(shipping)
                .with_following(following);
            Some((listener, local, view))
        }
        None => None,
    };
    let (reporter, health_service) = tonic_health::server::health_reporter();
    health::init(&reporter, &pools).await;
    // Reflection v1, and v1alpha for the clients (older grpcurl) that only know that one.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| Failure::failed(anyhow!(e).context("server reflection")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| Failure::failed(anyhow!(e).context("server reflection")))?;
    say_listening(&pools, local, metrics.as_ref().map(|m| m.1), json)?;
    let monitor = tokio::spawn(health::monitor(reporter, Arc::clone(&pools)));
    // The metrics server answers until the process ends (scrapes during the drain see it);
    // `/readyz` turns 503 when the stop begins.
    let metrics_view = metrics.as_ref().map(|m| m.2.clone());
    let (metrics_end, metrics_ended) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = metrics.map(|(listener, _, view)| {
        tokio::spawn(http::serve_http(listener, view, async move {
            let _ = metrics_ended.await;
        }))
    });

    let signalled = {
        let pools = Arc::clone(&pools);
        async move {
            crate::signals::stop_signal().await;
            eprintln!("rewardpool: stopping: answering the requests in flight");
            if let Some(view) = &metrics_view {
                view.stop_serving();
            }
            pools.begin_stop();
        }
    };
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(RewardPoolServiceServer::new(Api::new(Arc::clone(&pools))))
        .serve_with_incoming_shutdown(incoming, signalled);
    let drained = {
        let pools = Arc::clone(&pools);
        async move {
            Pools::stopping(pools.stop_signal()).await;
            tokio::select! {
                // Every call of ours is answered: the connections left (a health watcher's
                // stream never ends by itself) get GRACE to close, then are cut.
                () = pools.calls_finished() => tokio::time::sleep(GRACE).await,
                () = tokio::time::sleep(drain) => {
                    eprintln!("rewardpool: calls still open after {drain:?}: stopping anyway");
                }
            }
        }
    };
    let result = tokio::select! {
        served = server => served.map_err(|e| Failure::failed(anyhow!(e).context("serving gRPC"))),
        () = drained => Ok(()),
    };
    let _ = monitor.await;
    let _ = metrics_end.send(());
    if let Some(server) = metrics_server {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("rewardpool: the metrics server failed: {e}"),
            Err(e) => eprintln!("rewardpool: the metrics server's task failed: {e}"),
        }
    }
    result
}

/// The bound address on stdout, one line (tests and scripts read it to find the port).
fn say_listening(
    pools: &Pools,
    local: std::net::SocketAddr,
    metrics: Option<std::net::SocketAddr>,
    json: bool,
) -> CmdResult {
    let mut out = std::io::stdout().lock();
    let line = if json {
        let primaries = pools.primaries().map(|(_, e)| e.name.as_str());
        let names: Vec<&str> =
            primaries.chain(pools.following().map(|(_, e)| e.name.as_str())).collect();
        serde_json::json!({
            "listening": local.to_string(),
            "metrics": metrics.map(|m| m.to_string()),
            "pools": names,
        })
        .to_string()
    } else {
        match metrics {
            Some(metrics) => format!("listening on {local}\nmetrics on {metrics}"),
            None => format!("listening on {local}"),
        }
    };
    writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| Failure::failed(anyhow!(e)))
}

/// Stops the gateways and shuts every pool down (final snapshot, segments closed), those
/// promoted in place too; returns the outcome, the promoted pools' shippers and the
/// followers still running.
fn stop_pools(pools: Arc<Pools>) -> (CmdResult, Vec<Shipper>, Vec<Standby>) {
    let pools = match Arc::try_unwrap(pools) {
        Ok(pools) => pools,
        Err(_) => {
            let failed = Failure::failed(anyhow!(
                "a request task outlived the server: the pools were not shut down cleanly \
                 (the log is intact; the next start recovers it)"
            ));
            return (Err(failed), Vec::new(), Vec::new());
        }
    };
    let Parts { host, promoted, followers } = pools.into_parts();
    let mut shippers = Vec::new();
    let mut results = host.shutdown();
    for p in promoted {
        shippers.extend(p.shipper.into_inner().unwrap_or_else(|e| e.into_inner()));
        drop(p.entry);
        results.extend(p.host.shutdown());
    }
    (shut_down(results), shippers, followers)
}

/// Each pool's shutdown, said on stderr; the failures as one error.
fn shut_down(
    results: Vec<(String, Result<rewardpool::PoolState, rewardpool::EngineError>)>,
) -> CmdResult {
    let mut failed = Vec::new();
    for (name, result) in results {
        match result {
            Ok(state) => {
                eprintln!(
                    "rewardpool: pool {name:?} stopped at request id {}",
                    state.last_request_id.0
                );
            }
            Err(e) => failed.push(format!("pool {name:?}: {e}")),
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(Failure::failed(anyhow!("{}", failed.join("; "))))
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::args::{Cli, Command};

    fn serve_args(args: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from([&["rewardpool", "serve"], args].concat()).unwrap();
        match cli.command {
            Command::Serve(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn listen_address_from_flag_or_enabled_config() {
        let mut config = Config::default();
        assert!(!config.grpc.enabled);
        // Disabled and no --listen: refused.
        assert!(listen_address(&config, &serve_args(&[])).is_err());
        let flag = serve_args(&["--listen", "127.0.0.1:0"]);
        assert_eq!(listen_address(&config, &flag).unwrap(), "127.0.0.1:0");
        config.grpc.enabled = true;
        config.grpc.listen_address = ":50051".into();
        // The Go form's empty host: every interface.
        assert_eq!(listen_address(&config, &serve_args(&[])).unwrap(), "0.0.0.0:50051");
        assert_eq!(listen_address(&config, &flag).unwrap(), "127.0.0.1:0");
    }

    #[test]
    fn settings_are_bounded() {
        assert!(settings(&serve_args(&["--gateways", "0"])).is_err());
        assert!(settings(&serve_args(&["--stream-window", "0"])).is_err());
        let s = settings(&serve_args(&["--gateways", "2", "--queue-timeout-ms", "7"])).unwrap();
        assert_eq!((s.gateways, s.queue_timeout), (2, Duration::from_millis(7)));
    }
}
