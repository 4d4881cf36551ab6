//! `serve --standby` against the tests' own 3-node NATS cluster (`nats_harness`): a standby
//! server follows a primary under load and reports its lag (Watch, `/metrics`), refuses
//! draws and updates, and is promoted in place after the primary's SIGKILL (`promote
//! --connect`). Also the shipper's `max_lag_groups` alarm with NATS stopped. Without
//! `nats-server` each test prints one line and returns (unless `REWARDPOOL_REQUIRE_NATS`).

use std::path::Path;

use crate::nats_harness;
use crate::replication::{
    config, eventually, gauge, load, load_until_dead, logged_draws, takeover_config,
};
use crate::service_harness::ours::{
    GetStateRequest, ListPoolsRequest, PoolMetrics, UpdateRequest, WatchRequest,
};
use crate::service_harness::{draw, request, runtime, start_with, DrawRequest, Server};

/// The first `Watch` reading of `server`'s only pool.
fn watch_once(rt: &tokio::runtime::Runtime, server: &Server) -> PoolMetrics {
    rt.block_on(async {
        let mut client = server.client().await;
        let mut stream = client
            .watch(WatchRequest { pool: String::new(), interval_ms: 10 })
            .await
            .expect("Watch answers")
            .into_inner();
        let reading = stream.message().await.expect("a Watch reading").expect("not ended");
        assert_eq!(reading.pools.len(), 1, "{reading:?}");
        reading.pools.into_iter().next().expect("one pool")
    })
}

/// The value of the `/metrics` line that starts with `line` (labels included), at `addr`.
fn metric_line(addr: &str, line: &str) -> Option<i64> {
    let port: u16 = addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("a port");
    let body = nats_harness::http_get(port, "/metrics").expect("/metrics answers");
    body.lines().find_map(|l| l.strip_prefix(line)).and_then(|v| v.trim().parse().ok())
}

/// `GetState` of `server`'s only pool: its items (id, quantity, weight) and last request id.
fn state(rt: &tokio::runtime::Runtime, server: &Server) -> (Vec<(String, i32, i64)>, u64) {
    rt.block_on(async {
        let mut client = server.client().await;
        let state = client
            .get_state(GetStateRequest::default())
            .await
            .expect("GetState answers")
            .into_inner();
        let items =
            state.items.into_iter().map(|i| (i.item_id, i.quantity, i.probability)).collect();
        (items, state.last_request_id)
    })
}

/// A standby server (`serve --standby`) follows a primary (`ack: replica`) under load from
/// four clients: once the load stops its lag goes to 0 in `Watch` and `/metrics`, and its
/// `GetState` is the primary's. Draws and updates on it are FAILED_PRECONDITION naming the
/// pool. Then, the primary under load again, SIGKILL, and the running standby promoted in
/// place (`promote --connect`): the same server serves the pool with request ids above
/// every acknowledged draw, ships it, and every acknowledged draw is in its log with its
/// item.
#[test]
fn a_standby_server_follows_refuses_draws_and_takes_over() {
    let Some(cluster) = nats_harness::cluster("standby_server") else { return };
    let rt = runtime();
    let yaml = takeover_config(&cluster, "standby");
    let old = tempfile::tempdir().expect("temp dir");
    let new = tempfile::tempdir().expect("temp dir");
    let primary = start_with(old.path(), Some(&yaml), &["--json"]);
    // The stream exists once a first pull is answered (`ack: replica`).
    let warm = load(&rt, &primary, 1, 1) as u64;
    let standby = start_with(
        new.path(),
        Some(&yaml),
        &["--json", "--standby", "--metrics-listen", "127.0.0.1:0"],
    );
    let metrics = standby.metrics_addr.clone().expect("a metrics address");
    let drawn = warm + load(&rt, &primary, 4, 100) as u64;
    eventually("the standby's Watch shows it caught up", || {
        let m = watch_once(&rt, &standby);
        m.replica_lag_messages == 0 && m.last_request_id == drawn
    });
    let reading = watch_once(&rt, &standby);
    assert_eq!((reading.role.as_str(), reading.state.as_str()), ("standby", "running"));
    assert_eq!((reading.replica_lag_draws, reading.replica_lag_seconds), (0, 0), "{reading:?}");
    assert!(reading.replica_applied_sequence > 0, "{reading:?}");
    eventually("the standby's /metrics show it caught up", || {
        gauge(&metrics, "rewardpool_replica_lag_messages") == 0
            && gauge(&metrics, "rewardpool_replica_applied_request_id") == drawn
    });
    assert_eq!(gauge(&metrics, "rewardpool_replica_lag_draws"), 0);
    assert_eq!(gauge(&metrics, "rewardpool_replica_following"), 1);
    assert_eq!(gauge(&metrics, "rewardpool_replica_failed"), 0);
    let role = |role: &str| {
        metric_line(&metrics, &format!("rewardpool_pool_role{{pool=\"default\",role=\"{role}\"}} "))
    };
    assert_eq!((role("standby"), role("primary")), (Some(1), Some(0)));
    assert_eq!(state(&rt, &standby), state(&rt, &primary), "the replica's state is the primary's");
    let pools = rt.block_on(async {
        let mut client = standby.client().await;
        client.list_pools(ListPoolsRequest {}).await.expect("ListPools").into_inner().pools
    });
    assert_eq!(pools.len(), 1);
    assert_eq!((pools[0].role.as_str(), pools[0].last_request_id), ("standby", drawn));

    // Draws (the only pool, or named) and updates are refused: this server is a standby.
    let refused = rt.block_on(async {
        let mut client = standby.client().await;
        let named = DrawRequest { count: 1, pool: "default".into(), ..DrawRequest::default() };
        let (_, only) = draw(&mut client, vec![request(10)]).await;
        let (_, by_name) = draw(&mut client, vec![named]).await;
        let update = client
            .update(UpdateRequest {
                pool: String::new(),
                item_id: "gold".into(),
                quantity: Some(5),
                weight: None,
            })
            .await
            .err();
        [only, by_name, update]
    });
    for status in refused {
        let status = status.expect("refused");
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains("pool \"default\" is a standby"), "{status:?}");
    }

    // Fail-over: load again, SIGKILL once the standby has applied some of it.
    let loader = load_until_dead(&primary, 4);
    eventually("the standby applies the new load", || {
        gauge(&metrics, "rewardpool_replica_applied_request_id") > drawn + 500
    });
    let killed = primary.kill();
    assert_eq!(killed.code, None, "SIGKILLed: {killed:?}");
    let acked = loader.join().expect("the load thread");
    let highest = acked.iter().map(|(id, _)| *id).max().unwrap_or(0).max(drawn);
    // In place: the running standby catches up, takes the lease, fences, serves.
    let promote = |root: &Path| {
        crate::cli::rewardpool(root, &["promote", "--connect", &standby.addr, "--json"])
    };
    let promoted = promote(new.path());
    assert_eq!(promoted.code, Some(0), "{promoted:?}");
    let answer: serde_json::Value =
        serde_json::from_str(promoted.stdout.trim()).expect("promote's JSON");
    assert_eq!(answer["epoch"], 2, "{answer}");
    let last = answer["last_request_id"].as_u64().expect("last_request_id");
    assert!(last >= highest, "promoted at {last}, acknowledged up to {highest}");
    let (responses, status) = rt.block_on(async {
        let mut client = standby.client().await;
        draw(&mut client, vec![request(10); 3]).await
    });
    assert!(status.is_none(), "the same server serves the pool now: {status:?}");
    assert_eq!(responses.len(), 30);
    assert!(responses.iter().all(|r| r.request_id > last), "ids continue above {last}");
    let reading = watch_once(&rt, &standby);
    assert_eq!((reading.role.as_str(), reading.state.as_str()), ("primary", "running"));
    assert_eq!((role("standby"), role("primary")), (Some(0), Some(1)));
    eventually("the promoted pool ships", || {
        gauge(&metrics, "rewardpool_replication_shipped_request_id") == last + 30
    });
    let again = promote(new.path());
    assert_eq!(again.code, Some(2), "a primary is not promoted again: {again:?}");
    assert!(again.stderr.contains("is a primary on this server"), "{again:?}");
    let served = standby.stop(libc::SIGTERM);
    assert_eq!(served.code, Some(0), "{served:?}");
    assert!(served.stderr.contains("promoted in place to epoch 2"), "{served:?}");
    let logged = logged_draws(new.path(), &new.path().join("data"));
    for (id, item) in &acked {
        assert_eq!(logged.get(id), Some(item), "acknowledged draw {id}");
    }
    assert!(acked.len() > 500, "the fail-over was under load: {} draws", acked.len());
    let verify =
        crate::cli::rewardpool(new.path(), &["wal", "verify", "--data-dir", &data(new.path())]);
    assert_eq!(verify.code, Some(0), "{verify:?}");
}

/// `serve --standby` with no replicated pool refuses to start (exit 2, saying why).
#[test]
fn standby_without_replication_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = crate::cli::rewardpool(
        dir.path(),
        &["serve", "--standby", "--listen", "127.0.0.1:0", "--data-dir", &data(dir.path())],
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("no pool of the configuration has a replication"), "{run:?}");
}

fn data(root: &Path) -> String {
    root.join("data").to_str().expect("utf-8").to_owned()
}

/// `ack: local`, `max_lag_groups: 5`, NATS stopped (every node SIGSTOPped): the pool keeps
/// serving and the alarm gauge turns 1 once more than 5 groups are unshipped; NATS back
/// (SIGCONT), shipping catches up and the alarm turns 0.
#[test]
fn the_lag_alarm_rises_past_max_lag_groups_and_clears() {
    let Some(cluster) = nats_harness::cluster("lag_alarm") else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let yaml = config(&cluster, "alarm", 3) + "  max_lag_groups: 5\n";
    let server = start_with(root, Some(&yaml), &["--json", "--metrics-listen", "127.0.0.1:0"]);
    let metrics = server.metrics_addr.clone().expect("a metrics address");
    let rt = runtime();
    let mut drawn = load(&rt, &server, 1, 3) as u64;
    eventually("shipped", || gauge(&metrics, "rewardpool_replication_shipped_request_id") == drawn);
    assert_eq!(gauge(&metrics, "rewardpool_replication_lag_alarm"), 0);
    cluster.pause_all(false);
    // One pull per stream, one stream after another: at least one group each.
    for _ in 0..12 {
        drawn += load(&rt, &server, 1, 1) as u64;
    }
    eventually("the alarm rises past 5 unshipped groups", || {
        gauge(&metrics, "rewardpool_replication_lag_alarm") == 1
    });
    assert!(gauge(&metrics, "rewardpool_replication_lag_groups") > 5);
    cluster.pause_all(true);
    eventually("shipping caught up", || {
        gauge(&metrics, "rewardpool_replication_shipped_request_id") == drawn
    });
    eventually("the alarm cleared and nothing is left to ship", || {
        gauge(&metrics, "rewardpool_replication_lag_alarm") == 0
            && gauge(&metrics, "rewardpool_replication_lag_groups") == 0
    });
    let served = server.stop(libc::SIGTERM);
    assert_eq!(served.code, Some(0), "{served:?}");
}

/// The other way to promote: a standby server stopped (SIGTERM: its follower records what it
/// applied and closes its log) and started again with `--takeover` on the same directory
/// serves with request ids above every replicated one, from the primary's state.
#[test]
fn a_stopped_standby_server_restarts_with_takeover() {
    let Some(cluster) = nats_harness::cluster("standby_takeover") else { return };
    let rt = runtime();
    let yaml = config(&cluster, "restart", 3);
    let old = tempfile::tempdir().expect("temp dir");
    let new = tempfile::tempdir().expect("temp dir");
    let primary =
        start_with(old.path(), Some(&yaml), &["--json", "--metrics-listen", "127.0.0.1:0"]);
    let primary_metrics = primary.metrics_addr.clone().expect("a metrics address");
    let standby = start_with(new.path(), Some(&yaml), &["--json", "--standby"]);
    let drawn = load(&rt, &primary, 2, 50) as u64;
    eventually("shipped", || {
        gauge(&primary_metrics, "rewardpool_replication_shipped_request_id") == drawn
    });
    eventually("the standby caught up", || watch_once(&rt, &standby).last_request_id == drawn);
    let primary_state = state(&rt, &primary);
    let stopped = primary.stop(libc::SIGTERM);
    assert_eq!(stopped.code, Some(0), "{stopped:?}");
    let stopped = standby.stop(libc::SIGTERM);
    assert_eq!(stopped.code, Some(0), "{stopped:?}");
    assert!(stopped.stderr.contains("the standby's follower stopped"), "{stopped:?}");
    let promoted = start_with(new.path(), Some(&yaml), &["--json", "--takeover"]);
    assert_eq!(state(&rt, &promoted), primary_state, "the primary's state");
    let (responses, status) = rt.block_on(async {
        let mut client = promoted.client().await;
        draw(&mut client, vec![request(10); 2]).await
    });
    assert!(status.is_none(), "{status:?}");
    assert!(responses.iter().all(|r| r.request_id > drawn), "ids continue above {drawn}");
    let served = promoted.stop(libc::SIGTERM);
    assert_eq!(served.code, Some(0), "{served:?}");
    assert!(served.stderr.contains("promoted to epoch 2"), "{served:?}");
}
