//! The library's front door: `rewardpool::open` from a configuration, and item ids for
//! outcomes without a state round trip (`ItemIds`), also for items added by an update while
//! draws are in flight, and after a restart.

use std::thread;
use std::time::{Duration, Instant};

use rewardpool::{
    Config, CorePin, Engine, EngineConfig, ItemIndex, ItemSpec, MemoryJournal, Pool, Quantity, Rng,
};

fn memory_engine(items: &[ItemSpec]) -> Engine {
    let pool = Pool::new(items, Rng::from_seed(5)).unwrap();
    let config = EngineConfig { core: CorePin::Unpinned, ..EngineConfig::default() };
    Engine::start(pool, MemoryJournal::new(), config).unwrap()
}

#[test]
fn a_handle_taken_before_an_update_names_the_item_it_added() {
    let engine = memory_engine(&[ItemSpec::new("gold", 0, 1)]);
    let mut client = engine.client().unwrap();
    let mut ids = client.item_ids();
    let from_engine = engine.item_ids();
    assert_eq!(ids.len(), 1);

    let empty = client.draw().unwrap();
    assert_eq!((empty.item, empty.item_id(&mut ids)), (None, None), "gold has no unit left");

    engine.update("ruby", Some(Quantity::Finite(3)), Some(1)).unwrap();
    // An update of an existing item adds nothing.
    engine.update("gold", None, Some(2)).unwrap();
    for _ in 0..3 {
        let outcome = client.draw().unwrap();
        assert_eq!(outcome.item, Some(ItemIndex(1)));
        assert_eq!(outcome.item_id(&mut ids), Some("ruby"));
        assert_eq!(client.item_id(ItemIndex(1)), Some("ruby"));
    }
    assert_eq!(client.item_id(ItemIndex(2)), None, "an index never handed out");
    let mut from_engine = from_engine;
    assert_eq!(from_engine.get(ItemIndex(1)), Some("ruby"));
    let names: Vec<&str> = ids.iter().collect();
    assert_eq!(names, ["gold", "ruby"]);
    drop(client);
    engine.shutdown().unwrap();
}

/// Items are added while another thread draws: every outcome naming an index must resolve,
/// with a handle taken before any of them existed. Each new item has one unit and outweighs
/// `mud` by far, so it is drawn (once) right after being added.
#[test]
fn items_added_while_drawing_resolve_at_once() {
    const ADDED: u32 = 40;
    let engine = memory_engine(&[ItemSpec::new("mud", -1, 1)]);
    let mut client = engine.client().unwrap();
    let drawer = thread::spawn(move || {
        let mut ids = client.item_ids();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut new_items = Vec::new();
        while new_items.len() < ADDED as usize {
            assert!(Instant::now() < deadline, "only {} new items drawn", new_items.len());
            while client.try_draw().is_ok() {}
            let mut unresolved = None;
            client.drain(|_, result| {
                let outcome = result.expect("a memory engine serves every draw");
                let index = outcome.item.expect("mud is unlimited");
                match outcome.item_id(&mut ids) {
                    Some("mud") => assert_eq!(index.0, 0),
                    Some(id) => {
                        assert_eq!(id, format!("new{}", index.0 - 1));
                        new_items.push(index.0);
                    }
                    None => unresolved = Some(index),
                }
            });
            assert_eq!(unresolved, None, "an outcome named an item its handle cannot find");
        }
        new_items
    });
    for i in 0..ADDED {
        engine.update(&format!("new{i}"), Some(Quantity::Finite(1)), Some(1_000_000)).unwrap();
        thread::sleep(Duration::from_millis(1));
    }
    let mut new_items = drawer.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    // Two items added between the drawer's passes may come out in either order.
    new_items.sort_unstable();
    assert_eq!(new_items, (1..=ADDED).collect::<Vec<_>>(), "each new item drawn once");
    engine.shutdown().unwrap();
}

/// `rewardpool::open`, retried while the directory reads as locked for up to 10 s. The lock
/// is an `flock` on an open file: a child process that another test in this binary is
/// spawning at that moment holds a copy of the descriptor between its fork and its exec, so
/// the lock can outlive `Engine::shutdown` by that window (seen once under a load of 8 on 2
/// cores). Processes that spawn no children reopen at once (`examples/shutdown.rs`).
fn reopen(config: &Config) -> Engine {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rewardpool::open(config) {
            Err(rewardpool::OpenError::Locked { .. }) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            result => return result.unwrap(),
        }
    }
}

/// `rewardpool::open` on a configuration: draws, an added item, a shutdown, a reopen that
/// keeps every index and id.
#[test]
fn open_from_a_config_keeps_indices_and_ids_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_yaml_str(
        "pool:\n  catalog:\n    - { item_id: gold, quantity: 2, probability: 1 }\n\
         wal:\n  durability: sync\n  max_file_size_kb: 1024\n",
    )
    .unwrap();
    config.working_dir = dir.path().join("data");

    let engine = rewardpool::open(&config).unwrap();
    let mut client = engine.client().unwrap();
    for _ in 0..2 {
        let outcome = client.draw().unwrap();
        assert_eq!(outcome.item.and_then(|i| client.item_id(i)), Some("gold"));
    }
    engine.update("ruby", Some(Quantity::Finite(1)), Some(1)).unwrap();
    let outcome = client.draw().unwrap();
    assert_eq!(outcome.item.and_then(|i| client.item_id(i)), Some("ruby"));
    drop(client);
    let last = engine.shutdown().unwrap();

    let engine = reopen(&config);
    let ids = engine.item_ids();
    let names: Vec<&str> = ids.iter().collect();
    assert_eq!(names, ["gold", "ruby"], "recovered in index order");
    assert_eq!(engine.state().unwrap(), last);
    let mut client = engine.client().unwrap();
    let empty = client.draw().unwrap();
    assert_eq!(empty.item, None, "both items are exhausted");
    assert_eq!(empty.request_id.0, last.last_request_id.0 + 1);
    drop(client);
    engine.shutdown().unwrap();

    // A data directory in use is refused with a typed error, not a panic.
    let engine = reopen(&config);
    let second = rewardpool::open(&config).expect_err("the directory is locked");
    assert!(matches!(second, rewardpool::OpenError::Locked { .. }), "{second}");
    engine.shutdown().unwrap();
}
