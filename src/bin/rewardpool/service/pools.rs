//! What every RPC handler shares: the host (pool name → engine), each pool's gateway and
//! meter, the standby pools (`serve --standby`; a promoted one is served from its own
//! one-pool host), the service's settings, and whether it is stopping. Pool names are
//! resolved here once per request (a few pools: a scan beats a map), never per draw.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rewardpool::host::PoolIndex;
use rewardpool::{Engine, EngineError, Host, ItemIds, Meter};
use tokio::sync::{watch, Notify};
use tonic::Status;

use super::gateway::Gateway;
use super::metrics::GrpcCalls;
use super::metrics::PromotedMeters;
use super::{status, validate};
use crate::replica::follow::{FollowStats, Standby};
use crate::replica::ship::Shipper;

/// How the service runs (from `serve`'s flags).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    /// Gateway threads per pool.
    pub(crate) gateways: usize,
    /// Jobs a gateway's queue holds.
    pub(crate) queue_len: usize,
    /// Requests one Draw stream may have in flight.
    pub(crate) stream_window: usize,
    /// How long a request waits for room in a full gateway queue.
    pub(crate) queue_timeout: Duration,
}

/// One pool as the service sees it.
#[derive(Debug)]
pub(crate) struct PoolEntry {
    /// Its name in the configuration.
    pub(crate) name: String,
    /// Its position in the host.
    pub(crate) index: PoolIndex,
    /// Where draws go.
    pub(crate) gateway: Gateway,
    /// Its counters, read without stopping the core.
    pub(crate) meter: Meter,
    /// Item ids by index (clone one per stream: lookups take `&mut`).
    pub(crate) ids: ItemIds,
    /// The longest pull its clients accept (the documented maximum `count`).
    pub(crate) pull_max: u32,
    /// Its log's directory (`None`: the pool keeps no log, durability `memory`).
    pub(crate) log_dir: Option<std::path::PathBuf>,
    /// Promoted in place: its engine is in its [`Promoted::host`], not the server's host.
    pub(crate) promoted: bool,
}

/// A pool this server follows as a standby (`serve --standby`): no engine, a follower
/// replaying its stream into `log_dir` — until it is promoted in place (`Promote`), then
/// served as a primary from `promoted`.
#[derive(Debug)]
pub(crate) struct StandbyEntry {
    /// Its name in the configuration.
    pub(crate) name: String,
    /// The follower's lag and state, and the replica's items.
    pub(crate) stats: Arc<FollowStats>,
    /// Its log's directory (the replica's).
    pub(crate) log_dir: std::path::PathBuf,
    /// The pool's own configuration ([`rewardpool::config::Config::for_pool`]): what a
    /// promotion opens.
    pub(crate) config: rewardpool::config::Config,
    /// Its follower, until a promotion stops it. The lock is held for a whole promotion
    /// (one at a time per pool).
    pub(crate) follower: std::sync::Mutex<Option<Standby>>,
    /// Set once by a promotion in place: the pool as a primary.
    pub(crate) promoted: std::sync::OnceLock<Promoted>,
    /// The promoted pool's meter and shipper counters, for the metrics server.
    pub(crate) promoted_meters: Arc<PromotedMeters>,
}

/// A standby pool promoted in place: served as a primary from then on.
#[derive(Debug)]
pub(crate) struct Promoted {
    /// As a primary's (its `index` is in `host`).
    pub(crate) entry: PoolEntry,
    /// Its engine: a host of this one pool.
    pub(crate) host: Host,
    /// Its shipper, until the server stops.
    pub(crate) shipper: std::sync::Mutex<Option<Shipper>>,
}

/// What a shut-down service leaves to stop: the host, the pools promoted in place, and the
/// standbys' followers still running.
pub(crate) struct Parts {
    pub(crate) host: Host,
    pub(crate) promoted: Vec<Promoted>,
    pub(crate) followers: Vec<Standby>,
}

/// The pool a request names, by role: a position for [`Pools::entry`] or in
/// [`Pools::standbys`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A pool this server serves.
    Primary(usize),
    /// A pool this server follows.
    Standby(usize),
}

/// A pool's state as `ListPools`, `Watch` and health report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoolPhase {
    /// Serving.
    Running,
    /// Its journal failed: it serves nothing until a restart recovers it.
    Failed,
    /// The server (or the engine) is stopping.
    Stopping,
}

impl PoolPhase {
    /// The word `PoolInfo.state` and `PoolMetrics.state` carry.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PoolPhase::Running => "running",
            PoolPhase::Failed => "failed",
            PoolPhase::Stopping => "stopping",
        }
    }
}

/// The service's shared state.
#[derive(Debug)]
pub(crate) struct Pools {
    host: Host,
    entries: Vec<PoolEntry>,
    settings: Settings,
    stopping: AtomicBool,
    stop: watch::Sender<bool>,
    /// Our RPCs in progress ([`Call`]s): the shutdown waits for them, not for every
    /// connection (a health watcher's stream never ends by itself).
    calls: AtomicUsize,
    calls_done: Notify,
    /// gRPC calls by method and status code (the metrics server exports them).
    grpc_calls: Arc<GrpcCalls>,
    /// The pools this server follows (`serve --standby`).
    standbys: Vec<StandbyEntry>,
}

/// One RPC of ours in progress (a Draw stream, a Watch, a control call); dropping it ends
/// the call.
#[derive(Debug)]
pub(crate) struct Call {
    pools: Arc<Pools>,
}

impl Drop for Call {
    fn drop(&mut self) {
        // AcqRel: the last call's end is seen by `calls_finished`'s Acquire load.
        if self.pools.calls.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.pools.calls_done.notify_waiters();
        }
    }
}

impl Pools {
    /// Starts each pool's gateway threads.
    ///
    /// # Errors
    /// A pool refuses a client (then the gateways already started stop; the host is
    /// returned so the caller can shut it down).
    /// `log_dirs`: each pool's log directory by name (pools without a log are absent);
    /// `standbys`: the pools this server follows instead (not in `host`).
    pub(crate) fn start(
        host: Host,
        settings: Settings,
        log_dirs: &[(String, std::path::PathBuf)],
        standbys: Vec<StandbyEntry>,
    ) -> Result<Pools, (Host, String)> {
        let mut entries = Vec::new();
        let mut refused = None;
        for (i, (name, engine)) in host.engines().enumerate() {
            let gateway = match Gateway::start(name, engine, settings.gateways, settings.queue_len)
            {
                Ok(gateway) => gateway,
                Err(e) => {
                    refused = Some(format!("pool {name:?}: cannot start its gateway: {e}"));
                    break;
                }
            };
            let pull_max = gateway.pull_max();
            entries.push(PoolEntry {
                name: name.to_owned(),
                index: PoolIndex(i),
                gateway,
                meter: engine.meter(),
                ids: engine.item_ids(),
                pull_max,
                log_dir: log_dirs.iter().find(|(n, _)| n == name).map(|(_, dir)| dir.clone()),
                promoted: false,
            });
        }
        if let Some(why) = refused {
            drop(entries);
            return Err((host, why));
        }
        let (stop, _) = watch::channel(false);
        Ok(Pools {
            host,
            entries,
            settings,
            stopping: AtomicBool::new(false),
            stop,
            calls: AtomicUsize::new(0),
            calls_done: Notify::new(),
            grpc_calls: Arc::new(GrpcCalls::default()),
            standbys,
        })
    }

    /// The pools this server follows or followed as a standby (promoted ones too), in
    /// configuration order.
    pub(crate) fn standbys(&self) -> &[StandbyEntry] {
        &self.standbys
    }

    /// The standby pools not promoted, with their positions in [`Pools::standbys`].
    pub(crate) fn following(&self) -> impl Iterator<Item = (usize, &StandbyEntry)> {
        self.standbys.iter().enumerate().filter(|(_, s)| s.promoted.get().is_none())
    }

    /// Every pool served as a primary (those promoted in place after the others), with its
    /// position ([`Pools::entry`]).
    pub(crate) fn primaries(&self) -> impl Iterator<Item = (usize, &PoolEntry)> {
        let promoted = self.standbys.iter().enumerate().filter_map(|(i, standby)| {
            standby.promoted.get().map(|p| (self.entries.len() + i, &p.entry))
        });
        self.entries.iter().enumerate().chain(promoted)
    }

    /// Positions a primary may have ([`Pools::entry`]): the pools served from the start,
    /// then one per standby (served once promoted).
    pub(crate) fn slots(&self) -> usize {
        self.entries.len() + self.standbys.len()
    }

    /// The primary at `index` ([`Pools::resolve_index`] gives them; a primary stays one).
    pub(crate) fn entry(&self, index: usize) -> Option<&PoolEntry> {
        match index.checked_sub(self.entries.len()) {
            None => self.entries.get(index),
            Some(i) => self.standbys.get(i)?.promoted.get().map(|p| &p.entry),
        }
    }

    /// The host (for the metrics server's view of every pool).
    pub(crate) fn host(&self) -> &Host {
        &self.host
    }

    /// gRPC calls by method and status code.
    pub(crate) fn grpc_calls(&self) -> &Arc<GrpcCalls> {
        &self.grpc_calls
    }

    /// The settings.
    pub(crate) fn settings(&self) -> Settings {
        self.settings
    }

    /// The pool a request names: `name`, or the only pool when `name` is empty.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT`: an unknown pool, or none named when there are several (both
    /// list the pools).
    pub(crate) fn resolve(&self, name: &str) -> Result<&PoolEntry, Status> {
        let index = self.resolve_index(name)?;
        self.entry(index).ok_or_else(|| Status::internal(format!("no pool at {index}")))
    }

    /// [`Pools::resolve`], as a position for [`Pools::entry`].
    ///
    /// # Errors
    /// As [`Pools::resolve`]; `FAILED_PRECONDITION` for a pool this server follows as a
    /// standby ([`status::NotPrimary`]).
    pub(crate) fn resolve_index(&self, name: &str) -> Result<usize, Status> {
        match self.resolve_any(name)? {
            Target::Primary(index) => Ok(index),
            Target::Standby(index) => Err(status::not_primary(&status::NotPrimary {
                pool: self.standbys[index].name.clone(),
            })),
        }
    }

    /// The pool `name` names (or the only pool when `name` is empty), served or followed.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT`: an unknown pool, or none named when there are several.
    pub(crate) fn resolve_any(&self, name: &str) -> Result<Target, Status> {
        let primaries = self.entries.iter().map(|e| e.name.as_str());
        let standbys = self.standbys.iter().map(|e| e.name.as_str());
        let index =
            validate::pool(primaries.chain(standbys), name).map_err(|e| status::invalid(e.0))?;
        Ok(match index.checked_sub(self.entries.len()) {
            None => Target::Primary(index),
            Some(i) => match self.standbys[i].promoted.get() {
                Some(_) => Target::Primary(index),
                None => Target::Standby(i),
            },
        })
    }

    /// The engine of `entry`'s pool (for the control path: state, update).
    pub(crate) fn engine(&self, entry: &PoolEntry) -> Result<&Engine, Status> {
        let host = if entry.promoted {
            self.standbys
                .iter()
                .find(|s| s.name == entry.name)
                .and_then(|s| s.promoted.get())
                .map(|p| &p.host)
        } else {
            Some(&self.host)
        };
        host.and_then(|host| host.engine(entry.index))
            .ok_or_else(|| status::engine_error(&entry.name, &EngineError::ShuttingDown))
    }

    /// The pool's phase now.
    pub(crate) fn phase(&self, entry: &PoolEntry) -> PoolPhase {
        let metrics = entry.meter.read();
        if metrics.failure.is_some() {
            PoolPhase::Failed
        } else if metrics.stopped || self.is_stopping() {
            PoolPhase::Stopping
        } else {
            PoolPhase::Running
        }
    }

    /// A standby pool's phase now: running while its follower runs (or reconnects),
    /// failed once it stopped for good.
    pub(crate) fn standby_phase(&self, entry: &StandbyEntry) -> PoolPhase {
        // Relaxed: a flag; the error it goes with is read under its own lock.
        if entry.stats.failed.load(Ordering::Relaxed) {
            PoolPhase::Failed
        } else if self.is_stopping() {
            PoolPhase::Stopping
        } else {
            PoolPhase::Running
        }
    }

    /// True once the server stops taking requests.
    pub(crate) fn is_stopping(&self) -> bool {
        // Acquire: pairs with the Release store in `begin_stop`.
        self.stopping.load(Ordering::Acquire)
    }

    /// A receiver that sees `true` once the server stops taking requests.
    pub(crate) fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Resolves once the server stops taking requests (from a [`Pools::stop_signal`]).
    pub(crate) async fn stopping(mut signal: watch::Receiver<bool>) {
        // Err: the sender is gone, which happens only once the service is gone.
        let _ = signal.wait_for(|stopping| *stopping).await;
    }

    /// Stops intake: new RPCs get `UNAVAILABLE`; open streams answer what they hold, then
    /// end with `UNAVAILABLE`.
    pub(crate) fn begin_stop(&self) {
        // Release: handlers' Acquire load in `is_stopping`.
        self.stopping.store(true, Ordering::Release);
        self.stop.send_replace(true);
    }

    /// Counts an RPC in progress until the returned [`Call`] is dropped.
    pub(crate) fn call(pools: &Arc<Pools>) -> Call {
        // Relaxed: a counter; `Call::drop` orders the end.
        pools.calls.fetch_add(1, Ordering::Relaxed);
        Call { pools: Arc::clone(pools) }
    }

    /// Resolves once no RPC of ours is in progress.
    pub(crate) async fn calls_finished(&self) {
        loop {
            let notified = self.calls_done.notified();
            tokio::pin!(notified);
            // Registered before the check: a last call ending in between still wakes it.
            notified.as_mut().enable();
            // Acquire: pairs with the AcqRel decrement in `Call::drop`.
            if self.calls.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Stops every gateway once it has answered what it holds; then returns the hosts (for
    /// `Host::shutdown`), the promoted pools' shippers and the followers still running.
    pub(crate) fn into_parts(self) -> Parts {
        for entry in &self.entries {
            entry.gateway.stop();
        }
        drop(self.entries);
        let mut promoted = Vec::new();
        let mut followers = Vec::new();
        for standby in self.standbys {
            let follower = standby.follower.into_inner().unwrap_or_else(|e| e.into_inner());
            followers.extend(follower);
            if let Some(p) = standby.promoted.into_inner() {
                p.entry.gateway.stop();
                promoted.push(p);
            }
        }
        Parts { host: self.host, promoted, followers }
    }
}
