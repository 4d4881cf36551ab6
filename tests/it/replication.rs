//! Replication through NATS JetStream against a real 3-node cluster of the tests' own
//! (`nats_harness`). Each test starts its own cluster; without `nats-server` each prints one
//! line and returns (unless `REWARDPOOL_REQUIRE_NATS` is set: then it fails).

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::nats_harness;
use crate::service_harness::runtime;

/// The harness's cluster stores a message on three replicas, and deduplicates by
/// `Nats-Msg-Id`; a node SIGKILLed and restarted rejoins.
#[test]
fn the_test_cluster_stores_on_three_replicas() {
    let Some(mut cluster) = nats_harness::cluster("the_test_cluster_stores_on_three_replicas")
    else {
        return;
    };
    let rt = runtime();
    let addrs = cluster.addrs();
    // One connection, one stream; a publish retried (with the same message id) while the
    // stream elects a new leader after a node died.
    let publish = |rt: &tokio::runtime::Runtime, id: &'static str| {
        let addrs = addrs.clone();
        rt.block_on(async move {
            let client = async_nats::connect(addrs).await.expect("connect");
            let js = jetstream::new(client);
            let start = std::time::Instant::now();
            loop {
                let attempt = async {
                    js.get_or_create_stream(stream::Config {
                        name: "smoke".into(),
                        subjects: vec!["smoke.>".into()],
                        num_replicas: 3,
                        duplicate_window: Duration::from_secs(60),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                    let publish =
                        jetstream::context::Publish::build().payload("x".into()).message_id(id);
                    let ack =
                        js.send_publish("smoke.a", publish).await.map_err(|e| e.to_string())?;
                    ack.await.map_err(|e| e.to_string())
                };
                match attempt.await {
                    Ok(ack) => return ack,
                    Err(e) if start.elapsed() > Duration::from_secs(30) => panic!("publish: {e}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
    };
    let first = publish(&rt, "one");
    assert!(!first.duplicate);
    assert!(publish(&rt, "one").duplicate, "the same Nats-Msg-Id is stored once");
    cluster.kill(2);
    let second = publish(&rt, "two");
    assert_eq!(second.sequence, first.sequence + 1, "two of three replicas still store");
    cluster.restart(2);
}
