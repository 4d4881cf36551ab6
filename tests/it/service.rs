//! The gRPC service end to end: the real `rewardpool serve` on a temp data directory,
//! driven over loopback by tonic clients generated from our proto and from the Go contract
//! alone (`service_harness`).

use std::collections::BTreeSet;

use tokio_stream::StreamExt as _;
use tonic::Code;

use crate::service_harness::{self as harness, draw, ours, request, runtime, DrawRequest};

/// The built-in catalog's six items.
const BUILT_IN_ITEMS: usize = 6;

/// Two pools, a small one with little stock.
const TWO_POOLS: &str = "\
working_dir: unused
pools:
  - name: alpha
    catalog:
      - { item_id: gold, quantity: 100, probability: 1 }
      - { item_id: mud, quantity: -1, probability: 3 }
  - name: beta
    catalog:
      - { item_id: gem, quantity: 3, probability: 1 }
wal:
  durability: sync
";

/// One pool of three units in all.
const SCARCE: &str = "\
working_dir: unused
pool:
  catalog:
    - { item_id: gem, quantity: 2, probability: 1 }
    - { item_id: coin, quantity: 1, probability: 5 }
";

fn keyed(count: i32, key: &[u8]) -> DrawRequest {
    DrawRequest { count, idempotency_key: key.to_vec(), ..DrawRequest::default() }
}

fn ids(responses: &[ours::DrawResponse]) -> Vec<u64> {
    responses.iter().map(|r| r.request_id).collect()
}

/// Consecutive request ids from `first`.
fn assert_consecutive(responses: &[ours::DrawResponse], first: u64) {
    let expected: Vec<u64> = (first..first + responses.len() as u64).collect();
    assert_eq!(ids(responses), expected);
}

#[test]
fn get_state_shows_items_weights_odds() {
    let server = harness::start(None, &[]);
    runtime().block_on(async {
        let mut client = server.client().await;
        let state = client.get_state(ours::GetStateRequest::default()).await.unwrap().into_inner();
        assert_eq!(state.items.len(), BUILT_IN_ITEMS, "{state:?}");
        assert_eq!(state.pool, "default");
        assert_eq!(state.last_request_id, 0);
        let diamond = state.items.iter().find(|i| i.item_id == "diamond").unwrap();
        assert_eq!((diamond.quantity, diamond.probability), (100, 10));
        let mud = state.items.iter().find(|i| i.item_id == "mud").unwrap();
        assert_eq!(mud.quantity, -1, "unlimited");
        let total: i64 = state.items.iter().map(|i| i.probability).sum();
        for item in &state.items {
            let expected = item.probability as f64 / total as f64;
            assert!((item.odds - expected).abs() < 1e-9, "{item:?}");
        }
    });
    let run = server.stop(libc::SIGTERM);
    assert_eq!(run.code, Some(0), "{run:?}");
}

/// A pool with an exhausted item, a weightless one, and one that runs out under draws.
const ODDS: &str = "\
working_dir: unused
pool:
  catalog:
    - { item_id: gone, quantity: 0, probability: 50 }
    - { item_id: gold, quantity: 2, probability: 10 }
    - { item_id: mud, quantity: -1, probability: 0 }
";

/// `GetState`'s `odds` is each item's effective probability given the stock: 0 for an
/// exhausted item (its weight leaves the denominator) and a weightless one; all 0 once
/// nothing is left; an unlimited item counts once it has a weight. The same values as
/// `rewardpool state --json` prints afterwards.
#[test]
fn get_state_odds_follow_stock_with_an_exhausted_item() {
    let dir = tempfile::tempdir().unwrap();
    let server = harness::start_with(dir.path(), Some(ODDS), &[]);
    runtime().block_on(async {
        let mut client = server.client().await;
        // Gold is the only item a draw can pick.
        assert_eq!(odds(&mut client).await, [0.0, 1.0, 0.0]);
        // Two draws exhaust gold; a third finds nothing.
        let (responses, end) = draw(&mut client, vec![request(3)]).await;
        assert!(end.is_none(), "{end:?}");
        let items: Vec<&str> = responses.iter().map(|r| r.item_id.as_str()).collect();
        assert_eq!(items, ["gold", "gold", ""], "{responses:?}");
        assert_eq!(odds(&mut client).await, [0.0, 0.0, 0.0]);
        // Mud gets a weight: unlimited, it takes all the odds; then gold is restocked.
        let update = |item: &str, quantity, weight| ours::UpdateRequest {
            pool: String::new(),
            item_id: item.to_owned(),
            quantity,
            weight,
        };
        let mud = client.update(update("mud", None, Some(30))).await.unwrap().into_inner();
        assert_eq!(mud.item.unwrap().odds, 1.0);
        client.update(update("gold", Some(4), None)).await.unwrap();
        assert_eq!(odds(&mut client).await, [0.0, 0.25, 0.75]);
    });
    assert_eq!(server.stop(libc::SIGTERM).code, Some(0));
    // The command line discloses the same odds from the log.
    let config = dir.path().join("config.yaml");
    let data = dir.path().join("data");
    let args = ["state", "--json", "--config", config.to_str().unwrap(), "--data-dir"];
    let run = crate::cli::rewardpool(dir.path(), &[&args[..], &[data.to_str().unwrap()]].concat());
    assert_eq!(run.code, Some(0), "{run:?}");
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let odds: Vec<f64> =
        v["items"].as_array().unwrap().iter().map(|i| i["probability"].as_f64().unwrap()).collect();
    assert_eq!(odds, [0.0, 0.25, 0.75], "{v}");
}

/// `GetState`'s odds of the only pool, checking the items' order on the way.
async fn odds(
    client: &mut harness::RewardPoolServiceClient<tonic::transport::Channel>,
) -> Vec<f64> {
    let state = client.get_state(ours::GetStateRequest::default()).await.unwrap().into_inner();
    let ids: Vec<&str> = state.items.iter().map(|i| i.item_id.as_str()).collect();
    assert_eq!(ids, ["gone", "gold", "mud"], "{state:?}");
    state.items.iter().map(|i| i.odds).collect()
}

#[test]
fn draw_counts_one_ten_and_zero_means_one() {
    let server = harness::start(None, &[]);
    runtime().block_on(async {
        let mut client = server.client().await;
        let (responses, end) = draw(&mut client, vec![request(1), request(10), request(0)]).await;
        assert!(end.is_none(), "{end:?}");
        assert_eq!(responses.len(), 12, "{responses:?}");
        assert_consecutive(&responses, 1);
        for r in &responses {
            assert!(!r.item_id.is_empty() && r.error.is_empty() && !r.replayed, "{r:?}");
        }
        // Negative counts mean one draw too (the Go contract: count <= 0 is 1).
        let (responses, end) = draw(&mut client, vec![request(-5)]).await;
        assert!(end.is_none(), "{end:?}");
        assert_consecutive(&responses, 13);
        let state = client.get_state(ours::GetStateRequest::default()).await.unwrap().into_inner();
        assert_eq!(state.last_request_id, 13);
    });
    assert_eq!(server.stop(libc::SIGTERM).code, Some(0));
}

#[test]
fn pipelined_requests_and_several_streams_answer_in_order() {
    let server = harness::start(None, &[]);
    runtime().block_on(async {
        let mut client = server.client().await;
        // One stream, 50 requests sent at once: 500 responses in request order.
        let (responses, end) = draw(&mut client, (0..50).map(|_| request(10)).collect()).await;
        assert!(end.is_none(), "{end:?}");
        assert_eq!(responses.len(), 500);
        assert_consecutive(&responses, 1);

        // Four streams at once: each in order, together every id once.
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let mut client = client.clone();
            tasks.push(tokio::spawn(async move {
                draw(&mut client, (0..20).map(|_| request(5)).collect()).await
            }));
        }
        let mut all = BTreeSet::new();
        for task in tasks {
            let (responses, end) = task.await.unwrap();
            assert!(end.is_none(), "{end:?}");
            assert_eq!(responses.len(), 100);
            // Each request's five draws are consecutive, and requests keep their order.
            for pull in responses.chunks(5) {
                assert_consecutive(pull, pull[0].request_id);
            }
            assert!(ids(&responses).windows(2).all(|w| w[0] < w[1]), "{:?}", ids(&responses));
            all.extend(ids(&responses));
        }
        assert_eq!(all, (501..=900).collect::<BTreeSet<u64>>());
    });
    assert_eq!(server.stop(libc::SIGTERM).code, Some(0));
}

#[test]
fn an_empty_pool_answers_with_error_text() {
    let server = harness::start(Some(SCARCE), &[]);
    runtime().block_on(async {
        let mut client = server.client().await;
        let (responses, end) = draw(&mut client, vec![request(5), request(1)]).await;
        assert!(end.is_none(), "an empty pool is not a stream error: {end:?}");
        assert_eq!(responses.len(), 6);
        assert_consecutive(&responses, 1);
        let won: Vec<_> = responses.iter().filter(|r| !r.item_id.is_empty()).collect();
        assert_eq!(won.len(), 3, "{responses:?}");
        for r in &responses {
            assert_eq!(r.item_id.is_empty(), !r.error.is_empty(), "{r:?}");
        }
        // The three units went first; the rest found nothing.
        assert!(responses[3..].iter().all(|r| r.item_id.is_empty()), "{responses:?}");
    });
    assert_eq!(server.stop(libc::SIGTERM).code, Some(0));
}

#[test]
fn update_sets_and_adds_items_and_refuses_bad_values() {
    let server = harness::start(None, &[]);
    runtime().block_on(async {
        let mut client = server.client().await;
        let update = |item: &str, quantity, weight| ours::UpdateRequest {
            pool: String::new(),
            item_id: item.to_owned(),
            quantity,
            weight,
        };
        let item = client.update(update("gold", Some(7), None)).await.unwrap().into_inner();
        let item = item.item.unwrap();
        assert_eq!((item.item_id.as_str(), item.quantity, item.probability), ("gold", 7, 20));
        assert!(item.odds > 0.0, "{item:?}");
        let added = client.update(update("ruby", Some(1), Some(5))).await.unwrap().into_inner();
        assert_eq!(added.item.unwrap().quantity, 1);
        let state = client.get_state(ours::GetStateRequest::default()).await.unwrap().into_inner();
        assert_eq!(state.items.len(), BUILT_IN_ITEMS + 1);
        let gold = state.items.iter().find(|i| i.item_id == "gold").unwrap();
        assert_eq!(gold.quantity, 7);
        // A new item needs both values; a quantity below -1 and a negative weight are refused.
        for bad in [
            update("opal", Some(1), None),
            update("gold", Some(-2), None),
            update("gold", None, Some(-1)),
            update("", Some(1), Some(1)),
        ] {
            let e = client.update(bad.clone()).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e:?}");
            assert!(!e.message().is_empty());
        }
    });
    assert_eq!(server.stop(libc::SIGTERM).code, Some(0));
}

#[test]
fn list_pools_and_draws_by_pool() {
    let server = harness::start(Some(TWO_POOLS), &[]);
    runtime().block_on(async {
        let mut client = server.client().await;
        let pools = client.list_pools(ours::ListPoolsRequest {}).await.unwrap().into_inner();
        let names: Vec<_> = pools.pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["alpha", "beta"]);
        for pool in &pools.pools {
            assert_eq!(pool.state, "running", "{pool:?}");
            assert!(pool.error.is_empty());
        }
        assert_eq!(pools.pools[0].items, 2);
        assert_eq!(pools.pools[0].max_count, 1000);
        assert_eq!(pools.pools[1].items, 1);

        let on = |pool: &str, count| DrawRequest {
            count,
            pool: pool.to_owned(),
            ..DrawRequest::default()
        };
        let (responses, end) =
            draw(&mut client, vec![on("beta", 2), on("alpha", 3), on("beta", 2)]).await;
        assert!(end.is_none(), "{end:?}");
        assert_eq!(responses.len(), 7);
        // Beta's three gems: two, then one and an empty draw; each pool numbers its own ids.
        assert_eq!(ids(&responses[..2]), [1, 2]);
        assert_eq!(ids(&responses[2..5]), [1, 2, 3]);
        assert_eq!(ids(&responses[5..]), [3, 4]);
        assert_eq!(responses[6].item_id, "");
        let state = client
            .get_state(ours::GetStateRequest { pool: "beta".into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((state.pool.as_str(), state.last_request_id), ("beta", 4));

        // Without a pool name, with two pools: refused, as is an unknown pool.
        for bad in [on("", 1), on("gamma", 1)] {
            let (responses, end) = draw(&mut client, vec![bad]).await;
            assert!(responses.is_empty());
            let end = end.expect("an error status");
            assert_eq!(end.code(), Code::InvalidArgument, "{end:?}");
            assert!(end.message().contains("alpha, beta"), "{end:?}");
        }
        let e = client.get_state(ours::GetStateRequest::default()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    });
    assert_eq!(server.stop(libc::SIGTERM).code, Some(0));
}

#[test]
fn watch_streams_moving_counters() {
    let server = harness::start(None, &[]);
    runtime().block_on(async {
        let mut client = server.client().await;
        let mut watch = client
            .watch(ours::WatchRequest { pool: String::new(), interval_ms: 20 })
            .await
            .unwrap()
            .into_inner();
        let first = watch.next().await.unwrap().unwrap();
        assert_eq!(first.pools.len(), 1);
        let before = first.pools[0].clone();
        assert_eq!((before.pool.as_str(), before.state.as_str()), ("default", "running"));
        let (responses, _) = draw(&mut client, vec![request(10)]).await;
        assert_eq!(responses.len(), 10);
        // The counters catch up within a few readings (they move once per group; readings
        // taken before the draw may still be queued, and a group's commit is counted before
        // its sync).
        let published = |m: &ours::PoolMetrics| m.commit_latency_ns.as_ref().map_or(0, |h| h.count);
        let caught_up = |m: &ours::PoolMetrics| {
            m.draws_committed >= before.draws_committed + 10
                && m.syncs > before.syncs
                && published(m) > published(&before)
        };
        let mut after = before.clone();
        for _ in 0..500 {
            after = watch.next().await.unwrap().unwrap().pools[0].clone();
            if caught_up(&after) {
                break;
            }
        }
        assert_eq!(after.draws_committed, before.draws_committed + 10, "{after:?}");
        assert!(after.groups_committed > before.groups_committed, "{after:?}");
        assert_eq!(after.last_request_id, 10);
        assert!(after.syncs > before.syncs && after.log_bytes > before.log_bytes, "{after:?}");
        // One request of 10: one pull; its group's size and commit latency are histograms.
        assert_eq!(after.pulls, before.pulls + 1, "{after:?}");
        let sizes = after.group_size.clone().expect("group sizes");
        assert_eq!(sizes.le.len(), sizes.cumulative.len());
        assert_eq!(sizes.cumulative.last(), Some(&sizes.count));
        assert_eq!(sizes.sum, after.draws_committed, "{sizes:?}");
        let latency = after.commit_latency_ns.clone().expect("commit latency");
        assert!(latency.count >= 1 && latency.sum > 0, "{latency:?}");
        assert!(after.sync_ns_total > before.sync_ns_total, "{after:?}");
        assert!(sizes.cumulative.is_sorted(), "{sizes:?}");
        assert!(after.error.is_empty(), "a running pool has no error: {after:?}");
        let e = client
            .watch(ours::WatchRequest { pool: "nope".into(), interval_ms: 0 })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    });
    assert_eq!(server.stop(libc::SIGTERM).code, Some(0));
}

#[test]
fn health_reports_the_server_and_each_pool() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let server = harness::start(Some(TWO_POOLS), &[]);
    let rt = runtime();
    let watch = rt.block_on(async {
        let mut health = HealthClient::new(server.channel().await);
        for name in [
            "",
            "rewardpool.RewardPoolService",
            "rewardpool.RewardPoolService/alpha",
            "rewardpool.RewardPoolService/beta",
        ] {
            let check = HealthCheckRequest { service: name.to_owned() };
            let status = health.check(check).await.unwrap().into_inner().status;
            assert_eq!(status, ServingStatus::Serving as i32, "{name:?}");
        }
        let unknown = HealthCheckRequest { service: "rewardpool.RewardPoolService/gamma".into() };
        assert_eq!(health.check(unknown).await.unwrap_err().code(), Code::NotFound);

        // A health watcher sees NOT_SERVING once the server stops, and does not hold the
        // shutdown up (its stream never ends by itself).
        let mut watch =
            health.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
        let first = watch.next().await.unwrap().unwrap();
        assert_eq!(first.status, ServingStatus::Serving as i32);
        server.signal(libc::SIGTERM);
        let next = tokio::time::timeout(harness::DEADLINE, watch.next()).await.unwrap();
        assert_eq!(next.unwrap().unwrap().status, ServingStatus::NotServing as i32);
        watch
    });
    // The watcher's stream and connection are still open (the runtime lives on).
    let start = std::time::Instant::now();
    let run = server.join();
    drop((watch, rt));
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(start.elapsed() < std::time::Duration::from_secs(10), "{:?}", start.elapsed());
}

#[test]
fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let server = harness::start(None, &[]);
    runtime().block_on(async {
        let mut reflection = ServerReflectionClient::new(server.channel().await);
        let list = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = reflection
            .server_reflection_info(tokio_stream::iter([list]))
            .await
            .unwrap()
            .into_inner();
        let response = responses.next().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("not a service list: {response:?}");
        };
        let names: BTreeSet<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        for expected in [
            "rewardpool.RewardPoolService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
        ] {
            assert!(names.contains(expected), "{expected} missing from {names:?}");
        }
        // The v1alpha service answers too (older grpcurl asks it only).
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as Alpha;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaReq;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaRes;
        let list = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(AlphaReq::ListServices(String::new())),
        };
        let mut alpha = Alpha::new(server.channel().await)
            .server_reflection_info(tokio_stream::iter([list]))
            .await
            .unwrap()
            .into_inner();
        let response = alpha.next().await.unwrap().unwrap();
        let Some(AlphaRes::ListServicesResponse(list)) = response.message_response else {
            panic!("not a service list: {response:?}");
        };
        assert!(
            list.service.iter().any(|s| s.name == "rewardpool.RewardPoolService"),
            "{list:?}"
        );
    });
    assert_eq!(server.stop(libc::SIGTERM).code, Some(0));
}

/// A client generated from the Go contract alone drives the server unchanged.
#[test]
fn a_go_contract_client_works_unchanged() {
    use harness::go::reward_pool_service_client::RewardPoolServiceClient as GoClient;
    use harness::go::{DrawRequest as GoDraw, GetStateRequest as GoGetState};
    let server = harness::start(None, &[]);
    runtime().block_on(async {
        let mut client = GoClient::new(server.channel().await);
        let state = client.get_state(GoGetState {}).await.unwrap().into_inner();
        assert_eq!(state.items.len(), BUILT_IN_ITEMS);
        assert!(state.items.iter().any(|i| i.item_id == "gold" && i.probability == 20));
        let requests = tokio_stream::iter([GoDraw { count: 10 }, GoDraw { count: 0 }]);
        let mut stream = client.draw(requests).await.unwrap().into_inner();
        let mut responses = Vec::new();
        while let Some(r) = stream.next().await {
            responses.push(r.unwrap());
        }
        assert_eq!(responses.len(), 11);
        let ids: Vec<u64> = responses.iter().map(|r| r.request_id).collect();
        assert_eq!(ids, (1..=11).collect::<Vec<u64>>());
        assert!(responses.iter().all(|r| !r.item_id.is_empty() && r.error.is_empty()));
    });
    assert_eq!(server.stop(libc::SIGTERM).code, Some(0));
}

#[test]
fn bad_input_is_invalid_argument_with_the_reason() {
    let server = harness::start(None, &[]);
    runtime().block_on(async {
        let mut client = server.client().await;
        let cases = [
            (request(i32::MAX), "maximum"),
            (request(1001), "maximum"),
            (
                DrawRequest { count: 1, pool: "nope".into(), ..DrawRequest::default() },
                "unknown pool",
            ),
            (keyed(1, &[7; 15]), "16 bytes"),
            (keyed(1, &[7; 17]), "16 bytes"),
            (keyed(1, &[0; 16]), "no key"),
        ];
        for (bad, reason) in cases {
            // A good request first: it is answered before the stream ends.
            let (responses, end) =
                draw(&mut client, vec![request(2), bad.clone(), request(1)]).await;
            assert_eq!(responses.len(), 2, "{bad:?}: {responses:?}");
            let end = end.unwrap_or_else(|| panic!("{bad:?}: no error"));
            assert_eq!(end.code(), Code::InvalidArgument, "{bad:?}: {end:?}");
            assert!(end.message().contains(reason), "{bad:?}: {end:?}");
        }
    });
    assert_eq!(server.stop(libc::SIGTERM).code, Some(0));
}

#[test]
fn keyed_retries_replay_and_a_reused_key_is_a_failed_precondition() {
    let server = harness::start(None, &[]);
    runtime().block_on(async {
        let mut client = server.client().await;
        let key = [0xab; 16];
        let (first, end) = draw(&mut client, vec![keyed(3, &key)]).await;
        assert!(end.is_none(), "{end:?}");
        assert!(first.iter().all(|r| !r.replayed));
        // The retry, on another stream: the same outcomes, marked replayed.
        let (again, end) = draw(&mut client, vec![keyed(3, &key)]).await;
        assert!(end.is_none(), "{end:?}");
        assert_eq!(ids(&again), ids(&first));
        let items =
            |rs: &[ours::DrawResponse]| rs.iter().map(|r| r.item_id.clone()).collect::<Vec<_>>();
        assert_eq!(items(&again), items(&first));
        assert!(again.iter().all(|r| r.replayed), "{again:?}");
        // Another count under the same key: refused, nothing drawn.
        let (responses, end) = draw(&mut client, vec![keyed(4, &key)]).await;
        assert!(responses.is_empty());
        let end = end.expect("an error status");
        assert_eq!(end.code(), Code::FailedPrecondition, "{end:?}");
        let state = client.get_state(ours::GetStateRequest::default()).await.unwrap().into_inner();
        assert_eq!(state.last_request_id, 3, "nothing drawn by the retry or the conflict");
    });
    assert_eq!(server.stop(libc::SIGTERM).code, Some(0));
}

#[test]
fn sigterm_answers_then_refuses_and_a_second_instance_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = harness::start_with(dir.path(), None, &[]);
    let second = crate::cli::rewardpool(
        &server.root,
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", server.data_dir().to_str().unwrap()],
    );
    assert_eq!(second.code, Some(2), "{second:?}");
    assert!(second.stderr.contains("in use by another process"), "{second:?}");

    runtime().block_on(async {
        let mut client = server.client().await;
        // A stream left open: its requests are answered, then it ends with UNAVAILABLE.
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let mut stream = client
            .draw(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        tx.send(request(4)).await.unwrap();
        for _ in 0..4 {
            stream.next().await.unwrap().unwrap();
        }
        server.signal(libc::SIGTERM);
        let end = tokio::time::timeout(harness::DEADLINE, stream.next()).await.unwrap();
        match end {
            Some(Err(status)) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
            other => panic!("expected UNAVAILABLE, got {other:?}"),
        }
        drop(tx);
    });
    let data = server.data_dir();
    let run = server.join();
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("stopped at request id 4"), "{run:?}");
    let verify = crate::cli::rewardpool(
        dir.path(),
        &["wal", "verify", "--data-dir", data.to_str().unwrap()],
    );
    assert_eq!(verify.code, Some(0), "{verify:?}");
}

/// A message that does not decode as a `DrawRequest` (field 1 sent as a string where the
/// contract has an int32): the requests before it are answered, then INVALID_ARGUMENT.
#[test]
fn a_malformed_message_is_invalid_argument() {
    /// Field 1 with the wrong wire type.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Malformed {
        #[prost(string, tag = "1")]
        count: String,
    }
    /// Field 1 as the contract has it.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Good {
        #[prost(int32, tag = "1")]
        count: i32,
    }
    let server = harness::start(None, &[]);
    runtime().block_on(async {
        let mut grpc = tonic::client::Grpc::new(server.channel().await);
        grpc.ready().await.unwrap();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/rewardpool.RewardPoolService/Draw",
        );
        // A good message, then a bad one, as raw bytes.
        let good = prost::Message::encode_to_vec(&Good { count: 2 });
        let bad = prost::Message::encode_to_vec(&Malformed { count: "ten".into() });
        let requests = tokio_stream::iter([RawBytes(good), RawBytes(bad)]);
        let codec = RawCodec;
        let response = grpc.streaming(tonic::Request::new(requests), path, codec).await.unwrap();
        let mut stream = response.into_inner();
        let mut answered = 0;
        let end = loop {
            match stream.next().await {
                Some(Ok(_)) => answered += 1,
                Some(Err(status)) => break status,
                None => panic!("the stream ended without an error after {answered} responses"),
            }
        };
        assert_eq!(answered, 2, "the good request's two draws come first");
        assert_eq!(end.code(), Code::InvalidArgument, "{end:?}");
        assert!(end.message().contains("malformed"), "{end:?}");
    });
    assert_eq!(server.stop(libc::SIGTERM).code, Some(0));
}

/// A message's bytes as they are, for [`RawCodec`].
#[derive(Clone, Debug)]
struct RawBytes(Vec<u8>);

/// Encodes [`RawBytes`] as they are; decodes our `DrawResponse`.
#[derive(Debug)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = RawBytes;
    type Decode = ours::DrawResponse;
    type Encoder = RawCodec;
    type Decoder = tonic_prost::ProstDecoder<ours::DrawResponse>;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(tonic::codec::BufferSettings::default())
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = RawBytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: RawBytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut as _;
        dst.put_slice(&item.0);
        Ok(())
    }
}

/// Clients that go away mid-stream, with requests in flight, stall nobody: other streams
/// are answered, and the server still stops cleanly with a log that verifies.
#[test]
fn vanished_clients_leak_nothing_and_stall_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let server = harness::start_with(dir.path(), None, &[]);
    runtime().block_on(async {
        for _ in 0..20 {
            let mut client = server.client().await;
            let (tx, rx) = tokio::sync::mpsc::channel(128);
            for _ in 0..100 {
                tx.send(request(10)).await.unwrap();
            }
            let mut stream = client
                .draw(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            stream.next().await.unwrap().unwrap();
            // Gone: the stream, its sender and its connection.
        }
        let mut client = server.client().await;
        let (responses, end) = draw(&mut client, vec![request(10); 10]).await;
        assert!(end.is_none(), "{end:?}");
        assert_eq!(responses.len(), 100);
        assert!(ids(&responses).windows(2).all(|w| w[1] == w[0] + 1));
    });
    let data = server.data_dir();
    let run = server.stop(libc::SIGTERM);
    assert_eq!(run.code, Some(0), "{run:?}");
    let verify = crate::cli::rewardpool(
        dir.path(),
        &["wal", "verify", "--data-dir", data.to_str().unwrap()],
    );
    assert_eq!(verify.code, Some(0), "{verify:?}");
}

/// `grpc.enabled: true` and `grpc.listen_address` from the configuration, without
/// `--listen`; `--json` prints the address as JSON.
#[test]
fn serves_on_the_configured_address_and_says_so_in_json() {
    let config = "pool:\n  catalog:\n    - { item_id: a, quantity: -1, probability: 1 }\n\
                  grpc:\n  enabled: true\n  listen_address: \"127.0.0.1:0\"\n";
    let server = harness::start(Some(config), &[harness::CONFIG_ADDRESS, "--json"]);
    assert!(server.addr.starts_with("127.0.0.1:"), "{}", server.addr);
    runtime().block_on(async {
        let mut client = server.client().await;
        let (responses, end) = draw(&mut client, vec![request(3)]).await;
        assert!(end.is_none(), "{end:?}");
        assert!(responses.iter().all(|r| r.item_id == "a"));
    });
    let run = server.stop(libc::SIGINT);
    assert_eq!(run.code, Some(0), "{run:?}");
    let first: serde_json::Value =
        serde_json::from_str(run.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["pools"], serde_json::json!(["default"]), "{first}");
}

/// Two pools: one with a small segment (so its log rotates), one without a log.
const COMMITMENTS: &str = "\
working_dir: unused
pools:
  - name: logged
    catalog:
      - { item_id: gold, quantity: 100000, probability: 1 }
      - { item_id: mud, quantity: -1, probability: 3 }
    wal:
      durability: buffered
      max_file_size_kb: 64
  - name: volatile
    catalog:
      - { item_id: gem, quantity: -1, probability: 1 }
    wal:
      durability: memory
";

/// `ListCommitments` lists the pool's seed runs as `wal commitments` does: revealed runs with
/// a seed that hashes to their commitment, the newest pending; after a clean stop the
/// command line shows the same commitments, the last one revealed too. A pool without a
/// log has none; an unknown pool is INVALID_ARGUMENT, as for every call.
#[test]
fn list_commitments_publishes_each_seed_run() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let server = harness::start_with(dir.path(), Some(COMMITMENTS), &[]);
    let listed = runtime().block_on(async {
        let mut client = server.client().await;
        let pull = |n| DrawRequest { pool: "logged".to_owned(), ..request(n) };
        for _ in 0..20 {
            let (responses, end) = draw(&mut client, vec![pull(1000); 5]).await;
            assert!(end.is_none() && responses.len() == 5000, "{end:?}");
        }
        let ask = |pool: &str| ours::ListCommitmentsRequest { pool: pool.to_owned() };
        let listed = client.list_commitments(ask("logged")).await.unwrap().into_inner();
        assert_eq!(listed.pool, "logged");
        let runs = &listed.commitments;
        assert!(runs.len() >= 3, "100000 draws rotate 64 KiB segments: {runs:?}");
        let (last, done) = runs.split_last().unwrap();
        assert_eq!((last.status.as_str(), last.seed.as_str()), ("pending", ""), "{last:?}");
        let mut next = 1;
        for run in done {
            assert_eq!(run.status, "revealed", "{run:?}");
            let seed: Vec<u8> = (0..32)
                .map(|i| u8::from_str_radix(&run.seed[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let mut h = Sha256::new();
            h.update(&seed);
            h.update(run.commitment_segment.to_le_bytes());
            h.update(b"logged");
            let hash: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hash, run.commitment, "the reveal opens the commitment: {run:?}");
            assert_eq!(run.first_request_id, next, "runs follow each other: {runs:?}");
            next += run.draws;
        }
        let volatile = client.list_commitments(ask("volatile")).await.unwrap().into_inner();
        assert!(volatile.commitments.is_empty(), "{volatile:?}");
        let unknown = client.list_commitments(ask("nope")).await.unwrap_err();
        assert_eq!(
            unknown.code(),
            Code::InvalidArgument,
            "as every call names an unknown pool: {unknown:?}"
        );
        listed
    });
    assert_eq!(server.stop(libc::SIGTERM).code, Some(0));
    let config = dir.path().join("config.yaml");
    let data = dir.path().join("data");
    let args = [
        "wal",
        "commitments",
        "--json",
        "--pool",
        "logged",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let run = crate::cli::rewardpool(dir.path(), &args);
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines: Vec<serde_json::Value> =
        run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let cli: Vec<&str> = lines.iter().map(|v| v["commitment"].as_str().unwrap()).collect();
    let rpc: Vec<&str> = listed.commitments.iter().map(|c| c.commitment.as_str()).collect();
    assert_eq!(cli, rpc, "{}", run.stdout);
    assert_eq!(lines.last().unwrap()["status"], "revealed", "a clean stop reveals the last seed");
}
