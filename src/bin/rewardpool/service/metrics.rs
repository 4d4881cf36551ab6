//! The Prometheus exporter: a custom prometheus-client collector that reads every pool's
//! [`Meter`] at scrape time (a few `Relaxed` loads per pool and one copy of its remaining
//! quantities; never a command to a core thread), and the gRPC call counters the service
//! bumps ([`GrpcCalls`]).
//!
//! | metric | type | labels | source |
//! |---|---|---|---|
//! | `rewardpool_draws_total` | counter | `pool` | `Metrics::draws_committed` |
//! | `rewardpool_empty_draws_total` | counter | `pool` | `Metrics::empty_draws` |
//! | `rewardpool_pulls_total` | counter | `pool` | `Metrics::pulls` (pull requests; their draws are in `draws`) |
//! | `rewardpool_replayed_total` | counter | `pool` | `Metrics::replayed` (keyed retries answered from the window) |
//! | `rewardpool_key_conflicts_total` | counter | `pool` | `Metrics::key_conflicts` |
//! | `rewardpool_groups_total` | counter | `pool` | `Metrics::groups_committed` |
//! | `rewardpool_group_size` | histogram | `pool` | draws per group, buckets 1, 2, 4, ... 2^22 |
//! | `rewardpool_commit_latency_seconds` | histogram | `pool` | group opened → durable, buckets 2^10 ns ... 2^32 ns |
//! | `rewardpool_ring_occupancy` | gauge | `pool` | `Metrics::ring_waiting` (requests waiting in clients' rings) |
//! | `rewardpool_in_flight` | gauge | `pool` | `Metrics::in_flight` (taken, not yet durable) |
//! | `rewardpool_clients` | gauge | `pool` | `Metrics::clients` |
//! | `rewardpool_item_remaining` | gauge | `pool`, `item` | `Meter::remaining` (-1 = unlimited) |
//! | `rewardpool_pool_state` | gauge | `pool`, `state` | 1 for the current `RunState`, 0 for the others |
//! | `rewardpool_grpc_calls_total` | counter | `method`, `code` | [`GrpcCalls`] |
//! | `rewardpool_replication_shipped_sequence` | gauge | `pool` | the stream sequence of the last group JetStream acknowledged (replicated pools only) |
//! | `rewardpool_replication_shipped_request_id` | gauge | `pool` | the last request id in it |
//! | `rewardpool_replication_lag_draws` | gauge | `pool` | acknowledged draws not yet stored by JetStream |
//! | `rewardpool_replication_lag_groups` | gauge | `pool` | groups committed since start not yet stored by JetStream |
//! | `rewardpool_replication_lag_alarm` | gauge | `pool` | 1 while `lag_groups` is above `replication.max_lag_groups` |
//! | `rewardpool_replication_connected` | gauge | `pool` | 1 while the shipper is connected and shipping |
//! | `rewardpool_replication_failed` | gauge | `pool` | 1 once the shipper stopped for good (fenced, damage) |
//! | `rewardpool_pool_role` | gauge | `pool`, `role` | 1 for the pool's role (`primary`, `standby`), 0 for the other |
//! | `rewardpool_replica_applied_sequence` | gauge | `pool` | a standby's stream sequence applied and durable (standby pools only, `serve --standby`) |
//! | `rewardpool_replica_applied_request_id` | gauge | `pool` | the last request id in it |
//! | `rewardpool_replica_lag_messages` | gauge | `pool` | stream messages not yet applied (read once a second) |
//! | `rewardpool_replica_lag_draws` | gauge | `pool` | request ids on the stream not yet applied |
//! | `rewardpool_replica_lag_seconds` | gauge | `pool` | age of the oldest message not yet applied (0 caught up) |
//! | `rewardpool_replica_following` | gauge | `pool` | 1 while the follower is connected and consuming |
//! | `rewardpool_replica_failed` | gauge | `pool` | 1 once the follower stopped for good (a refused message, damage) |

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use rewardpool::engine::{Histogram, RunState};
use rewardpool::{Host, Meter, Metrics, Quantity};

use crate::replica::follow::FollowStats;
use crate::replica::ship::{ShipStats, Shipping};

/// The gRPC methods the service counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    GetState,
    Draw,
    Update,
    ListPools,
    Watch,
    ListCommitments,
    Promote,
}

impl Method {
    const ALL: [Method; 7] = [
        Method::GetState,
        Method::Draw,
        Method::Update,
        Method::ListPools,
        Method::Watch,
        Method::ListCommitments,
        Method::Promote,
    ];

    /// The RPC's name as the proto spells it (the `method` label).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::GetState => "GetState",
            Method::Draw => "Draw",
            Method::Update => "Update",
            Method::ListPools => "ListPools",
            Method::Watch => "Watch",
            Method::ListCommitments => "ListCommitments",
            Method::Promote => "Promote",
        }
    }
}

/// gRPC status codes 0 ..= 16, named as gRPC's own Go package names them (the `code`
/// label, as `grpc_server_handled_total` of go-grpc-prometheus has it).
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// gRPC calls by method and status code: one atomic per pair, bumped by the service with
/// [`GrpcCalls::record`] (a `Relaxed` `fetch_add`: no lock, no allocation). What one call is:
/// a unary RPC once it is answered; a stream (`Draw`, `Watch`) once per stream, with the
/// status it ends with (`Canceled` when the client went away first).
#[derive(Debug, Default)]
pub(crate) struct GrpcCalls {
    counts: [[AtomicU64; CODE_NAMES.len()]; Method::ALL.len()],
}

impl GrpcCalls {
    /// Counts one call of `method` that ended with `code`.
    pub(crate) fn record(&self, method: Method, code: tonic::Code) {
        let code = usize::try_from(code as i32).unwrap_or(2).min(CODE_NAMES.len() - 1);
        // Relaxed: a counter read only by the exporter; several tasks may bump it at once,
        // hence an atomic add.
        self.counts[method as usize][code].fetch_add(1, Ordering::Relaxed);
    }

    /// Calls of `method` that ended with `code` so far.
    pub(crate) fn get(&self, method: Method, code: tonic::Code) -> u64 {
        let code = usize::try_from(code as i32).unwrap_or(2).min(CODE_NAMES.len() - 1);
        // Relaxed: as in `record`.
        self.counts[method as usize][code].load(Ordering::Relaxed)
    }
}

/// One pool as the exporter sees it.
struct PoolMeter {
    name: String,
    meter: Meter,
}

/// What the metrics server reads: every pool's [`Meter`] (valid also after the pool shut
/// down: it then reads `stopped`), the gRPC call counters, and whether the service is still
/// taking requests. Cheap to clone (`Arc`s).
#[derive(Clone)]
pub(crate) struct MetricsView {
    pools: Arc<[PoolMeter]>,
    calls: Arc<GrpcCalls>,
    /// False once the service began shutting down (`/readyz` answers 503 from then on).
    serving: Arc<AtomicBool>,
    /// Each replicated pool's shipper counters.
    shipping: Arc<[(String, Arc<ShipStats>)]>,
    /// Each standby pool's follower counters (`serve --standby`), and its meter and
    /// shipper counters once promoted in place.
    following: Arc<[Following]>,
}

/// A standby pool as the exporter sees it.
struct Following {
    name: String,
    stats: Arc<FollowStats>,
    promoted: Arc<PromotedMeters>,
}

/// A standby pool's meter and shipper counters, set once it is promoted in place.
pub(crate) type PromotedMeters = OnceLock<(Meter, Arc<ShipStats>)>;

impl fmt::Debug for MetricsView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.pools.iter().map(|p| p.name.as_str()).collect();
        f.debug_struct("MetricsView").field("pools", &names).finish_non_exhaustive()
    }
}

impl MetricsView {
    /// A view of `pools` (name and meter) with the service's call counters.
    pub(crate) fn new(
        pools: impl IntoIterator<Item = (String, Meter)>,
        calls: Arc<GrpcCalls>,
    ) -> MetricsView {
        let pools = pools.into_iter().map(|(name, meter)| PoolMeter { name, meter }).collect();
        MetricsView {
            pools,
            calls,
            serving: Arc::new(AtomicBool::new(true)),
            shipping: Arc::new([]),
            following: Arc::new([]),
        }
    }

    /// The same view with the standbys' follower counters (`rewardpool_replica_*`).
    pub(crate) fn with_following(
        mut self,
        following: impl IntoIterator<Item = (String, Arc<FollowStats>, Arc<PromotedMeters>)>,
    ) -> MetricsView {
        self.following = following
            .into_iter()
            .map(|(name, stats, promoted)| Following { name, stats, promoted })
            .collect();
        self
    }

    /// Every pool served now: those served from the start, then those promoted in place.
    fn meters(&self) -> Vec<PoolMeter> {
        let promoted = self.following.iter().filter_map(|f| {
            f.promoted
                .get()
                .map(|(meter, _)| PoolMeter { name: f.name.clone(), meter: meter.clone() })
        });
        self.pools
            .iter()
            .map(|p| PoolMeter { name: p.name.clone(), meter: p.meter.clone() })
            .chain(promoted)
            .collect()
    }

    /// The standby pools not promoted.
    fn standbys(&self) -> impl Iterator<Item = &Following> {
        self.following.iter().filter(|f| f.promoted.get().is_none())
    }

    /// The same view with the shippers' counters (`rewardpool_replication_*`).
    pub(crate) fn with_shipping(mut self, shipping: Shipping) -> MetricsView {
        self.shipping = shipping.into();
        self
    }

    /// A view of every pool of `host`.
    #[allow(dead_code, reason = "the `serve` command (service/mod.rs) builds it")]
    pub(crate) fn of_host(host: &Host, calls: Arc<GrpcCalls>) -> MetricsView {
        MetricsView::new(host.engines().map(|(name, e)| (name.to_owned(), e.meter())), calls)
    }

    /// The gRPC call counters, for the service to bump.
    #[allow(dead_code, reason = "the gRPC service (service/api.rs) takes them")]
    pub(crate) fn calls(&self) -> &Arc<GrpcCalls> {
        &self.calls
    }

    /// The service stops taking requests (shutdown began): not ready from now on.
    #[allow(dead_code, reason = "the `serve` command (service/mod.rs) calls it")]
    pub(crate) fn stop_serving(&self) {
        // Relaxed: a flag read by `/readyz`; nothing is published through it.
        self.serving.store(false, Ordering::Relaxed);
    }

    /// `Ok` when every pool runs and the service takes requests; else one line saying why
    /// not (for `/readyz`).
    pub(crate) fn readiness(&self) -> Result<(), String> {
        // Relaxed: as in `stop_serving`.
        if !self.serving.load(Ordering::Relaxed) {
            return Err("the service is shutting down".to_owned());
        }
        if self.pools.is_empty() && self.following.is_empty() {
            return Err("no pool is open".to_owned());
        }
        let failed_followers = self
            .standbys()
            .filter(|f| f.stats.failed.load(Ordering::Relaxed))
            .map(|f| format!("the standby pool {}'s follower failed: {}", f.name, f.stats.error()));
        let not_running: Vec<String> = self
            .meters()
            .iter()
            .filter_map(|p| match p.meter.read().run_state() {
                RunState::Running => None,
                state => Some(format!("pool {} is {state}", p.name)),
            })
            .chain(failed_followers)
            .collect();
        if not_running.is_empty() {
            Ok(())
        } else {
            Err(not_running.join(", "))
        }
    }

    /// A registry holding this view's collector: encode it per scrape.
    pub(crate) fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Exporter { view: self.clone() }));
        registry
    }
}

/// The collector: reads every pool at scrape time.
#[derive(Debug)]
struct Exporter {
    view: MetricsView,
}

/// A counter or gauge per pool, from one field of [`Metrics`].
struct PerPool {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    value: fn(&Metrics) -> u64,
}

const PER_POOL: [PerPool; 9] = [
    PerPool {
        name: "rewardpool_draws",
        help: "Draws in committed groups since the pool started",
        kind: MetricType::Counter,
        value: |m| m.draws_committed,
    },
    PerPool {
        name: "rewardpool_empty_draws",
        help: "Draws that found nothing available (part of rewardpool_draws_total)",
        kind: MetricType::Counter,
        value: |m| m.empty_draws,
    },
    PerPool {
        name: "rewardpool_pulls",
        help: "Pull requests (several draws in one request) served with new draws",
        kind: MetricType::Counter,
        value: |m| m.pulls,
    },
    PerPool {
        name: "rewardpool_replayed",
        help: "Keyed retries answered with their original outcomes, drawing nothing",
        kind: MetricType::Counter,
        value: |m| m.replayed,
    },
    PerPool {
        name: "rewardpool_key_conflicts",
        help: "Keyed requests refused: the key was known with another count",
        kind: MetricType::Counter,
        value: |m| m.key_conflicts,
    },
    PerPool {
        name: "rewardpool_groups",
        help: "Groups committed (one log commit each)",
        kind: MetricType::Counter,
        value: |m| m.groups_committed,
    },
    PerPool {
        name: "rewardpool_ring_occupancy",
        help: "Requests waiting in clients' rings at the core thread's last pass",
        kind: MetricType::Gauge,
        value: |m| m.ring_waiting,
    },
    PerPool {
        name: "rewardpool_in_flight",
        help: "Requests taken by the core thread whose group is not yet durable",
        kind: MetricType::Gauge,
        value: |m| m.in_flight,
    },
    PerPool {
        name: "rewardpool_clients",
        help: "Engine clients connected",
        kind: MetricType::Gauge,
        value: |m| m.clients,
    },
];

/// Per-bucket (not cumulative) counts with their upper bounds, scaled by `scale`, the last
/// one `+Inf`: what prometheus-client's `encode_histogram` takes (it sums them itself).
fn buckets(h: &Histogram, scale: f64) -> Vec<(f64, u64)> {
    let mut below = 0;
    h.cumulative()
        .map(|(bound, total)| {
            let n = total - below;
            below = total;
            // Bounds are powers of two below 2^63: exact as f64.
            (bound.map_or(f64::INFINITY, |b| b as f64 * scale), n)
        })
        .collect()
}

impl Collector for Exporter {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let pools = &self.view.meters();
        let readings: Vec<Metrics> = pools.iter().map(|p| p.meter.read()).collect();
        for metric in &PER_POOL {
            let mut family =
                encoder.encode_descriptor(metric.name, metric.help, None, metric.kind)?;
            for (pool, m) in pools.iter().zip(&readings) {
                let labels = [("pool", pool.name.as_str())];
                let value = (metric.value)(m);
                if metric.kind == MetricType::Counter {
                    ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                } else {
                    ConstGauge::new(value_i64(value)).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Self::encode_histograms(&mut encoder, pools, &readings)?;
        Self::encode_remaining(&mut encoder, pools)?;
        let mut family = encoder.encode_descriptor(
            "rewardpool_pool_state",
            "1 for the pool's current state (running, stopping, stopped, failed), 0 otherwise",
            None,
            MetricType::Gauge,
        )?;
        for (pool, m) in pools.iter().zip(&readings) {
            let current = m.run_state();
            for state in RunState::ALL {
                let labels = [("pool", pool.name.as_str()), ("state", state.as_str())];
                let value = i64::from(state == current);
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        self.encode_calls(&mut encoder)?;
        self.encode_shipping(&mut encoder)?;
        self.encode_roles(&mut encoder, pools)?;
        self.encode_following(&mut encoder)
    }
}

/// A follower gauge: its name, help and reading.
type FollowGauge = (&'static str, &'static str, fn(&FollowStats) -> u64);

const FOLLOW_GAUGES: [FollowGauge; 7] = [
    (
        "rewardpool_replica_applied_sequence",
        "Stream sequence applied and durable in the standby's log",
        |s| s.applied_sequence.load(Ordering::Relaxed),
    ),
    (
        "rewardpool_replica_applied_request_id",
        "Last request id applied and durable in the standby's log",
        |s| s.applied_request_id.load(Ordering::Relaxed),
    ),
    (
        "rewardpool_replica_lag_messages",
        "Messages on the pool's stream the standby has not applied (read once a second)",
        |s| s.lag_messages.load(Ordering::Relaxed),
    ),
    (
        "rewardpool_replica_lag_draws",
        "Request ids on the pool's stream the standby has not applied",
        |s| s.lag_draws.load(Ordering::Relaxed),
    ),
    (
        "rewardpool_replica_lag_seconds",
        "Age in seconds of the oldest message the standby has not applied (0 when caught up)",
        |s| s.lag_seconds.load(Ordering::Relaxed),
    ),
    (
        "rewardpool_replica_following",
        "1 while the standby's follower is connected and consuming the stream",
        |s| u64::from(s.following.load(Ordering::Relaxed)),
    ),
    (
        "rewardpool_replica_failed",
        "1 once the standby's follower stopped for good (a refused message, a damaged log)",
        |s| u64::from(s.failed.load(Ordering::Relaxed)),
    ),
];

/// The `role` label values of `rewardpool_pool_role`.
const ROLES: [&str; 2] = ["primary", "standby"];

/// A shipper gauge: its name, help and reading.
type ShipGauge = (&'static str, &'static str, fn(&ShipStats) -> u64);

const SHIP_GAUGES: [ShipGauge; 7] = [
    (
        "rewardpool_replication_shipped_sequence",
        "Stream sequence of the last group JetStream acknowledged",
        |s| s.shipped_sequence.load(Ordering::Relaxed),
    ),
    (
        "rewardpool_replication_shipped_request_id",
        "Last request id in the last group JetStream acknowledged",
        |s| s.shipped_request_id.load(Ordering::Relaxed),
    ),
    ("rewardpool_replication_lag_draws", "Acknowledged draws JetStream has not stored yet", |s| {
        s.lag_draws.load(Ordering::Relaxed)
    }),
    (
        "rewardpool_replication_lag_groups",
        "Groups committed since start that JetStream has not stored yet",
        |s| s.lag_groups.load(Ordering::Relaxed),
    ),
    (
        "rewardpool_replication_lag_alarm",
        "1 while the unshipped groups are above replication.max_lag_groups",
        |s| u64::from(s.alarm.load(Ordering::Relaxed)),
    ),
    (
        "rewardpool_replication_connected",
        "1 while the shipper is connected to NATS and shipping",
        |s| u64::from(s.connected.load(Ordering::Relaxed)),
    ),
    (
        "rewardpool_replication_failed",
        "1 once the shipper stopped for good (fenced by another primary, or log damage)",
        |s| u64::from(s.failed.load(Ordering::Relaxed)),
    ),
];

impl Exporter {
    /// `rewardpool_pool_role`: 1 for each pool's role, 0 for the other.
    fn encode_roles(
        &self,
        encoder: &mut DescriptorEncoder,
        pools: &[PoolMeter],
    ) -> Result<(), fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "rewardpool_pool_role",
            "1 for the pool's role on this server (primary: served; standby: followed), 0 \
             for the other",
            None,
            MetricType::Gauge,
        )?;
        let primaries = pools.iter().map(|p| (p.name.as_str(), ROLES[0]));
        let standbys = self.view.standbys().map(|f| (f.name.as_str(), ROLES[1]));
        for (pool, current) in primaries.chain(standbys) {
            for role in ROLES {
                let labels = [("pool", pool), ("role", role)];
                ConstGauge::new(i64::from(role == current))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    fn encode_following(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        if self.view.standbys().next().is_none() {
            return Ok(());
        }
        for (name, help, read) in FOLLOW_GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for f in self.view.standbys() {
                let labels = [("pool", f.name.as_str())];
                ConstGauge::new(value_i64(read(&f.stats)))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    fn encode_shipping(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let promoted =
            self.view.following.iter().filter_map(|f| {
                f.promoted.get().map(|(_, stats)| (f.name.clone(), Arc::clone(stats)))
            });
        let shipping: Vec<(String, Arc<ShipStats>)> =
            self.view.shipping.iter().cloned().chain(promoted).collect();
        if shipping.is_empty() {
            return Ok(());
        }
        for (name, help, read) in SHIP_GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (pool, stats) in &shipping {
                let labels = [("pool", pool.as_str())];
                ConstGauge::new(value_i64(read(stats))).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    fn encode_histograms(
        encoder: &mut DescriptorEncoder,
        pools: &[PoolMeter],
        readings: &[Metrics],
    ) -> Result<(), fmt::Error> {
        type Pick = fn(&Metrics) -> &Histogram;
        let histograms: [(&str, &str, Pick, f64); 2] = [
            ("rewardpool_group_size", "Draws per committed group", |m| &m.group_size, 1.0),
            (
                "rewardpool_commit_latency_seconds",
                "Time from a group's opening (its first draw) until the core saw it durable",
                |m| &m.commit_latency,
                1e-9,
            ),
        ];
        for (name, help, pick, scale) in histograms {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (pool, m) in pools.iter().zip(readings) {
                let h = pick(m);
                let labels = [("pool", pool.name.as_str())];
                let sum = h.sum() as f64 * scale;
                family.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                    sum,
                    h.count(),
                    &buckets(h, scale),
                    None,
                )?;
            }
        }
        Ok(())
    }

    fn encode_remaining(
        encoder: &mut DescriptorEncoder,
        pools: &[PoolMeter],
    ) -> Result<(), fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "rewardpool_item_remaining",
            "Units of an item left (-1: unlimited), as the pool's core thread last published",
            None,
            MetricType::Gauge,
        )?;
        for pool in pools {
            let remaining = pool.meter.remaining();
            let ids = pool.meter.item_ids();
            for (id, quantity) in ids.iter().zip(remaining) {
                let labels = [("pool", pool.name.as_str()), ("item", id)];
                ConstGauge::new(quantity_value(quantity)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    fn encode_calls(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "rewardpool_grpc_calls",
            "gRPC calls answered, by method and status code",
            None,
            MetricType::Counter,
        )?;
        for method in Method::ALL {
            for (code, name) in CODE_NAMES.iter().enumerate() {
                let n = self.view.calls.get(method, tonic::Code::from(code as i32));
                // Every method's OK line, so a rate is defined from the first scrape; other
                // codes once they happened.
                if n > 0 || code == 0 {
                    let labels = [("method", method.as_str()), ("code", name)];
                    ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

fn value_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The config's encoding: -1 for unlimited.
fn quantity_value(q: Quantity) -> i64 {
    q.to_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_calls_count_by_method_and_code() {
        let calls = GrpcCalls::default();
        calls.record(Method::Draw, tonic::Code::Ok);
        calls.record(Method::Draw, tonic::Code::Ok);
        calls.record(Method::Draw, tonic::Code::InvalidArgument);
        calls.record(Method::Update, tonic::Code::Unauthenticated);
        assert_eq!(calls.get(Method::Draw, tonic::Code::Ok), 2);
        assert_eq!(calls.get(Method::Draw, tonic::Code::InvalidArgument), 1);
        assert_eq!(calls.get(Method::Update, tonic::Code::Unauthenticated), 1);
        assert_eq!(calls.get(Method::GetState, tonic::Code::Ok), 0);
        assert_eq!(CODE_NAMES[tonic::Code::Unavailable as usize], "Unavailable");
        assert_eq!(CODE_NAMES[tonic::Code::Unauthenticated as usize], "Unauthenticated");
    }
}
