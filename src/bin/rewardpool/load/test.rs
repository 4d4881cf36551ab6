//! `load` end to end against an in-process fake `RewardPoolService` on 127.0.0.1:0: the
//! report's counts equal what the server saw, in the closed and the open loop, and error
//! statuses are counted by code. Nothing here measures speed: runs are a few hundred ms and
//! every assertion is about counts.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use clap::Parser as _;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use super::plan::{plan, Plan};
use super::report::Report;
use super::{execute, execute_until, Failure};
use crate::args::{Cli, Command, LoadArgs};
use crate::service::proto::reward_pool_service_server::{
    RewardPoolService, RewardPoolServiceServer,
};
use crate::service::proto::{
    DrawRequest, DrawResponse, GetStateRequest, GetStateResponse, ListCommitmentsRequest,
    ListCommitmentsResponse, ListPoolsRequest, ListPoolsResponse, PromoteRequest, PromoteResponse,
    UpdateRequest, UpdateResponse, WatchRequest, WatchResponse,
};

/// What the fake server saw.
#[derive(Debug, Default)]
struct Seen {
    requests: AtomicU64,
    draws: AtomicU64,
    empty: AtomicU64,
    /// Streams it ended with an error status.
    failed: AtomicU64,
    keys: Mutex<HashSet<Vec<u8>>>,
    pools: Mutex<HashSet<String>>,
}

/// Answers each DrawRequest with `count` responses (every `empty_every`-th draw empty);
/// with `fail_at`, ends a stream with RESOURCE_EXHAUSTED at its `fail_at`-th request.
#[derive(Debug, Clone)]
struct Fake {
    seen: Arc<Seen>,
    empty_every: u64,
    fail_at: Option<u64>,
}

type Answers = ReceiverStream<Result<DrawResponse, Status>>;

#[tonic::async_trait]
impl RewardPoolService for Fake {
    async fn get_state(
        &self,
        _: Request<GetStateRequest>,
    ) -> Result<Response<GetStateResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type DrawStream = Answers;

    async fn draw(
        &self,
        request: Request<Streaming<DrawRequest>>,
    ) -> Result<Response<Answers>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(256);
        let fake = self.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok(Some(r)) = inbound.message().await {
                n += 1;
                if fake.answer(&r, n, &tx).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn update(&self, _: Request<UpdateRequest>) -> Result<Response<UpdateResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_pools(
        &self,
        _: Request<ListPoolsRequest>,
    ) -> Result<Response<ListPoolsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_commitments(
        &self,
        _: Request<ListCommitmentsRequest>,
    ) -> Result<Response<ListCommitmentsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn promote(
        &self,
        _: Request<PromoteRequest>,
    ) -> Result<Response<PromoteResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(&self, _: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

impl Fake {
    /// Answers the stream's `n`-th request; `Err` ends the stream.
    async fn answer(
        &self,
        r: &DrawRequest,
        n: u64,
        tx: &mpsc::Sender<Result<DrawResponse, Status>>,
    ) -> Result<(), ()> {
        let seen = &self.seen;
        let count = u64::try_from(r.count.max(1)).map_err(|_| ())?;
        let first = seen.draws.fetch_add(count, Ordering::SeqCst);
        seen.requests.fetch_add(1, Ordering::SeqCst);
        if !r.idempotency_key.is_empty() {
            seen.keys.lock().unwrap().insert(r.idempotency_key.clone());
        }
        seen.pools.lock().unwrap().insert(r.pool.clone());
        if self.fail_at == Some(n) {
            seen.failed.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(Err(Status::resource_exhausted("fake: rings full"))).await;
            return Err(());
        }
        for id in first..first + count {
            let empty = (id + 1) % self.empty_every == 0;
            if empty {
                seen.empty.fetch_add(1, Ordering::SeqCst);
            }
            let response = DrawResponse {
                request_id: id,
                item_id: if empty { String::new() } else { "gold".to_owned() },
                error: if empty { "pool is empty".to_owned() } else { String::new() },
                replayed: false,
            };
            tx.send(Ok(response)).await.map_err(drop)?;
        }
        Ok(())
    }
}

/// The fake on its own thread and runtime; stops when dropped.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    fn start(fake: Fake) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            runtime.block_on(async move {
                tonic::transport::Server::builder()
                    .add_service(RewardPoolServiceServer::new(fake))
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Server { addr, stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn fake(empty_every: u64, fail_at: Option<u64>) -> (Fake, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    (Fake { seen: Arc::clone(&seen), empty_every, fail_at }, seen)
}

/// `rewardpool load ARGS...` parsed by the real command line.
fn args(extra: &[&str]) -> LoadArgs {
    let argv = ["rewardpool", "load"].iter().chain(extra);
    match Cli::try_parse_from(argv).map(|c| c.command) {
        Ok(Command::Load(a)) => a,
        other => panic!("{extra:?} does not parse as load: {other:?}"),
    }
}

fn planned(extra: &[&str]) -> Plan {
    plan(&args(extra)).unwrap_or_else(|e| panic!("{extra:?}: {e}"))
}

/// Runs `load` against `server` and returns its `--json` object.
fn json(server: &Server, extra: &[&str]) -> serde_json::Value {
    let target = server.addr.to_string();
    let mut all = vec!["--target", &target, "--json", "--threads", "1"];
    all.extend_from_slice(extra);
    let outcome = execute(planned(&all)).unwrap_or_else(|e| panic!("{e:?}"));
    serde_json::to_value(Report::of(&outcome)).unwrap()
}

fn get(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

#[test]
fn closed_loop_counts_equal_what_the_server_saw() {
    let (fake, seen) = fake(5, None);
    let server = Server::start(fake);
    let v = json(
        &server,
        &[
            "--connections",
            "2",
            "--streams",
            "3",
            "--in-flight",
            "4",
            "--count",
            "7",
            "--duration",
            "300ms",
            "--keys",
            "--pool",
            "gold-pool",
        ],
    );
    let requests = seen.requests.load(Ordering::SeqCst);
    let draws = seen.draws.load(Ordering::SeqCst);
    assert!(requests > 0, "{v}");
    assert_eq!(get(&v, "requests"), requests, "{v}");
    assert_eq!(get(&v, "draws"), draws, "{v}");
    assert_eq!(draws, requests * 7);
    assert_eq!(get(&v, "responses"), draws, "{v}");
    assert_eq!(get(&v, "empty_draws"), seen.empty.load(Ordering::SeqCst), "{v}");
    assert_eq!(get(&v, "requests_ok"), requests, "{v}");
    assert_eq!(v["status_codes"], serde_json::json!({ "OK": requests }), "{v}");
    assert_eq!(v["errors"], serde_json::json!({}), "{v}");
    assert_eq!(v["loop"], "closed");
    assert!(v["open_loop"].is_null(), "{v}");
    // A fresh 16-byte key per request, and the pool named on each.
    let keys = seen.keys.lock().unwrap();
    assert_eq!(keys.len() as u64, requests);
    assert!(keys.iter().all(|k| k.len() == 16));
    assert_eq!(*seen.pools.lock().unwrap(), HashSet::from(["gold-pool".to_owned()]));
    let latency = &v["latency_ns"];
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(latency[p].as_u64().is_some_and(|x| x > 0), "{p}: {v}");
    }
    assert!(latency["p50"].as_u64() <= latency["max"].as_u64(), "{v}");
}

#[test]
fn open_loop_counts_equal_what_the_server_saw_and_the_schedule() {
    let (fake, seen) = fake(1000, None);
    let server = Server::start(fake);
    let (rate, seconds) = (2000.0, 0.3);
    let v = json(
        &server,
        &["--rate", "2000", "--duration", "300ms", "--connections", "2", "--streams", "2"],
    );
    let requests = seen.requests.load(Ordering::SeqCst);
    assert_eq!(get(&v, "requests"), requests, "{v}");
    assert_eq!(get(&v, "draws"), seen.draws.load(Ordering::SeqCst), "{v}");
    assert_eq!(get(&v, "responses"), seen.draws.load(Ordering::SeqCst), "{v}");
    assert_eq!(get(&v, "requests_ok"), requests, "{v}");
    assert_eq!(v["loop"], "open");
    // Every request of the schedule was either sent or counted as never sent.
    let schedule = &v["open_loop"];
    let unsent = schedule["unsent"].as_u64().unwrap();
    assert_eq!(requests + unsent, (rate * seconds) as u64, "{v}");
    assert_eq!(schedule["offered_rate"].as_f64(), Some(rate), "{v}");
}

#[test]
fn error_statuses_are_counted_by_code() {
    // Each stream fails at its third request: two answered, one RESOURCE_EXHAUSTED, then
    // the stream opens again after the retry pause.
    let (fake, seen) = fake(1000, Some(3));
    let server = Server::start(fake);
    let v = json(&server, &["--streams", "2", "--count", "3", "--duration", "300ms"]);
    let failed = seen.failed.load(Ordering::SeqCst);
    assert!(failed >= 2, "{v}");
    assert_eq!(v["errors"], serde_json::json!({ "RESOURCE_EXHAUSTED": failed }), "{v}");
    let requests = seen.requests.load(Ordering::SeqCst);
    assert_eq!(get(&v, "requests"), requests, "{v}");
    assert_eq!(
        v["status_codes"],
        serde_json::json!({ "OK": requests - failed, "RESOURCE_EXHAUSTED": failed }),
        "{v}"
    );
    assert_eq!(get(&v, "requests_ok"), requests - failed, "{v}");
}

#[test]
fn a_run_where_every_request_fails_has_no_ok() {
    let (fake, seen) = fake(1000, Some(1));
    let server = Server::start(fake);
    let v = json(&server, &["--duration", "250ms"]);
    assert!(seen.failed.load(Ordering::SeqCst) >= 1);
    assert_eq!(get(&v, "requests_ok"), 0, "{v}");
    assert!(v["status_codes"].get("OK").is_none(), "{v}");
}

#[test]
fn a_refusing_target_is_a_clear_failure_not_a_hang() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let target = format!("127.0.0.1:{port}");
    match execute(planned(&["--target", &target, "--duration", "1s"])) {
        Err(Failure::CheckFailed(e)) => {
            let text = e.to_string();
            assert!(text.contains("cannot connect to") && text.contains(&target), "{text}");
        }
        other => panic!("expected a connect failure, got {other:?}"),
    }
}

#[test]
fn bad_arguments_are_refused_with_the_flag_named() {
    for (bad, why) in [
        (&["--connections", "0"][..], "--connections is 0"),
        (&["--count", "0"], "--count is 0"),
        (&["--count", "-3"], "--count is -3"),
        (&["--in-flight", "0"], "--in-flight is 0"),
        (&["--threads", "0"], "--threads is 0"),
        (&["--rate", "0"], "--rate is 0"),
        (&["--rate", "NaN"], "--rate is NaN"),
        (&["--rate", "10", "--pause", "1s"], "--pause"),
        (&["--pause", "1"], "--pause \"1\" has no unit"),
        (&["--duration", "0s"], "--duration is 0"),
        (&["--duration", "5s", "--ramp", "0:1:1s"], "both set the run's length"),
        (&["--ramp", "0:5:1s", "--rate", "10"], "levels are rates"),
        (&["--ramp", "0/s:5/s:1s", "--rate", "10"], "both set the rate"),
        (&["--ramp", "0:5:1s", "--streams", "2"], "reaches 5 streams"),
        (&["--ramp", "0:0:1s"], "never rises above 0"),
        (&["--ramp", "0:5"], "--ramp stage 1"),
        (&["--connections", "300"], "--connections is 300"),
        (&["--connections", "100", "--streams", "2000"], "200000 streams"),
        (&["--target", "localhost"], "--target \"localhost\": no port"),
        (&["--target", "host:99999"], "the port is not a number"),
        (&["--target", ":80"], "no host"),
    ] {
        match plan(&args(bad)) {
            Err(e) => assert!(e.contains(why), "{bad:?}: {e}"),
            Ok(p) => panic!("{bad:?} was accepted: {p:?}"),
        }
    }
}

#[test]
fn defaults_and_the_ramp_fill_in_the_plan() {
    let p = planned(&[]);
    assert_eq!((p.connections, p.streams, p.count, p.in_flight), (1, 1, 10, 1));
    assert_eq!(p.ramp.total(), std::time::Duration::from_secs(10));
    assert_eq!(p.ramp.peak(), 1.0);
    assert_eq!(p.target, "127.0.0.1:50051");
    // The k6 shape: 100 streams over 4 connections, 25 each.
    let p = planned(&["--connections", "4", "--ramp", "0:100:10s,hold:60s", "--pause", "500ms"]);
    assert_eq!((p.streams, p.ramp.peak()), (25, 100.0));
    // An open loop keeps many requests outstanding unless told otherwise.
    let p = planned(&["--rate", "100"]);
    assert_eq!((p.in_flight, p.rate()), (super::plan::OPEN_IN_FLIGHT_DEFAULT, Some(100.0)));
    let p = planned(&["--ramp", "0/s:500/s:5s"]);
    assert_eq!(p.rate(), Some(500.0));
}

#[test]
fn the_text_report_and_the_plot_come_out_of_a_ramp() {
    let (fake, seen) = fake(4, None);
    let server = Server::start(fake);
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("load.svg");
    let target = server.addr.to_string();
    let plan = planned(&[
        "--target",
        &target,
        "--ramp",
        "0:4:200ms,hold:100ms",
        "--connections",
        "2",
        "--in-flight",
        "2",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(plan.streams, 2);
    let outcome = execute(plan).unwrap_or_else(|e| panic!("{e:?}"));
    let r = Report::of(&outcome);
    assert_eq!(r.requests, seen.requests.load(Ordering::SeqCst));
    assert_eq!(r.responses, seen.draws.load(Ordering::SeqCst));
    assert!(!outcome.timeline.points.is_empty());
    let text = super::report::text(&r).join("\n");
    for needle in ["load 127.0.0.1:", "ramp 0:4:200ms,hold:100ms", "p99.9", "OK ", "empty"] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    super::report::plot(&svg, &outcome).unwrap();
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.contains("<svg") && drawn.contains("p99") && drawn.contains("draws/s"));
}

/// A stop (SIGINT in the command) ends a long run early; every request sent is accounted
/// for, and an open loop counts as unsent only what was due before the stop.
#[test]
fn a_stop_ends_the_run_early_with_everything_accounted_for() {
    let (fake, seen) = fake(1000, None);
    let server = Server::start(fake);
    let target = server.addr.to_string();
    for extra in [&["--in-flight", "3"][..], &["--rate", "1000"]] {
        let mut all = vec!["--target", &target, "--duration", "60s", "--streams", "2"];
        all.extend_from_slice(extra);
        let before = seen.requests.load(Ordering::SeqCst);
        let stop = async { tokio::time::sleep(std::time::Duration::from_millis(200)).await };
        let outcome = execute_until(planned(&all), stop).unwrap_or_else(|e| panic!("{e:?}"));
        let r = Report::of(&outcome);
        assert!(r.interrupted, "{extra:?}");
        assert!(r.seconds < 30.0, "{extra:?}: {}", r.seconds);
        assert_eq!(r.requests, seen.requests.load(Ordering::SeqCst) - before, "{extra:?}");
        assert_eq!(r.requests_ok, r.requests, "{extra:?}");
        if let Some(s) = &r.open_loop {
            // 60 s at 1000/s would leave tens of thousands unsent.
            assert!(s.unsent < 100, "{extra:?}: {}", s.unsent);
        }
    }
}
