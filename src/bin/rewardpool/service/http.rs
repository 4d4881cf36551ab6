//! The metrics and health server (axum, HTTP/1):
//!
//! - `GET /metrics`: every pool's counters in the Prometheus text format (version 0.0.4),
//!   read at scrape time (see `metrics`);
//! - `GET /healthz`: 200 while the process serves HTTP at all (liveness);
//! - `GET /readyz`: 200 when every pool runs and the service takes requests, else 503 with
//!   one line saying why (a failed or stopping pool, shutdown begun).

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;

use super::metrics::MetricsView;

/// What every handler reads.
#[derive(Clone)]
struct Shared {
    view: MetricsView,
    registry: Arc<Registry>,
}

/// The routes over `view`.
pub(crate) fn router(view: MetricsView) -> Router {
    let registry = Arc::new(view.registry());
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Shared { view, registry })
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown` completes
/// (then answers the requests in progress and returns).
///
/// # Errors
/// When accepting connections fails for good (axum retries transient accept errors).
pub(crate) async fn serve_http(
    listener: tokio::net::TcpListener,
    view: MetricsView,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(view)).with_graceful_shutdown(shutdown).await
}

async fn metrics(State(shared): State<Shared>) -> Response {
    let mut body = String::with_capacity(16 << 10);
    match prometheus_text::encode(&mut body, &shared.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], body).into_response(),
        // Only a formatting error of the encoder itself (writing to a String cannot fail).
        Err(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics\n").into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(shared): State<Shared>) -> Response {
    match shared.view.readiness() {
        Ok(()) => "ready\n".into_response(),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    use prometheus_parse::{Scrape, Value};
    use rewardpool::config::Config;
    use rewardpool::engine::{CorePin, RunState};
    use rewardpool::journal::testing::FailingJournal;
    use rewardpool::{Engine, EngineConfig, Host, ItemSpec, Metrics, Pool, Rng};

    use super::super::metrics::{GrpcCalls, Method};
    use super::*;

    /// A server on 127.0.0.1:0 over `view`, on a runtime of its own; stops when dropped.
    struct Server {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        runtime: tokio::runtime::Runtime,
    }

    impl Server {
        fn start(view: MetricsView) -> Server {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            runtime.spawn(serve_http(listener, view, async {
                let _ = stopped.await;
            }));
            Server { addr, stop: Some(stop), runtime }
        }

        /// `GET path`: the status code, the Content-Type and the body.
        fn get(&self, path: &str) -> (u16, String, String) {
            let mut stream = TcpStream::connect(self.addr).unwrap();
            write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
            let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
            let content_type = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_owned)
                })
                .unwrap_or_default();
            (status, content_type, body.to_owned())
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            let _ = &self.runtime;
        }
    }

    /// The scraped samples by metric name and sorted label pairs.
    type Samples = HashMap<(String, Vec<(String, String)>), Value>;

    fn parse(body: &str) -> Samples {
        let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
        scrape
            .samples
            .into_iter()
            .map(|s| {
                let mut labels: Vec<(String, String)> =
                    s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                labels.sort();
                ((s.metric, labels), s.value)
            })
            .collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<_> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        v.sort();
        v
    }

    /// A sample's value, whatever type the parser gave it.
    fn value(samples: &Samples, metric: &str, pairs: &[(&str, &str)]) -> f64 {
        match samples.get(&(metric.to_owned(), labels(pairs))) {
            Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
            other => panic!("{metric}{pairs:?}: {other:?}"),
        }
    }

    /// Every per-pool number of `m` equals the scrape's.
    fn check_pool(samples: &Samples, pool: &str, m: &Metrics) {
        let p = [("pool", pool)];
        let exact = |v: u64| v as f64;
        assert_eq!(value(samples, "rewardpool_draws_total", &p), exact(m.draws_committed));
        assert_eq!(value(samples, "rewardpool_empty_draws_total", &p), exact(m.empty_draws));
        assert_eq!(value(samples, "rewardpool_pulls_total", &p), exact(m.pulls));
        assert_eq!(value(samples, "rewardpool_replayed_total", &p), exact(m.replayed));
        assert_eq!(value(samples, "rewardpool_groups_total", &p), exact(m.groups_committed));
        assert_eq!(value(samples, "rewardpool_ring_occupancy", &p), exact(m.ring_waiting));
        assert_eq!(value(samples, "rewardpool_in_flight", &p), exact(m.in_flight));
        for (name, h, scale) in [
            ("rewardpool_group_size", &m.group_size, 1.0),
            ("rewardpool_commit_latency_seconds", &m.commit_latency, 1e-9),
        ] {
            assert_eq!(value(samples, &format!("{name}_count"), &p), exact(h.count()), "{name}");
            let sum = value(samples, &format!("{name}_sum"), &p);
            assert!((sum - h.sum() as f64 * scale).abs() <= 1e-9 * sum.max(1.0), "{name} {sum}");
            let Some(Value::Histogram(buckets)) = samples.get(&(name.to_owned(), labels(&p)))
            else {
                panic!("{name}: no buckets");
            };
            let expected: Vec<(f64, f64)> = h
                .cumulative()
                .map(|(le, n)| (le.map_or(f64::INFINITY, |b| b as f64 * scale), n as f64))
                .collect();
            let got: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
            assert_eq!(got, expected, "{name}");
        }
        for state in RunState::ALL {
            let v = value(
                samples,
                "rewardpool_pool_state",
                &[("pool", pool), ("state", state.as_str())],
            );
            assert_eq!(v, f64::from(u8::from(state == m.run_state())), "{pool} {state}");
        }
    }

    const TWO_POOLS: &str = "wal: { durability: buffered }\npools:\n  - name: eu\n    catalog:\n      - { item_id: gold, quantity: 3, probability: 1 }\n      - { item_id: silver, quantity: 2, probability: 5 }\n  - name: us\n    catalog:\n      - { item_id: mud, quantity: -1, probability: 1 }\n";

    #[test]
    fn scraped_metrics_equal_the_engines_counters() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!("working_dir: {:?}\n{TWO_POOLS}", dir.path());
        let host = Host::open(&Config::from_yaml_str(&yaml).unwrap()).unwrap();
        let eu = host.pool("eu").unwrap();
        let mut client = eu.client().unwrap();
        for _ in 0..8 {
            client.draw().unwrap();
        }
        assert_eq!(client.pull(10).unwrap().count(), 10);
        client.draw_keyed(7).unwrap();
        assert!(client.draw_keyed(7).unwrap().replayed);
        let mut us = host.pool("us").unwrap().client().unwrap();
        for _ in 0..5 {
            us.draw().unwrap();
        }
        let calls = Arc::new(GrpcCalls::default());
        calls.record(Method::Draw, tonic::Code::Ok);
        calls.record(Method::Draw, tonic::Code::Ok);
        calls.record(Method::Draw, tonic::Code::InvalidArgument);
        let view = MetricsView::of_host(&host, Arc::clone(&calls));
        // A quiescent point: rings drained, remaining quantities republished.
        let states: Vec<_> =
            host.engines().map(|(n, e)| (n.to_owned(), e.state().unwrap())).collect();
        let server = Server::start(view.clone());

        let (status, content_type, body) = server.get("/metrics");
        assert_eq!(status, 200, "{body}");
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        let samples = parse(&body);
        for (name, engine) in host.engines() {
            check_pool(&samples, name, &engine.metrics());
        }
        let eu_m = eu.metrics();
        assert_eq!(
            (eu_m.draws_committed, eu_m.empty_draws, eu_m.pulls, eu_m.replayed),
            (19, 14, 1, 1)
        );
        for (pool, state) in &states {
            for item in &state.items {
                let v = value(
                    &samples,
                    "rewardpool_item_remaining",
                    &[("pool", pool), ("item", &item.id)],
                );
                assert_eq!(v, item.quantity.to_i64() as f64, "{pool}/{}", item.id);
            }
        }
        let grpc = |code| {
            value(&samples, "rewardpool_grpc_calls_total", &[("method", "Draw"), ("code", code)])
        };
        assert_eq!((grpc("OK"), grpc("InvalidArgument")), (2.0, 1.0));
        assert_eq!(
            value(
                &samples,
                "rewardpool_grpc_calls_total",
                &[("method", "GetState"), ("code", "OK")]
            ),
            0.0
        );

        assert_eq!(server.get("/healthz").0, 200);
        assert_eq!(server.get("/readyz"), (200, server.get("/readyz").1, "ready\n".to_owned()));
        view.stop_serving();
        let (status, _, body) = server.get("/readyz");
        assert_eq!((status, body.as_str()), (503, "not ready: the service is shutting down\n"));
        drop((client, us));
        for (name, result) in host.shutdown() {
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // The meters outlive the engines: a stopped pool reads as stopped.
        let samples = parse(&server.get("/metrics").2);
        let stopped =
            value(&samples, "rewardpool_pool_state", &[("pool", "eu"), ("state", "stopped")]);
        assert_eq!(stopped, 1.0);
        assert_eq!(server.get("/healthz").0, 200, "alive while it serves HTTP");
    }

    #[test]
    fn a_failed_pool_is_not_ready() {
        let config = EngineConfig { core: CorePin::Unpinned, ..EngineConfig::default() };
        let pool = Pool::new(&[ItemSpec::new("mud", -1, 1)], Rng::from_seed(1)).unwrap();
        let healthy =
            Engine::start(pool, rewardpool::MemoryJournal::new(), config.clone()).unwrap();
        let pool = Pool::new(&[ItemSpec::new("mud", -1, 1)], Rng::from_seed(1)).unwrap();
        let (journal, switch) = FailingJournal::new();
        let failing = Engine::start(pool, journal, config).unwrap();
        let meters = [("ok".to_owned(), healthy.meter()), ("bad".to_owned(), failing.meter())];
        let server = Server::start(MetricsView::new(meters, Arc::new(GrpcCalls::default())));
        assert_eq!(server.get("/readyz").0, 200);
        let mut client = failing.client().unwrap();
        switch.fail_now();
        assert!(client.draw().is_err());
        let (status, _, body) = server.get("/readyz");
        assert_eq!((status, body.as_str()), (503, "not ready: pool bad is failed\n"));
        let samples = parse(&server.get("/metrics").2);
        let state = |pool, state| {
            value(&samples, "rewardpool_pool_state", &[("pool", pool), ("state", state)])
        };
        assert_eq!((state("bad", "failed"), state("bad", "running")), (1.0, 0.0));
        assert_eq!((state("ok", "failed"), state("ok", "running")), (0.0, 1.0));
        assert_eq!(server.get("/healthz").0, 200);
        drop(client);
        assert!(failing.shutdown().is_err());
        healthy.shutdown().unwrap();
    }
}
