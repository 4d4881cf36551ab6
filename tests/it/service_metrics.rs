//! `serve` with its metrics server: `/metrics` scraped over HTTP and parsed as Prometheus
//! text while the server runs, its values checked against what the test's gRPC calls did;
//! `/healthz`, `/readyz`.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use crate::service_harness::{self as harness, ours, request};

/// One HTTP/1.1 GET: the status code and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status");
    (code, body.to_owned())
}

/// Samples of `/metrics` by name and labels (`name{k="v",...}` with labels sorted).
fn scrape(addr: &str) -> HashMap<String, f64> {
    let (code, body) = get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let mut samples = HashMap::new();
    for sample in parsed.samples {
        let mut labels: Vec<String> =
            sample.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        labels.sort();
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        samples.insert(format!("{}{{{}}}", sample.metric, labels.join(",")), value);
    }
    samples
}

fn value(samples: &HashMap<String, f64>, key: &str) -> f64 {
    *samples.get(key).unwrap_or_else(|| {
        let mut keys: Vec<&String> = samples.keys().collect();
        keys.sort();
        panic!("no sample {key} in /metrics: {keys:?}")
    })
}

#[test]
fn metrics_match_what_the_grpc_calls_did() {
    let server = harness::start(None, &["--json", "--metrics-listen", "127.0.0.1:0"]);
    let metrics = server.metrics_addr.clone().expect("the metrics address in the JSON line");
    assert_eq!(get(&metrics, "/healthz").0, 200);
    assert_eq!(get(&metrics, "/readyz").0, 200);
    let rt = harness::runtime();
    rt.block_on(async {
        let mut client = server.client().await;
        // 3 requests: a pull of 10, a single draw, a pull of 4.
        let (responses, end) =
            harness::draw(&mut client, vec![request(10), request(1), request(4)]).await;
        assert!(end.is_none(), "{end:?}");
        assert_eq!(responses.len(), 15);
        // A keyed pull, then its retry (replayed).
        let keyed =
            ours::DrawRequest { count: 2, idempotency_key: vec![7; 16], pool: String::new() };
        for _ in 0..2 {
            let (responses, end) = harness::draw(&mut client, vec![keyed.clone()]).await;
            assert!(end.is_none(), "{end:?}");
            assert_eq!(responses.len(), 2);
        }
        // A refused stream: a count above the maximum.
        let (_, end) = harness::draw(&mut client, vec![request(1_000_000)]).await;
        assert_eq!(end.map(|s| s.code()), Some(tonic::Code::InvalidArgument));
        client.get_state(ours::GetStateRequest::default()).await.expect("GetState");
    });
    // The counters are stored once per group: poll until the last group shows.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let samples = loop {
        let samples = scrape(&metrics);
        if samples.get("rewardpool_draws_total{pool=\"default\"}") == Some(&17.0)
            || std::time::Instant::now() > deadline
        {
            break samples;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // 15 unkeyed draws + 2 keyed ones; the retry draws nothing new.
    assert_eq!(value(&samples, "rewardpool_draws_total{pool=\"default\"}"), 17.0);
    assert_eq!(value(&samples, "rewardpool_replayed_total{pool=\"default\"}"), 1.0);
    // Requests with new draws (the service sends each as a pull): 10, 1, 4 and the keyed 2.
    assert_eq!(value(&samples, "rewardpool_pulls_total{pool=\"default\"}"), 4.0);
    assert_eq!(value(&samples, "rewardpool_grpc_calls_total{code=\"OK\",method=\"Draw\"}"), 3.0);
    assert_eq!(
        value(&samples, "rewardpool_grpc_calls_total{code=\"InvalidArgument\",method=\"Draw\"}"),
        1.0
    );
    assert_eq!(
        value(&samples, "rewardpool_grpc_calls_total{code=\"OK\",method=\"GetState\"}"),
        1.0
    );
    assert_eq!(value(&samples, "rewardpool_pool_state{pool=\"default\",state=\"running\"}"), 1.0);
    // The built-in catalog's unlimited item reads -1; the others are below their start.
    assert_eq!(value(&samples, "rewardpool_item_remaining{item=\"mud\",pool=\"default\"}"), -1.0);
    let run = server.stop(libc::SIGTERM);
    assert_eq!(run.code, Some(0), "{run:?}");
}
