//! The standard health service (`grpc.health.v1.Health`, tonic-health): what it reports and
//! when it changes.
//!
//! | service name                              | SERVING while                          |
//! |-------------------------------------------|----------------------------------------|
//! | `""` (the server)                         | not stopping, no pool or follower failed |
//! | `rewardpool.RewardPoolService`            | the same                               |
//! | `rewardpool.RewardPoolService/<pool>`     | not stopping and that pool not failed  |
//! |                                           | (never for a standby pool: no draws)   |
//!
//! A failed pool (its journal's I/O failed) makes the server NOT_SERVING too: the host is
//! degraded, and with one pool — the common case — nothing serves. The other pools'
//! names stay SERVING and their streams go on. A monitor task reads the pools' meters (never
//! a core-stopping call) every 200 ms.

use std::sync::Arc;
use std::time::Duration;

use tonic::server::NamedService;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use super::pools::{PoolPhase, Pools};
use super::proto::reward_pool_service_server::RewardPoolServiceServer;

/// How often the monitor reads the pools' meters.
const EVERY: Duration = Duration::from_millis(200);

/// The service name of pool `pool` in the health service.
pub(crate) fn pool_service_name(pool: &str) -> String {
    format!("{}/{pool}", service_name())
}

fn service_name() -> &'static str {
    <RewardPoolServiceServer<super::api::Api> as NamedService>::NAME
}

/// Sets every name's status from the pools now; returns whether any pool failed.
async fn report(reporter: &HealthReporter, pools: &Pools) {
    let stopping = pools.is_stopping();
    let mut any_failed = false;
    for (_, entry) in pools.primaries() {
        let phase = pools.phase(entry);
        any_failed |= phase == PoolPhase::Failed;
        let serving = phase == PoolPhase::Running && !stopping;
        reporter.set_service_status(pool_service_name(&entry.name), status(serving)).await;
    }
    for (_, entry) in pools.following() {
        // A standby takes no draws: its name is NOT_SERVING; a follower that stopped for
        // good degrades the server as a failed pool does.
        any_failed |= pools.standby_phase(entry) == PoolPhase::Failed;
        reporter.set_service_status(pool_service_name(&entry.name), status(false)).await;
    }
    let overall = status(!stopping && !any_failed);
    reporter.set_service_status("", overall).await;
    reporter.set_service_status(service_name(), overall).await;
}

fn status(serving: bool) -> ServingStatus {
    if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

/// Sets the first statuses (before the server takes connections).
pub(crate) async fn init(reporter: &HealthReporter, pools: &Pools) {
    report(reporter, pools).await;
}

/// Keeps the statuses current until the server stops (then every name is NOT_SERVING).
pub(crate) async fn monitor(reporter: HealthReporter, pools: Arc<Pools>) {
    let stop = Pools::stopping(pools.stop_signal());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = tokio::time::sleep(EVERY) => report(&reporter, &pools).await,
            () = &mut stop => {
                report(&reporter, &pools).await;
                return;
            }
        }
    }
}
