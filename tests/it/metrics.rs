//! `Engine::metrics` and `Meter` read the engine's counters without stopping the core
//! thread: from another thread while draws run, and after a shutdown or a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use rewardpool::engine::CorePin;
use rewardpool::journal::testing::FailingJournal;
use rewardpool::storage::FaultyStorage;
use rewardpool::store::Durability;
use rewardpool::{
    DrawError, Engine, EngineConfig, FailureKind, ItemSpec, MemoryJournal, Metrics, Pool, Rng,
};

use crate::recovery::{draw_n, open};

fn mud_pool() -> Pool {
    Pool::new(&[ItemSpec::new("mud", -1, 1)], Rng::from_seed(3)).unwrap()
}

/// Reads `meter` until `done`, asserting every counter only grows; returns the readings.
fn watch(meter: rewardpool::Meter, done: Arc<AtomicBool>) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let mut last = Metrics::default();
        let mut readings = 0;
        while !done.load(Ordering::Acquire) {
            let now = meter.read();
            assert!(now.draws_committed >= last.draws_committed, "{now:?} after {last:?}");
            assert!(now.draws_acknowledged >= last.draws_acknowledged, "{now:?} after {last:?}");
            assert!(now.groups_committed >= last.groups_committed, "{now:?} after {last:?}");
            assert!(now.last_request_id >= last.last_request_id, "{now:?} after {last:?}");
            if let (Some(j), Some(k)) = (now.journal, last.journal) {
                assert!(j.bytes_appended >= k.bytes_appended && j.syncs >= k.syncs);
            }
            assert!(!now.stopped && now.failure.is_none(), "{now:?}");
            last = now;
            readings += 1;
            thread::yield_now();
        }
        readings
    })
}

#[test]
fn metrics_are_read_while_draws_run_and_after_shutdown() {
    let config = EngineConfig { core: CorePin::Unpinned, ..EngineConfig::default() };
    let engine = Engine::start(mud_pool(), MemoryJournal::new(), config).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = watch(engine.meter(), Arc::clone(&done));
    let drawers: Vec<_> = (0..2)
        .map(|_| {
            let mut client = engine.client().unwrap();
            thread::spawn(move || {
                for _ in 0..2_000 {
                    client.draw().expect("served");
                }
            })
        })
        .collect();
    // The handle itself can be read from another thread too (`Engine` is `Sync`).
    thread::scope(|s| {
        s.spawn(|| {
            let m = engine.metrics();
            assert!(m.draws_committed <= 4_000, "{m:?}");
        });
    });
    for d in drawers {
        d.join().unwrap();
    }
    done.store(true, Ordering::Release);
    assert!(watcher.join().unwrap() > 0);
    let meter = engine.meter();
    let before = engine.metrics();
    assert_eq!(before.draws_committed, 4_000);
    assert_eq!(before.draws_acknowledged, 4_000);
    assert_eq!(before.last_request_id.0, 4_000);
    assert!(before.groups_committed >= 1);
    assert_eq!(before.journal, None, "the memory journal keeps no stats");
    let state = engine.shutdown().unwrap();
    let after = meter.read();
    assert!(after.stopped);
    assert_eq!(after.failure, None);
    assert_eq!(after.last_request_id, state.last_request_id);
    assert_eq!(after.draws_acknowledged, 4_000);
    assert_eq!(after.clients, 0);
}

#[test]
fn metrics_of_the_durable_log_count_what_it_wrote() {
    let storage = FaultyStorage::new();
    let first = open(&storage, Durability::Sync, 1 << 20);
    assert_eq!(draw_n(&first, 300).1, None);
    first.shutdown().unwrap();
    // Reopened: counters start at zero, request ids go on.
    let engine = open(&storage, Durability::Sync, 1 << 20);
    let done = Arc::new(AtomicBool::new(false));
    let watcher = watch(engine.meter(), Arc::clone(&done));
    assert_eq!(draw_n(&engine, 500).1, None);
    done.store(true, Ordering::Release);
    watcher.join().unwrap();
    let m = engine.metrics();
    assert_eq!(m.draws_committed, 500);
    assert_eq!(m.last_request_id.0, 800);
    let journal = m.journal.expect("the durable log keeps stats");
    // At least a byte per draw and one batch frame and commit (72 bytes); far below the 32
    // bytes per draw of the format-1 frames.
    assert!((500 + 72..500 * 8).contains(&journal.bytes_appended), "{journal:?}");
    assert!(journal.syncs >= 1, "{journal:?}");
    engine.shutdown().unwrap();
}

#[test]
fn metrics_show_a_failure_kind() {
    let (journal, switch) = FailingJournal::new();
    let config = EngineConfig { core: CorePin::Unpinned, ..EngineConfig::default() };
    let engine = Engine::start(mud_pool(), journal, config).unwrap();
    let meter = engine.meter();
    let mut client = engine.client().unwrap();
    client.draw().unwrap();
    switch.fail_now();
    assert_eq!(client.draw(), Err(DrawError::Failed(FailureKind::Other)));
    // The failure is recorded before any caller hears of it.
    let m = meter.read();
    assert_eq!(m.failure, Some(FailureKind::Other), "{m:?}");
    assert_eq!(m.draws_acknowledged, 1);
    drop(client);
    assert!(engine.shutdown().is_err());
    let m = meter.read();
    assert!(m.stopped, "{m:?}");
    assert_eq!(m.failure, Some(FailureKind::Other));
}
