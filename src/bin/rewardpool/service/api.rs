//! The `RewardPoolService` handlers. `Draw` hands its stream to `draw.rs` (which feeds the
//! gateways); the control calls (`GetState`, `Update`) run the engine's blocking control
//! path on tokio's blocking pool; `ListPools` and `Watch` read the pools' meters, which never
//! stop a core thread.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rewardpool::pool::available_weight;
use rewardpool::{Engine, ItemState};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::draw::DrawStream;
use super::metrics::Method;
use super::pools::{PoolEntry, Pools, StandbyEntry, Target};
use super::proto::reward_pool_service_server::RewardPoolService;
use super::proto::{
    DrawRequest, GetStateRequest, GetStateResponse, Histogram, ListCommitmentsRequest,
    ListCommitmentsResponse, ListPoolsRequest, ListPoolsResponse, PoolInfo, PoolMetrics,
    PromoteRequest, PromoteResponse, RewardItem, SeedCommitment, UpdateRequest, UpdateResponse,
    WatchRequest, WatchResponse,
};
use super::{status, validate};

/// `Watch` intervals: 0 means this; shorter ones are raised to `WATCH_MIN`.
const WATCH_DEFAULT: Duration = Duration::from_secs(1);
const WATCH_MIN: Duration = Duration::from_millis(10);

/// The service, as tonic serves it.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    pools: Arc<Pools>,
}

impl Api {
    /// Handlers over `pools`.
    pub(crate) fn new(pools: Arc<Pools>) -> Api {
        Api { pools }
    }

    /// Counts a unary call (or a stream refused at its start) with its status.
    fn counted<T>(&self, method: Method, result: Result<T, Status>) -> Result<T, Status> {
        let code = result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        self.pools.grpc_calls().record(method, code);
        result
    }

    /// `UNAVAILABLE` once the server is stopping.
    fn check_running(&self) -> Result<(), Status> {
        if self.pools.is_stopping() {
            return Err(status::stopping());
        }
        Ok(())
    }

    /// Runs `f` on the pool `name` resolves to, on tokio's blocking pool (the engine's
    /// control path blocks until the core thread answers).
    async fn control<T: Send + 'static>(
        &self,
        name: String,
        f: impl FnOnce(&PoolEntry, &Engine) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        self.check_running()?;
        let pools = Arc::clone(&self.pools);
        let call = Pools::call(&pools);
        let task = tokio::task::spawn_blocking(move || {
            let _call = call;
            let entry = pools.resolve(&name)?;
            let engine = pools.engine(entry)?;
            f(entry, engine)
        });
        task.await.map_err(|e| Status::internal(format!("the request's task failed: {e}")))?
    }
}

#[tonic::async_trait]
impl RewardPoolService for Api {
    async fn get_state(
        &self,
        request: Request<GetStateRequest>,
    ) -> Result<Response<GetStateResponse>, Status> {
        let result = async {
            let name = request.into_inner().pool;
            self.check_running()?;
            if let Target::Standby(index) = self.pools.resolve_any(&name)? {
                // The replica's state as of its last checkpoint (durable in its log).
                let entry = &self.pools.standbys()[index];
                let (items, last_request_id) = entry.stats.items();
                return Ok(Response::new(GetStateResponse {
                    items: reward_items(&items),
                    last_request_id,
                    pool: entry.name.clone(),
                }));
            }
            let response = self
                .control(name, |entry, engine| {
                    let items =
                        engine.items().map_err(|e| status::engine_error(&entry.name, &e))?;
                    Ok(GetStateResponse {
                        items: reward_items(&items),
                        // The newest request id in a committed group (the state may run ahead).
                        last_request_id: entry.meter.read().last_request_id.0,
                        pool: entry.name.clone(),
                    })
                })
                .await?;
            Ok(Response::new(response))
        }
        .await;
        self.counted(Method::GetState, result)
    }

    async fn list_commitments(
        &self,
        request: Request<ListCommitmentsRequest>,
    ) -> Result<Response<ListCommitmentsResponse>, Status> {
        let result = async {
            let name = request.into_inner().pool;
            self.check_running()?;
            if let Target::Standby(index) = self.pools.resolve_any(&name)? {
                // The replica's log, read as a primary's is (on the blocking pool).
                let pools = Arc::clone(&self.pools);
                let call = Pools::call(&pools);
                let task = tokio::task::spawn_blocking(move || {
                    let _call = call;
                    let entry = &pools.standbys()[index];
                    let commitments = seed_commitments(&entry.name, &entry.log_dir)?;
                    Ok::<_, Status>(ListCommitmentsResponse {
                        pool: entry.name.clone(),
                        commitments,
                    })
                });
                let response = task
                    .await
                    .map_err(|e| Status::internal(format!("the request's task failed: {e}")))??;
                return Ok(Response::new(response));
            }
            // On the blocking pool: it reads the log's files (the engine is not asked).
            let response = self
                .control(name, |entry, _engine| {
                    let commitments = match &entry.log_dir {
                        None => Vec::new(),
                        Some(dir) => seed_commitments(&entry.name, dir)?,
                    };
                    Ok(ListCommitmentsResponse { pool: entry.name.clone(), commitments })
                })
                .await?;
            Ok(Response::new(response))
        }
        .await;
        self.counted(Method::ListCommitments, result)
    }

    type DrawStream = DrawStream;

    async fn draw(
        &self,
        request: Request<Streaming<DrawRequest>>,
    ) -> Result<Response<DrawStream>, Status> {
        // A stream counts once, when it ends (`DrawStream`); here only a refused start.
        if let Err(status) = self.check_running() {
            return self.counted(Method::Draw, Err(status));
        }
        Ok(Response::new(DrawStream::new(Arc::clone(&self.pools), request.into_inner())))
    }

    async fn update(
        &self,
        request: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        let result = async {
            let request = request.into_inner();
            let (quantity, weight) =
                validate::update(&request).map_err(|e| status::invalid(e.0))?;
            let UpdateRequest { pool, item_id, .. } = request;
            let item = self
                .control(pool, move |entry, engine| {
                    let failed = |e| status::engine_error(&entry.name, &e);
                    let updated = engine.update(&item_id, quantity, weight).map_err(failed)?;
                    // The item with its odds among the pool's items now.
                    let items = engine.items().map_err(failed)?;
                    let mut item = reward_item(&updated, available_weight(&items));
                    if let Some(now) =
                        reward_items(&items).into_iter().find(|i| i.item_id == item_id)
                    {
                        item = now;
                    }
                    Ok(item)
                })
                .await?;
            Ok(Response::new(UpdateResponse { item: Some(item) }))
        }
        .await;
        self.counted(Method::Update, result)
    }

    async fn list_pools(
        &self,
        _request: Request<ListPoolsRequest>,
    ) -> Result<Response<ListPoolsResponse>, Status> {
        let result = async {
            self.check_running()?;
            let pools = self
                .pools
                .primaries()
                .map(|(_, entry)| {
                    let mut ids = entry.ids.clone();
                    ids.refresh();
                    let error = self
                        .pools
                        .engine(entry)
                        .ok()
                        .and_then(Engine::failure)
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    PoolInfo {
                        name: entry.name.clone(),
                        state: self.pools.phase(entry).as_str().to_owned(),
                        last_request_id: entry.meter.read().last_request_id.0,
                        items: u32::try_from(ids.len()).unwrap_or(u32::MAX),
                        error,
                        max_count: entry.pull_max,
                        role: ROLE_PRIMARY.to_owned(),
                    }
                })
                .chain(self.pools.following().map(|(_, entry)| {
                    let (items, last_request_id) = entry.stats.items();
                    PoolInfo {
                        name: entry.name.clone(),
                        state: self.pools.standby_phase(entry).as_str().to_owned(),
                        last_request_id,
                        items: u32::try_from(items.len()).unwrap_or(u32::MAX),
                        error: entry.stats.error(),
                        max_count: 0,
                        role: ROLE_STANDBY.to_owned(),
                    }
                }))
                .collect();
            Ok(Response::new(ListPoolsResponse { pools }))
        }
        .await;
        self.counted(Method::ListPools, result)
    }

    async fn promote(
        &self,
        request: Request<PromoteRequest>,
    ) -> Result<Response<PromoteResponse>, Status> {
        let result = async {
            let name = request.into_inner().pool;
            self.check_running()?;
            let index = match self.pools.resolve_any(&name)? {
                Target::Standby(index) => index,
                Target::Primary(index) => {
                    let pool = self.pools.entry(index).map_or("?", |e| e.name.as_str());
                    return Err(Status::failed_precondition(format!(
                        "pool {pool:?} is a primary on this server already: nothing to promote"
                    )));
                }
            };
            // The take-over blocks (file I/O, its own NATS runtime): on the blocking pool.
            let pools = Arc::clone(&self.pools);
            let call = Pools::call(&pools);
            let task = tokio::task::spawn_blocking(move || {
                let _call = call;
                super::standby::promote(&pools, index)
            });
            let response = task
                .await
                .map_err(|e| Status::internal(format!("the request's task failed: {e}")))??;
            Ok(Response::new(response))
        }
        .await;
        self.counted(Method::Promote, result)
    }

    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // A stream counts once, when it ends (the `watch` task); here only a refused start.
        let started = self.check_running().and_then(|()| {
            let pool = &request.get_ref().pool;
            if pool.is_empty() {
                Ok(None)
            } else {
                // By name: a standby promoted meanwhile stays in the stream.
                self.pools.resolve_any(pool).map(|_| Some(pool.clone()))
            }
        });
        let only = match started {
            Ok(only) => only,
            Err(status) => return self.counted(Method::Watch, Err(status)),
        };
        let WatchRequest { interval_ms, .. } = request.into_inner();
        let interval = match interval_ms {
            0 => WATCH_DEFAULT,
            ms => Duration::from_millis(u64::from(ms)).max(WATCH_MIN),
        };
        let (tx, rx) = mpsc::channel(4);
        let call = Pools::call(&self.pools);
        let pools = Arc::clone(&self.pools);
        tokio::spawn(async move {
            let _call = call;
            watch(pools, only, interval, tx).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The `Watch` task: one reading per `interval` until the client goes away or the server
/// stops (then the stream ends with `UNAVAILABLE`).
async fn watch(
    pools: Arc<Pools>,
    only: Option<String>,
    interval: Duration,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
) {
    let stop = Pools::stopping(pools.stop_signal());
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = &mut stop => {
                let _ = tx.send(Err(status::stopping())).await;
                pools.grpc_calls().record(Method::Watch, tonic::Code::Unavailable);
                return;
            }
        }
        if tx.send(Ok(reading(&pools, only.as_deref()))).await.is_err() {
            // The client went away.
            pools.grpc_calls().record(Method::Watch, tonic::Code::Cancelled);
            return;
        }
    }
}

/// A histogram reading as `Watch` carries it (the unbounded last bucket's bound is
/// `u64::MAX`).
fn histogram(h: &rewardpool::engine::Histogram) -> Histogram {
    let (le, cumulative) = h.cumulative().map(|(le, n)| (le.unwrap_or(u64::MAX), n)).unzip();
    Histogram { le, cumulative, count: h.count(), sum: h.sum() }
}

/// One `WatchResponse`: every pool's counters (or pool `only`'s), the standbys' after the
/// primaries'.
fn reading(pools: &Pools, only: Option<&str>) -> WatchResponse {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let standbys = pools
        .following()
        .filter(|(_, entry)| only.is_none_or(|only| only == entry.name))
        .map(|(_, entry)| standby_metrics(entry, pools.standby_phase(entry).as_str()));
    let metrics = pools
        .primaries()
        .filter(|(_, entry)| only.is_none_or(|only| only == entry.name))
        .map(|(_, entry)| {
            let m = entry.meter.read();
            let error = m
                .failure
                .and_then(|_| pools.engine(entry).ok().and_then(Engine::failure))
                .map(|e| e.to_string())
                .unwrap_or_default();
            pool_metrics(&entry.name, pools.phase(entry).as_str(), &m, error)
        })
        .chain(standbys)
        .collect();
    WatchResponse { unix_ms, pools: metrics }
}

/// `PoolInfo.role` and `PoolMetrics.role` of a pool this server serves.
pub(crate) const ROLE_PRIMARY: &str = "primary";
/// `PoolInfo.role` and `PoolMetrics.role` of a pool this server follows.
pub(crate) const ROLE_STANDBY: &str = "standby";

/// A standby pool's reading: the last request id applied and its lag; the engine's
/// counters stay 0 (it has no engine).
fn standby_metrics(entry: &StandbyEntry, state: &str) -> PoolMetrics {
    // Relaxed: independent readings of the follower's counters.
    let read = |v: &std::sync::atomic::AtomicU64| v.load(std::sync::atomic::Ordering::Relaxed);
    let stats = &entry.stats;
    PoolMetrics {
        pool: entry.name.clone(),
        state: state.to_owned(),
        role: ROLE_STANDBY.to_owned(),
        last_request_id: read(&stats.applied_request_id),
        error: stats.error(),
        replica_applied_sequence: read(&stats.applied_sequence),
        replica_lag_messages: read(&stats.lag_messages),
        replica_lag_draws: read(&stats.lag_draws),
        replica_lag_seconds: read(&stats.lag_seconds),
        ..PoolMetrics::default()
    }
}

/// One pool's counters as `Watch` carries them: `state` is its phase's word, `error` why
/// it failed (empty while it runs). The dashboard's standalone mode builds the same message
/// from an engine it opened itself.
pub(crate) fn pool_metrics(
    name: &str,
    state: &str,
    m: &rewardpool::engine::Metrics,
    error: String,
) -> PoolMetrics {
    let journal = m.journal.unwrap_or_default();
    let seed = journal.seed.unwrap_or_default();
    PoolMetrics {
        pool: name.to_owned(),
        state: state.to_owned(),
        last_request_id: m.last_request_id.0,
        draws_committed: m.draws_committed,
        draws_acknowledged: m.draws_acknowledged,
        groups_committed: m.groups_committed,
        clients: m.clients,
        log_bytes: journal.bytes_appended,
        syncs: journal.syncs,
        empty_draws: m.empty_draws,
        pulls: m.pulls,
        replayed: m.replayed,
        key_conflicts: m.key_conflicts,
        ring_waiting: m.ring_waiting,
        in_flight: m.in_flight,
        group_size: Some(histogram(&m.group_size)),
        commit_latency_ns: Some(histogram(&m.commit_latency)),
        sync_ns_total: journal.sync_ns_total,
        error,
        commitment: journal
            .seed
            .map(|s| rewardpool::inspect::hex(&s.commitment))
            .unwrap_or_default(),
        commitment_segment: seed.segment,
        commitment_first_request_id: seed.first_request_id,
        role: ROLE_PRIMARY.to_owned(),
        ..PoolMetrics::default()
    }
}

/// The pool's items as the Go contract carries them, with their effective odds
/// ([`rewardpool::pool::available_weight`] is the denominator).
pub(crate) fn reward_items(items: &[ItemState]) -> Vec<RewardItem> {
    let available = available_weight(items);
    items.iter().map(|item| reward_item(item, available)).collect()
}

/// One item: quantity (-1 unlimited, saturated at `i32::MAX`), weight in `probability`,
/// odds = its effective probability ([`ItemState::effective_probability`]: weight /
/// `available` when it can be drawn, else 0).
pub(crate) fn reward_item(item: &ItemState, available: u64) -> RewardItem {
    RewardItem {
        item_id: item.id.clone(),
        quantity: i32::try_from(item.quantity.to_i64()).unwrap_or(i32::MAX),
        probability: i64::from(item.weight),
        odds: item.effective_probability(available),
    }
}

/// The seed runs of pool `pool`'s log in `dir` (`rewardpool::inspect::commitments`), read
/// while the engine appends: the newest run is the pending one.
fn seed_commitments(pool: &str, dir: &std::path::Path) -> Result<Vec<SeedCommitment>, Status> {
    use rewardpool::inspect::{hex, RunStatus};
    use rewardpool::recovery::RecoveryError;
    let storage = rewardpool::storage::OsStorage::existing(dir).map_err(|e| {
        Status::internal(format!("pool {pool:?}: cannot open its log {}: {e}", dir.display()))
    })?;
    let runs = rewardpool::inspect::commitments(&storage, pool).map_err(|e| match e {
        RecoveryError::Damaged { .. } => Status::data_loss(format!("pool {pool:?}: {e}")),
        _ => Status::internal(format!("pool {pool:?}: {e}")),
    })?;
    Ok(runs
        .into_iter()
        .map(|run| {
            let (status, seed) = match &run.status {
                RunStatus::Revealed { seed, .. } => ("revealed", hex(seed)),
                RunStatus::Pending => ("pending", String::new()),
                RunStatus::Unrevealed => ("unrevealed", String::new()),
            };
            SeedCommitment {
                segment: run.committed_at.segment,
                first_request_id: run.first_request_id,
                draws: run.draws,
                commitment: hex(&run.commitment),
                seed,
                status: status.to_owned(),
                commitment_segment: run.commitment_segment,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewardpool::Quantity;

    #[test]
    fn odds_count_only_items_in_stock() {
        let item = |id: &str, quantity, weight| ItemState { id: id.into(), quantity, weight };
        let items = reward_items(&[
            item("a", Quantity::Finite(0), 10),
            item("b", Quantity::Unlimited, 30),
            item("c", Quantity::Finite(5), 10),
        ]);
        assert_eq!(items[0].odds, 0.0);
        assert!((items[1].odds - 0.75).abs() < 1e-12, "{items:?}");
        assert!((items[2].odds - 0.25).abs() < 1e-12, "{items:?}");
        assert_eq!(items[1].quantity, -1);
        assert_eq!(items[1].probability, 30);
    }
}
