//! The service under process death and shutdown: the real `rewardpool serve` under load
//! from four pipelined Draw streams (pulls of 10 and single draws, two pools, two
//! connections), every response recorded by the client.
//!
//! - SIGKILL at a random moment, `sync` and `buffered` trials alternating (`buffered` is
//!   durable against process death, which SIGKILL is): afterwards `wal dump` holds every
//!   answered draw with its request id and item, the log's draws are gap-free and end at
//!   its last commit, no commit falls inside an answered pull (in the pool `tens`, where
//!   every request is a pull of 10, inside *any* pull, answered or not), and a restarted
//!   server numbers its next draw right after the last logged one (so above every answered
//!   one). 10 trials by default; `REWARDPOOL_TRIALS=N` for more, `SEED=S` to replay.
//! - A keyed pull answered before a SIGKILL, retried over gRPC after the restart: the same
//!   outcomes, marked `replayed`.
//! - SIGTERM under load: every request the client sent is either answered in full (all its
//!   draws, in order) or never drawn at all, and then the stream ends with `UNAVAILABLE`;
//!   the log holds exactly the answered draws; exit 0, `wal verify` clean, no torn frame.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;
use tonic::Code;

use crate::service_harness::{
    self as harness, draw, runtime, DrawRequest, DrawResponse, RewardPoolServiceClient, Server,
};

/// The pool that gets pulls of 10 and single draws.
const MIXED: &str = "mixed";
/// The pool that gets only pulls of 10: every pull is ids `10k+1 ..= 10k+10`.
const TENS: &str = "tens";
/// Requests each load stream keeps unanswered.
const WINDOW: usize = 16;
/// Responses the load must have produced before the signal (the load is flowing).
const WARM: u64 = 100;

/// Two pools; segments large enough that a trial never rotates (the whole log stays).
fn config(durability: &str) -> String {
    format!(
        "\
working_dir: unused
pools:
  - name: {MIXED}
    catalog:
      - {{ item_id: gold, quantity: 1000000, probability: 1 }}
      - {{ item_id: silver, quantity: 1000000, probability: 2 }}
      - {{ item_id: mud, quantity: -1, probability: 3 }}
  - name: {TENS}
    catalog:
      - {{ item_id: gem, quantity: 1000000, probability: 1 }}
      - {{ item_id: mud, quantity: -1, probability: 3 }}
wal:
  durability: {durability}
  max_file_size_kb: 16384
"
    )
}

/// What one load stream sent and received.
#[derive(Debug)]
pub(crate) struct Record {
    /// The pool its requests named.
    pub(crate) pool: &'static str,
    /// Draws asked for by each request, in the order sent (handed to the stream).
    pub(crate) sent: Vec<u32>,
    /// Every response received, in order.
    pub(crate) responses: Vec<DrawResponse>,
    /// How the stream ended (`None`: it ended `OK`).
    pub(crate) end: Option<tonic::Status>,
}

/// An answered request: its draws' ids are `first .. first + len`; `received` holds the
/// responses that arrived (all of them, unless the server died while sending them).
pub(crate) struct Pull<'a> {
    pub(crate) first: u64,
    pub(crate) len: u32,
    pub(crate) received: &'a [DrawResponse],
}

impl Pull<'_> {
    /// One past the last id.
    fn end(&self) -> u64 {
        self.first + u64::from(self.len)
    }
}

impl Record {
    /// The requests that got at least one response, in order. Checks what the client can
    /// check alone: no response without a request, each pull's ids consecutive.
    pub(crate) fn pulls(&self, what: &str) -> Vec<Pull<'_>> {
        let mut pulls = Vec::new();
        let mut rest = self.responses.as_slice();
        for &len in &self.sent {
            if rest.is_empty() {
                break;
            }
            let take = rest.len().min(len as usize);
            let (received, tail) = rest.split_at(take);
            rest = tail;
            let first = received[0].request_id;
            for (j, r) in (0u64..).zip(received) {
                assert_eq!(
                    r.request_id,
                    first + j,
                    "{what}: pull from {first}: ids not consecutive"
                );
                assert!(!r.replayed, "{what}: an unkeyed draw marked replayed: {r:?}");
            }
            pulls.push(Pull { first, len, received });
        }
        assert!(rest.is_empty(), "{what}: {} responses without a request", rest.len());
        pulls
    }

    /// Requests answered in full.
    fn answered_whole(&self, what: &str) -> usize {
        self.pulls(what).iter().filter(|p| p.received.len() == p.len as usize).count()
    }
}

/// A connected client of our API (one connection per call).
async fn client(server: &Server) -> RewardPoolServiceClient<Channel> {
    server.client().await
}

/// One load stream (also the client side of `service_abuse`): keeps [`WINDOW`] requests of `sizes` (in turn) unanswered on `pool`
/// until the stream ends; counts every response into `received`.
pub(crate) async fn load(
    mut client: RewardPoolServiceClient<Channel>,
    pool: &'static str,
    sizes: &'static [u32],
    received: Arc<AtomicU64>,
) -> Record {
    let mut record = Record { pool, sent: Vec::new(), responses: Vec::new(), end: None };
    let (tx, rx) = mpsc::channel::<DrawRequest>(WINDOW);
    let mut inbound = match client.draw(ReceiverStream::new(rx)).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            record.end = Some(status);
            return record;
        }
    };
    // Requests answered in full, and the responses received for the next one.
    let mut answered = 0usize;
    let mut head = 0u32;
    loop {
        let room = record.sent.len() - answered < WINDOW;
        tokio::select! {
            biased;
            item = inbound.next() => match item {
                Some(Ok(response)) => {
                    record.responses.push(response);
                    received.fetch_add(1, Ordering::Relaxed);
                    head += 1;
                    if record.sent.get(answered) == Some(&head) {
                        answered += 1;
                        head = 0;
                    }
                }
                Some(Err(status)) => {
                    record.end = Some(status);
                    break;
                }
                None => break,
            },
            permit = tx.reserve(), if room => match permit {
                Ok(permit) => {
                    let len = sizes[record.sent.len() % sizes.len()];
                    let count = i32::try_from(len).expect("small count");
                    permit.send(DrawRequest { count, pool: pool.to_owned(), ..DrawRequest::default() });
                    record.sent.push(len);
                }
                Err(_) => break,
            },
        }
    }
    record
}

/// Runs the four load streams over two connections, calls `act` once `WARM` responses
/// arrived and `delay` more passed, and returns each stream's record once all ended.
async fn under_load(server: &Server, delay: Duration, act: impl FnOnce()) -> Vec<Record> {
    let a = client(server).await;
    let b = client(server).await;
    let received = Arc::new(AtomicU64::new(0));
    let plan: [(RewardPoolServiceClient<Channel>, &'static str, &'static [u32]); 4] =
        [(a.clone(), MIXED, &[10]), (b.clone(), MIXED, &[1]), (a, TENS, &[10]), (b, TENS, &[10])];
    let tasks: Vec<_> = plan
        .into_iter()
        .map(|(c, pool, sizes)| tokio::spawn(load(c, pool, sizes, Arc::clone(&received))))
        .collect();
    let start = Instant::now();
    while received.load(Ordering::Relaxed) < WARM {
        assert!(start.elapsed() < harness::DEADLINE, "the load got no responses");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(delay).await;
    act();
    let mut records = Vec::new();
    for task in tasks {
        let ended = tokio::time::timeout(harness::DEADLINE, task).await;
        records.push(ended.expect("a load stream ended within the deadline").expect("load task"));
    }
    records
}

/// The log of one pool as `wal dump --json` shows it.
#[derive(Debug, Default)]
struct Logged {
    /// Draws by request id: the item (`None`: an empty draw).
    draws: BTreeMap<u64, Option<String>>,
    /// Each commit's last request id, in log order.
    commits: Vec<u64>,
    /// Frames of the torn tail (`--all` only).
    torn: usize,
}

/// Runs `rewardpool CMD... --config root/config.yaml --data-dir root/data --pool POOL`.
fn on_pool(root: &Path, cmd: &[&str], pool: &str) -> crate::process::Run {
    let config = root.join("config.yaml");
    let data = root.join("data");
    let mut argv = cmd.to_vec();
    argv.extend([
        "--config",
        config.to_str().expect("utf-8 path"),
        "--data-dir",
        data.to_str().expect("utf-8 path"),
        "--pool",
        pool,
    ]);
    crate::cli::rewardpool(root, &argv)
}

/// `rewardpool wal dump --json [--all]` of `pool` in `root/data`.
fn dump(root: &Path, pool: &str, all: bool) -> Logged {
    let cmd: &[&str] =
        if all { &["wal", "dump", "--json", "--all"] } else { &["wal", "dump", "--json"] };
    let run = on_pool(root, cmd, pool);
    assert_eq!(run.code, Some(0), "wal dump --pool {pool}: {run:?}");
    let mut logged = Logged::default();
    for line in run.stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("dump line {line:?}: {e}"));
        if v.get("torn").and_then(serde_json::Value::as_bool) == Some(true) {
            logged.torn += 1;
            continue;
        }
        let id = || v["request_id"].as_u64().unwrap_or_else(|| panic!("no request id: {line}"));
        match v["type"].as_str() {
            Some("draw") => {
                let item = v["item"].as_str().map(str::to_owned);
                assert!(logged.draws.insert(id(), item).is_none(), "id logged twice: {line}");
            }
            Some("commit") => logged.commits.push(id()),
            _ => {}
        }
    }
    logged
}

/// `rewardpool wal verify` of `pool` in `root/data`.
fn verify(root: &Path, pool: &str) -> crate::process::Run {
    on_pool(root, &["wal", "verify"], pool)
}

/// The checks after a SIGKILL, for one pool: every answered draw logged with its item, the
/// log gap-free up to its last commit, no commit inside an answered pull (in `TENS`, inside
/// any pull). Returns the last logged id.
fn check_killed_pool(root: &Path, pool: &'static str, records: &[Record], what: &str) -> u64 {
    let what = format!("{what}, pool {pool}");
    let logged = dump(root, pool, false);
    let last = logged.draws.keys().next_back().copied().unwrap_or(0);
    let ids: Vec<u64> = logged.draws.keys().copied().collect();
    assert_eq!(ids, (1..=last).collect::<Vec<_>>(), "{what}: the log's draw ids have gaps");
    assert_eq!(
        logged.commits.last().copied().unwrap_or(0),
        last,
        "{what}: draws after the last commit"
    );
    // Answered pulls by first id → one past the last.
    let mut answered: BTreeMap<u64, u64> = BTreeMap::new();
    for record in records.iter().filter(|r| r.pool == pool) {
        for pull in record.pulls(&what) {
            for id in pull.first..pull.end() {
                assert!(
                    logged.draws.contains_key(&id),
                    "{what}: draw {id} of the answered pull {}+{} is not in the log (last {last})",
                    pull.first,
                    pull.len
                );
            }
            for r in pull.received {
                let item = (!r.item_id.is_empty()).then(|| r.item_id.clone());
                assert_eq!(logged.draws[&r.request_id], item, "{what}: request {}", r.request_id);
            }
            answered.insert(pull.first, pull.end());
        }
    }
    for &commit in &logged.commits {
        if let Some((&first, &end)) = answered.range(..=commit).next_back() {
            assert!(
                commit + 1 >= end,
                "{what}: a commit at {commit} falls inside the answered pull {first}..{end}"
            );
        }
        if pool == TENS {
            assert_eq!(commit % 10, 0, "{what}: a commit at {commit} falls inside a pull of 10");
        }
    }
    last
}

/// The trials and a random generator over their seed (printed; `SEED=S` replays).
fn campaign(name: &str, default: u64) -> (u64, impl FnMut() -> u64) {
    let trials =
        std::env::var("REWARDPOOL_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let seed: u64 = std::env::var("SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("{name}: {trials} trials, SEED={seed}");
    let mut state = seed | 1;
    let next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (trials, next)
}

/// One draw on `pool` over a fresh stream: its request id.
async fn one_draw(server: &Server, pool: &str) -> u64 {
    let mut c = client(server).await;
    let request = DrawRequest { count: 1, pool: pool.to_owned(), ..DrawRequest::default() };
    let (responses, end) = draw(&mut c, vec![request]).await;
    assert!(end.is_none(), "pool {pool}: {end:?}");
    assert_eq!(responses.len(), 1, "pool {pool}");
    responses[0].request_id
}

#[test]
fn sigkill_under_load_loses_no_answered_draw_and_splits_no_pull() {
    let (trials, mut next) = campaign("service crash test", 10);
    let mut answered_total = 0;
    for trial in 0..trials {
        let durability = if trial % 2 == 0 { "sync" } else { "buffered" };
        let what = format!("trial {trial} ({durability})");
        let dir = tempfile::tempdir().expect("temp dir");
        let yaml = config(durability);
        let server = harness::start_with(dir.path(), Some(&yaml), &[]);
        let delay = Duration::from_millis(next() % 150);
        let records =
            runtime().block_on(under_load(&server, delay, || server.signal(libc::SIGKILL)));
        let run = server.join();
        assert_eq!(run.code, None, "{what}: killed by a signal: {run:?}");
        answered_total += records.iter().map(|r| r.answered_whole(&what)).sum::<usize>();

        let mut last = BTreeMap::new();
        for pool in [MIXED, TENS] {
            last.insert(pool, check_killed_pool(dir.path(), pool, &records, &what));
        }
        // A restart continues right after the last logged draw: above every answered one.
        let server = harness::start_with(dir.path(), Some(&yaml), &[]);
        runtime().block_on(async {
            for pool in [MIXED, TENS] {
                let id = one_draw(&server, pool).await;
                assert_eq!(id, last[pool] + 1, "{what}, pool {pool}: the first id after restart");
            }
        });
        let run = server.stop(libc::SIGTERM);
        assert_eq!(run.code, Some(0), "{what}: {run:?}");
    }
    eprintln!("{trials} trials: {answered_total} requests answered before the kills");
    assert!(answered_total > 0, "no request was ever answered");
}

/// A keyed request on `pool`.
fn keyed(count: i32, key: u8, pool: &str) -> DrawRequest {
    DrawRequest { count, pool: pool.to_owned(), idempotency_key: vec![key; 16] }
}

#[test]
fn a_keyed_retry_after_sigkill_and_restart_replays_the_outcomes() {
    for durability in ["sync", "buffered"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let yaml = config(durability);
        let server = harness::start_with(dir.path(), Some(&yaml), &[]);
        let unkeyed = DrawRequest { count: 3, pool: MIXED.to_owned(), ..DrawRequest::default() };
        let first = runtime().block_on(async {
            let mut c = client(&server).await;
            let requests = vec![keyed(10, 0xa1, MIXED), unkeyed, keyed(1, 0xa2, MIXED)];
            let (responses, end) = draw(&mut c, requests).await;
            assert!(end.is_none(), "{durability}: {end:?}");
            responses
        });
        assert_eq!(first.len(), 14, "{durability}");
        assert!(first.iter().all(|r| !r.replayed), "{durability}: {first:?}");
        let run = server.kill();
        assert_eq!(run.code, None, "{durability}: {run:?}");

        let server = harness::start_with(dir.path(), Some(&yaml), &[]);
        runtime().block_on(async {
            let mut c = client(&server).await;
            // The retries, in the other order, on a new stream of a new process.
            let (again, end) =
                draw(&mut c, vec![keyed(1, 0xa2, MIXED), keyed(10, 0xa1, MIXED)]).await;
            assert!(end.is_none(), "{durability}: {end:?}");
            assert_eq!(again.len(), 11, "{durability}: {again:?}");
            let strip = |r: &DrawResponse| (r.request_id, r.item_id.clone(), r.error.clone());
            let expect: Vec<_> = first[13..].iter().chain(&first[..10]).map(strip).collect();
            assert_eq!(again.iter().map(strip).collect::<Vec<_>>(), expect, "{durability}");
            assert!(again.iter().all(|r| r.replayed), "{durability}: {again:?}");
            // The key with another count: refused; a new draw comes after everything.
            let (none, end) = draw(&mut c, vec![keyed(2, 0xa1, MIXED)]).await;
            assert!(none.is_empty(), "{durability}: {none:?}");
            let end = end.expect("an error status");
            assert_eq!(end.code(), Code::FailedPrecondition, "{durability}: {end:?}");
            assert_eq!(one_draw(&server, MIXED).await, 15, "{durability}");
        });
        let run = server.stop(libc::SIGTERM);
        assert_eq!(run.code, Some(0), "{durability}: {run:?}");
    }
}

#[test]
fn sigterm_under_load_answers_every_request_read_then_unavailable() {
    let (trials, mut next) = campaign("service SIGTERM test", 2);
    for trial in 0..trials {
        let durability = if trial % 2 == 0 { "sync" } else { "buffered" };
        let what = format!("trial {trial} ({durability})");
        let dir = tempfile::tempdir().expect("temp dir");
        let server = harness::start_with(dir.path(), Some(&config(durability)), &[]);
        let delay = Duration::from_millis(next() % 150);
        let records =
            runtime().block_on(under_load(&server, delay, || server.signal(libc::SIGTERM)));
        let run = server.join();
        assert_eq!(run.code, Some(0), "{what}: {run:?}");

        let mut answered: BTreeMap<&str, BTreeMap<u64, Option<String>>> = BTreeMap::new();
        let mut unanswered = 0;
        for (i, record) in records.iter().enumerate() {
            let what = format!("{what}, stream {i}");
            // The stream never half-closed: only the stop ends it, with UNAVAILABLE.
            let end = record.end.as_ref().unwrap_or_else(|| panic!("{what}: ended OK"));
            assert_eq!(end.code(), Code::Unavailable, "{what}: {end:?}");
            // Answered requests are answered whole: the responses cover exactly a prefix
            // of the requests sent; the rest got nothing.
            let pulls = record.pulls(&what);
            for pull in &pulls {
                assert_eq!(
                    pull.received.len(),
                    pull.len as usize,
                    "{what}: pull {} cut",
                    pull.first
                );
            }
            assert!(pulls.len() <= record.sent.len());
            unanswered += record.sent.len() - pulls.len();
            let draws = answered.entry(record.pool).or_default();
            for r in &record.responses {
                draws.insert(r.request_id, (!r.item_id.is_empty()).then(|| r.item_id.clone()));
            }
        }
        // Requests sent that met the stop (none when the client lagged behind its answers:
        // a loaded machine; not a failure).
        eprintln!(
            "{what}: {unanswered} requests met the stop: unanswered, and (checked below) not drawn"
        );
        for pool in [MIXED, TENS] {
            let what = format!("{what}, pool {pool}");
            let logged = dump(dir.path(), pool, true);
            assert_eq!(logged.torn, 0, "{what}: a torn tail after a clean stop");
            let answered = answered.remove(pool).unwrap_or_default();
            // Exactly the answered draws are in the log: nothing drawn went unanswered.
            let unanswered: BTreeSet<_> =
                logged.draws.keys().filter(|id| !answered.contains_key(id)).collect();
            assert!(unanswered.is_empty(), "{what}: drawn but not answered: {unanswered:?}");
            assert_eq!(logged.draws, answered, "{what}: the log and the answers differ");
            let last = answered.keys().next_back().copied().unwrap_or(0);
            let said = format!("pool {pool:?} stopped at request id {last}");
            assert!(run.stderr.contains(&said), "{what}: {said:?} missing: {run:?}");
            let verified = verify(dir.path(), pool);
            assert_eq!(verified.code, Some(0), "{what}: {verified:?}");
        }
    }
}
