//! The host maps pool names to engines; today one pool, `default`, from a `Config`.

use rewardpool::host::DEFAULT_POOL;
use rewardpool::{Config, Host};

#[test]
fn a_host_opens_the_default_pool_and_shuts_it_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_yaml_str(
        "pool:\n  catalog:\n    - { item_id: gold, quantity: 2, probability: 1 }\n\
         wal:\n  durability: sync\n  max_file_size_kb: 1024\n",
    )
    .unwrap();
    config.working_dir = dir.path().join("data");

    let host = Host::open(&config).unwrap();
    assert_eq!(host.names().collect::<Vec<_>>(), [DEFAULT_POOL]);
    assert!(host.pool("other").is_none());
    let engine = host.pool("default").expect("the default pool");
    let mut client = engine.client().unwrap();
    assert_eq!(client.draw().unwrap().request_id.0, 1);
    drop(client);
    let stopped = host.shutdown();
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].0, "default");
    assert_eq!(stopped[0].1.as_ref().unwrap().last_request_id.0, 1);

    // The same directory through the old path: `rewardpool::open` continues it.
    let engine = rewardpool::open(&config).unwrap();
    assert_eq!(engine.metrics().last_request_id.0, 1);
    engine.shutdown().unwrap();
}
