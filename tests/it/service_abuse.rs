//! The service against bad clients: what `service.rs` does not already cover of the
//! issue's bad-input list. Raw HTTP/2 (the `h2` crate) for what a gRPC client cannot send
//! (a malformed message, a frame cut short, a compressed flag without an encoding, a length
//! past the limit, a half-sent frame then a dropped connection or a held stream); 10,000
//! Draw streams opened and dropped (memory back near its level, nothing leaked: the draws
//! add up, a SIGTERM stops at once); a client process SIGKILLed mid-stream (this test
//! binary again, as a client: see [`child_client_process`]); a gateway queue kept full
//! past `--queue-timeout-ms` (`RESOURCE_EXHAUSTED`, nothing drawn unanswered); a pool whose
//! log fails (its directory removed under it: the next segment cannot be installed) is
//! `UNAVAILABLE` while the other pool goes on. After each, the server still answers other
//! streams, and a SIGTERM stops it promptly with no stream left open (exit 0; 1 once a pool
//! has failed).

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

use crate::service_crash::load;
use crate::service_harness::{
    self as harness, draw, ours, request, runtime, DrawRequest, RewardPoolServiceClient, Server,
};

/// The longest a stop may take when nothing is left in flight (a leaked stream holds the
/// server for its drain limit, 20 s by default; a clean stop takes well under a second).
const PROMPT_STOP: Duration = Duration::from_secs(10);

/// How a raw Draw call ended.
#[derive(Debug)]
enum Raw {
    /// With this `grpc-status` code and message.
    Status(i32, String),
    /// With an HTTP/2 error (a reset stream, a closed connection).
    Reset(String),
    /// The response ended without a `grpc-status`.
    NoStatus,
}

/// A gRPC message frame: compressed flag, 4-byte big-endian length, then `body` (whose
/// length may differ from `len`, to cut the frame short).
fn frame(compressed: u8, len: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![compressed];
    bytes.extend(len.to_be_bytes());
    bytes.extend(body);
    bytes
}

/// An encoded `DrawRequest` of `count` draws, framed.
fn good_frame(count: i32) -> Vec<u8> {
    let body = DrawRequest { count, ..DrawRequest::default() }.encode_to_vec();
    frame(0, u32::try_from(body.len()).expect("small"), &body)
}

/// Opens a raw HTTP/2 connection to `server` and a `Draw` call on it; sends `bytes` (and
/// half-closes when `end`). Returns the call's response future and the request's send
/// half (keep it to hold the stream open), and the connection's task.
async fn raw_call(
    server: &Server,
    bytes: Vec<u8>,
    end: bool,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(&server.addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.expect("HTTP/2 ready");
    let call = http::Request::builder()
        .method("POST")
        .uri(format!("{}/rewardpool.RewardPoolService/Draw", server.url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (response, mut send) = client.send_request(call, false).expect("send request");
    send.send_data(Bytes::from(bytes), end).expect("send data");
    (response, send, task)
}

/// Reads a raw call's response to its end: its DATA bytes, and how it ended.
async fn raw_outcome(response: h2::client::ResponseFuture) -> (usize, Raw) {
    let work = async {
        let response = match response.await {
            Ok(response) => response,
            Err(e) => return (0, Raw::Reset(e.to_string())),
        };
        let status = |headers: &http::HeaderMap| {
            let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
            let message = headers
                .get("grpc-message")
                .and_then(|m| m.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            Some(Raw::Status(code, message))
        };
        // A trailers-only response carries the status in its headers.
        if let Some(raw) = status(response.headers()) {
            return (0, raw);
        }
        let mut body = response.into_body();
        let mut data = 0;
        while let Some(chunk) = body.data().await {
            match chunk {
                Ok(chunk) => {
                    data += chunk.len();
                    let _ = body.flow_control().release_capacity(chunk.len());
                }
                Err(e) => return (data, Raw::Reset(e.to_string())),
            }
        }
        match body.trailers().await {
            Ok(Some(trailers)) => (data, status(&trailers).unwrap_or(Raw::NoStatus)),
            Ok(None) => (data, Raw::NoStatus),
            Err(e) => (data, Raw::Reset(e.to_string())),
        }
    };
    tokio::time::timeout(harness::DEADLINE, work).await.expect("the raw call ended in time")
}

/// The server still draws for a well-behaved client: one request of 3 on a new connection.
async fn still_serves(server: &Server, what: &str) {
    let mut client = server.client().await;
    let (responses, end) = draw(&mut client, vec![request(3)]).await;
    assert!(end.is_none(), "{what}: then a good stream failed: {end:?}");
    assert_eq!(responses.len(), 3, "{what}: then a good stream got {responses:?}");
}

/// SIGTERM; the server must exit 0 promptly with no stream left open.
fn stop_promptly(server: Server, what: &str) -> crate::process::Run {
    let start = Instant::now();
    let run = server.stop(libc::SIGTERM);
    let took = start.elapsed();
    assert_eq!(run.code, Some(0), "{what}: {run:?}");
    assert!(!run.stderr.contains("still open"), "{what}: a stream outlived the stop: {run:?}");
    assert!(took < PROMPT_STOP, "{what}: the stop took {took:?}: {run:?}");
    run
}

#[test]
fn malformed_and_truncated_frames_end_their_call_and_the_server_goes_on() {
    // `good_frame(2)` first where the bad frame follows a good request: that one is answered.
    let cases: [(&str, Vec<u8>, &[i32]); 5] = [
        ("a message that is not protobuf", frame(0, 3, &[0xff, 0xff, 0xff]), &[3]),
        (
            "a good request, then garbage",
            [good_frame(2), frame(0, 2, &[0x08, 0xff])].concat(),
            &[3],
        ),
        ("a frame cut short, then the end", frame(0, 100, &[0x08, 0x01]), &[3, 13]),
        ("a compressed flag and no encoding", frame(1, 2, &[0x08, 0x01]), &[3]),
        ("a length past the limit", frame(0, u32::MAX, &[0x08, 0x01]), &[3]),
    ];
    let server = harness::start(None, &[]);
    runtime().block_on(async {
        for (what, bytes, codes) in cases {
            let (response, _send, _task) = raw_call(&server, bytes, true).await;
            let (data, outcome) = raw_outcome(response).await;
            eprintln!("{what}: {outcome:?} after {data} bytes");
            match &outcome {
                Raw::Status(code, message) => {
                    assert!(codes.contains(code), "{what}: status {code} {message:?}");
                    if *code == 3 {
                        // The reason, percent-encoded.
                        assert!(message.contains("malformed"), "{what}: {message:?}");
                    }
                }
                // A reset stream is an answer too (never a hang).
                Raw::Reset(why) => eprintln!("{what}: the stream was reset: {why}"),
                Raw::NoStatus => panic!("{what}: the call ended without a status"),
            }
            if what.starts_with("a good request") {
                // Two DrawResponses (each a 5-byte prefix and a few bytes), before the error.
                assert!(data > 10, "{what}: the good request was not answered ({data} bytes)");
            }
            still_serves(&server, what).await;
        }

        // A frame cut short, then the connection dropped without ending the stream.
        let (_response, send, task) = raw_call(&server, frame(0, 100, &[0x08]), false).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        task.abort();
        drop(send);
        still_serves(&server, "a half-sent frame, then the connection dropped").await;
    });
    let run = stop_promptly(server, "after malformed frames");
    assert!(run.stderr.contains("stopped at request id"), "{run:?}");
}

#[test]
fn a_half_sent_frame_held_open_does_not_hold_the_stop() {
    let server = harness::start(None, &[]);
    let rt = runtime();
    let (response, send, _task) = rt.block_on(async {
        // A good request answered, then a frame cut short on a stream the client keeps open.
        let bytes = [good_frame(1), frame(0, 100, &[0x08])].concat();
        raw_call(&server, bytes, false).await
    });
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
    let waiter = rt.spawn(raw_outcome(response));
    let run = stop_promptly(server, "a half-sent frame held open");
    assert!(run.stderr.contains("stopped at request id 1"), "{run:?}");
    let (data, outcome) = rt.block_on(waiter).expect("raw call task");
    assert!(data > 0, "the good request was not answered");
    match outcome {
        Raw::Status(14, _) | Raw::Reset(_) => {}
        other => panic!("the held stream ended with {other:?}, not UNAVAILABLE"),
    }
    drop(send);
}

/// The server's resident memory, in KiB (`VmRSS` in `/proc/PID/status`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS in kB")
}

/// Opens `streams` Draw streams over `clients` (at most 100 open per connection at a time,
/// below the server's 200) and drops each: a third right after it opened, a third after one
/// answered draw, a third right after sending a pull of 10 (its answer still in flight).
/// Returns (draws answered, pulls of 10 left in flight).
async fn churn(clients: &[RewardPoolServiceClient<Channel>], streams: usize) -> (u64, u64) {
    let per_batch = 100 * clients.len();
    let (mut answered, mut in_flight) = (0, 0);
    for batch in (0..streams).step_by(per_batch) {
        let mut tasks = tokio::task::JoinSet::new();
        for i in batch..streams.min(batch + per_batch) {
            let mut client = clients[i % clients.len()].clone();
            tasks.spawn(async move {
                let (tx, rx) = mpsc::channel(1);
                let opened = client.draw(ReceiverStream::new(rx)).await;
                let mut inbound = opened.expect("a Draw stream opens").into_inner();
                match i % 3 {
                    0 => (0, 0),
                    1 => {
                        tx.send(request(1)).await.expect("send");
                        let first = inbound.next().await;
                        assert!(matches!(first, Some(Ok(_))), "stream {i}: {first:?}");
                        (1, 0)
                    }
                    _ => {
                        tx.send(request(10)).await.expect("send");
                        (0, 1)
                    }
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (a, f) = done.expect("a churn task");
            answered += a;
            in_flight += f;
        }
    }
    (answered, in_flight)
}

#[test]
fn ten_thousand_streams_opened_and_dropped_leak_nothing() {
    const MAX_GROWTH_KIB: u64 = 64 * 1024;
    let server = harness::start(None, &[]);
    runtime().block_on(async {
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(server.client().await);
        }
        // Warm up (the allocator's and the runtime's pools), then measure.
        let (a0, f0) = churn(&clients, 1_000).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss_kib(server.pid());
        let (a1, f1) = churn(&clients, 10_000).await;
        let (answered, in_flight) = (a0 + a1, f0 + f1);
        // Memory comes back near its level (freed streams may take a moment to settle).
        let start = Instant::now();
        let mut after = rss_kib(server.pid());
        while after > before + MAX_GROWTH_KIB && start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            after = rss_kib(server.pid());
        }
        eprintln!("VmRSS {before} KiB before 10,000 streams, {after} KiB after");
        assert!(
            after <= before + MAX_GROWTH_KIB,
            "VmRSS grew from {before} KiB to {after} KiB over 10,000 dropped streams"
        );
        // Every answered draw happened once; a dropped pull happened whole or not at all.
        let mut client = server.client().await;
        let state = client.get_state(ours::GetStateRequest::default()).await.expect("GetState");
        let last = state.into_inner().last_request_id;
        assert!(
            last >= answered && last <= answered + 10 * in_flight && (last - answered) % 10 == 0,
            "last request id {last}: {answered} draws answered, {in_flight} pulls of 10 dropped"
        );
        still_serves(&server, "10,000 streams dropped").await;
    });
    stop_promptly(server, "after 10,000 dropped streams");
}

/// Set (to the server's URL) in the environment of the client process the kill test
/// spawns.
const CHILD_ENV: &str = "REWARDPOOL_TEST_CHILD_CLIENT";
/// The child's line once its streams are busy.
const CHILD_READY: &str = "child client: streams busy";

/// Not a test of its own: the client process of
/// [`a_client_killed_mid_stream_stalls_nothing`] (this test binary, run again with
/// [`CHILD_ENV`] set). Without it, it returns at once. With it: a pipelined stream of
/// pulls, and a stream that sends 300 pulls of 100 and never reads an answer (the
/// server's writes to it stall on flow control); then it says so and waits to be killed.
#[test]
fn child_client_process() {
    let Ok(url) = std::env::var(CHILD_ENV) else { return };
    runtime().block_on(async {
        let endpoint = Channel::from_shared(url).expect("url");
        let client = RewardPoolServiceClient::new(endpoint.connect().await.expect("connect"));
        let received = Arc::new(AtomicU64::new(0));
        tokio::spawn(load(client.clone(), "default", &[10, 1], Arc::clone(&received)));
        let (tx, rx) = mpsc::channel(512);
        let mut deaf = client.clone();
        let _inbound = deaf.draw(ReceiverStream::new(rx)).await.expect("open").into_inner();
        for _ in 0..300 {
            tx.send(request(100)).await.expect("send");
        }
        while received.load(Ordering::Relaxed) < 100 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!("{CHILD_READY}");
        std::future::pending::<()>().await;
    });
}

/// How a stream of ours that is still sending may end when the server stops: with the
/// `UNAVAILABLE` the server sends, or, when its connection is closed under it before the
/// client has read that status, with the transport's error, which tonic reports as
/// `UNKNOWN` around an I/O error: a broken pipe (seen under load 7-9 on the 2 cores, 7 runs
/// of 60: h2's "stream closed because of a broken pipe", the connection's end read before
/// the stream's) or a reset connection. Never another code: a status the server chose is
/// `UNAVAILABLE` (`service/status.rs` maps nothing to `UNKNOWN`).
fn ended_by_the_stop(end: &tonic::Status) -> bool {
    use std::error::Error as _;
    use std::io::ErrorKind;
    if end.code() == tonic::Code::Unavailable {
        return true;
    }
    let mut source = end.source();
    while let Some(e) = source {
        let io = e
            .downcast_ref::<std::io::Error>()
            .or_else(|| e.downcast_ref::<h2::Error>().and_then(h2::Error::get_io));
        if let Some(io) = io {
            return end.code() == tonic::Code::Unknown
                && matches!(io.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset);
        }
        source = e.source();
    }
    false
}

#[test]
fn a_client_killed_mid_stream_stalls_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = harness::start_with(dir.path(), None, &[]);
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", "service_abuse::child_client_process", "--nocapture"])
        .env(CHILD_ENV, server.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the client process");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(CHILD_READY) {
                let _ = ready_tx.send(());
            }
        }
    });
    let rt = runtime();
    // Our own stream, drawing before, during and after the kill.
    let received = Arc::new(AtomicU64::new(0));
    let client = rt.block_on(server.client());
    let ours_task = rt.spawn(load(client, "default", &[10], Arc::clone(&received)));
    let ready = ready_rx.recv_timeout(harness::DEADLINE);
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready.is_ok(), "the client process never got busy");
    rt.block_on(async {
        // The server keeps answering other streams after the kill.
        let at_kill = received.load(Ordering::Relaxed);
        let start = Instant::now();
        while received.load(Ordering::Relaxed) < at_kill + 500 {
            assert!(start.elapsed() < harness::DEADLINE, "our stream stalled after the kill");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        still_serves(&server, "a client killed mid-stream").await;
    });
    let data = server.data_dir();
    stop_promptly(server, "after a client was killed mid-stream");
    let record = rt.block_on(ours_task).expect("our stream's task");
    let end = record.end.expect("our stream ended by the stop");
    assert!(ended_by_the_stop(&end), "{end:?}");
    let verify = crate::cli::rewardpool(
        dir.path(),
        &["wal", "verify", "--data-dir", data.to_str().expect("utf-8 path")],
    );
    assert_eq!(verify.code, Some(0), "{verify:?}");
}

/// One pool whose engine takes one request at a time (a ring of one request): its gateway
/// drains its queue (4,096 jobs) slower than eight streams of 20,000 requests, sent at once
/// and read ahead (`--stream-window 65536`), fill it. `buffered`, so the pace does not hang
/// on the device's sync speed (on tmpfs `sync` is as fast).
const SLOW: &str = "\
working_dir: unused
pool:
  catalog:
    - { item_id: gold, quantity: 1000000, probability: 1 }
    - { item_id: mud, quantity: -1, probability: 3 }
wal:
  durability: buffered
  max_request_buffer_size: 1
  flush_after_n_draw: 1
";

#[test]
fn a_full_gateway_queue_is_resource_exhausted_past_its_deadline() {
    const STREAMS: usize = 8;
    const REQUESTS: usize = 20_000;
    // A 1 ms deadline: with 20 ms, a machine busy with other work sent too slowly for the
    // queue to stay full that long, and no stream met it (a flaky failure under load).
    let server =
        harness::start(Some(SLOW), &["--queue-timeout-ms", "1", "--stream-window", "65536"]);
    runtime().block_on(async {
        let client = server.client().await;
        let mut tasks = Vec::new();
        for _ in 0..STREAMS {
            let mut client = client.clone();
            tasks.push(tokio::spawn(async move {
                draw(&mut client, (0..REQUESTS).map(|_| request(1)).collect()).await
            }));
        }
        let (mut exhausted, mut answered) = (0, 0);
        for (i, task) in tasks.into_iter().enumerate() {
            let (responses, end) = task.await.expect("stream task");
            answered += responses.len() as u64;
            let ids: Vec<u64> = responses.iter().map(|r| r.request_id).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "stream {i}: out of order");
            match end {
                None => assert_eq!(responses.len(), REQUESTS, "stream {i} ended OK early"),
                Some(status) => {
                    assert_eq!(
                        status.code(),
                        tonic::Code::ResourceExhausted,
                        "stream {i}: {status:?}"
                    );
                    assert!(status.message().contains("overloaded"), "{status:?}");
                    assert!(responses.len() < REQUESTS, "stream {i}");
                    exhausted += 1;
                }
            }
        }
        assert!(exhausted > 0, "no stream met a full queue");
        // What was queued before the refused request was drawn and answered; the refused
        // one was never drawn.
        let mut c = client.clone();
        let state = c.get_state(ours::GetStateRequest::default()).await.expect("GetState");
        assert_eq!(state.into_inner().last_request_id, answered, "drawn but unanswered");
        still_serves(&server, "a full gateway queue").await;
    });
    stop_promptly(server, "after a full gateway queue");
}

/// Two pools; `beta` rotates its small segments often.
const TWO_POOLS_SMALL_BETA: &str = "\
working_dir: unused
pools:
  - name: alpha
    catalog:
      - { item_id: gold, quantity: -1, probability: 1 }
  - name: beta
    catalog:
      - { item_id: gem, quantity: -1, probability: 1 }
    wal:
      max_file_size_kb: 16
wal:
  durability: sync
";

#[test]
fn a_pool_whose_log_fails_is_unavailable_and_the_others_go_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = harness::start_with(dir.path(), Some(TWO_POOLS_SMALL_BETA), &[]);
    let on =
        |pool: &str, count| DrawRequest { count, pool: pool.to_owned(), ..DrawRequest::default() };
    runtime().block_on(async {
        let mut client = server.client().await;
        let (responses, end) = draw(&mut client, vec![on("alpha", 5), on("beta", 5)]).await;
        assert!(end.is_none() && responses.len() == 10, "{end:?} {responses:?}");
        // The pool's directory vanishes: its next segment cannot be created.
        std::fs::remove_dir_all(server.data_dir().join("beta")).expect("remove beta's directory");
        let mut failed = None;
        for _ in 0..200 {
            let (_, end) = draw(&mut client, (0..10).map(|_| on("beta", 100)).collect()).await;
            if let Some(status) = end {
                failed = Some(status);
                break;
            }
        }
        let status = failed.expect("beta never failed");
        eprintln!("{status:?}");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        let (responses, end) = draw(&mut client, vec![on("alpha", 5)]).await;
        assert!(end.is_none() && responses.len() == 5, "alpha: {end:?} {responses:?}");
        let pools =
            client.list_pools(ours::ListPoolsRequest {}).await.expect("ListPools").into_inner();
        eprintln!("{pools:?}");
    });
    let run = server.stop(libc::SIGTERM);
    eprintln!("{run:?}");
}

/// A live client that stops reading (300 pulls of 1,000: more than its HTTP/2 window holds)
/// holds a SIGTERM until the server's drain limit (`--drain-timeout-ms`, 1 s here), no
/// longer: then the server stops anyway, exit 0, whole pulls drawn.
#[test]
fn a_deaf_client_holds_the_stop_no_longer_than_the_drain_limit() {
    let server = harness::start(None, &["--drain-timeout-ms", "1000"]);
    let rt = runtime();
    let (tx, inbound) = rt.block_on(async {
        let mut client = server.client().await;
        let (tx, rx) = mpsc::channel(512);
        let inbound = client.draw(ReceiverStream::new(rx)).await.expect("open").into_inner();
        for _ in 0..300 {
            tx.send(request(1000)).await.expect("send");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        (tx, inbound)
    });
    let start = Instant::now();
    server.signal(libc::SIGTERM);
    let run = server.join();
    let took = start.elapsed();
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("calls still open after 1s"), "{run:?}");
    // Whole pulls were drawn (as many as the stream had read), and logged.
    let id = run
        .stderr
        .split("stopped at request id ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()));
    assert!(id.is_some_and(|id| id > 0 && id % 1000 == 0), "{id:?}: {run:?}");
    assert!(took >= Duration::from_secs(1), "the stop did not wait for the drain: {took:?}");
    assert!(took < PROMPT_STOP, "the stop took {took:?}");
    drop((tx, inbound));
}
