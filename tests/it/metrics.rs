//! `Engine::metrics` and `Meter` read the engine's counters without stopping the core
//! thread: from another thread while draws run, and after a shutdown or a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rewardpool::engine::{CorePin, IdleConfig, RunState, REMAINING_PER_GROUP};
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

fn unpinned() -> EngineConfig {
    EngineConfig { core: CorePin::Unpinned, ..EngineConfig::default() }
}

/// The remaining quantities a meter shows, as `state` lists them.
fn remaining_of(state: &rewardpool::PoolState) -> Vec<rewardpool::Quantity> {
    state.items.iter().map(|i| i.quantity).collect()
}

/// Empty draws, pulls, replays and conflicts count exactly what the draws did: a catalog of
/// 5 units makes every draw after the fifth empty.
#[test]
fn counters_match_what_draws_did() {
    let pool =
        Pool::new(&[ItemSpec::new("gold", 3, 1), ItemSpec::new("silver", 2, 5)], Rng::from_seed(9))
            .unwrap();
    let engine = Engine::start(pool, MemoryJournal::new(), unpinned()).unwrap();
    let meter = engine.meter();
    assert_eq!(meter.read().run_state(), RunState::Running);
    let mut client = engine.client().unwrap();
    let mut won = 0;
    for _ in 0..8 {
        won += u64::from(client.draw().unwrap().item.is_some());
    }
    assert_eq!(won, 5, "five units, then nothing");
    assert_eq!(client.pull(10).unwrap().count(), 10);
    let (key, other) = (0xA1, 0xB2);
    let first = client.draw_keyed(key).unwrap();
    let again = client.draw_keyed(key).unwrap();
    assert!(again.replayed && again.request_id == first.request_id);
    assert!(!client.pull_keyed(3, other).unwrap().replayed());
    assert!(client.pull_keyed(3, other).unwrap().replayed());
    assert!(client.pull_keyed(2, key).is_err(), "a known key with another count");

    let state = engine.state().unwrap();
    let m = meter.read();
    assert_eq!(m.draws_committed, 8 + 10 + 1 + 3);
    assert_eq!(m.empty_draws, 3 + 10 + 1 + 3);
    assert_eq!(m.pulls, 2, "the pull of 10 and the new keyed pull of 3");
    assert_eq!(m.replayed, 2);
    assert_eq!(m.key_conflicts, 1);
    assert_eq!(m.group_size.count(), m.groups_committed, "every group is in the histogram");
    assert_eq!(m.group_size.sum(), m.draws_committed);
    assert_eq!(m.commit_latency.count(), m.groups_committed, "every group became durable");
    assert!(m.commit_latency.sum() > 0);
    let cumulative: Vec<_> = m.group_size.cumulative().collect();
    assert!(cumulative.windows(2).all(|w| w[0].1 <= w[1].1), "{cumulative:?}");
    assert_eq!(cumulative.last().map(|b| b.1), Some(m.groups_committed));
    assert_eq!((m.in_flight, m.ring_waiting), (0, 0), "{m:?}");
    assert_eq!(meter.remaining(), remaining_of(&state));
    assert_eq!(meter.remaining(), [rewardpool::Quantity::Finite(0); 2]);
    drop(client);
    engine.shutdown().unwrap();
    let m = meter.read();
    assert_eq!(m.run_state(), RunState::Stopped);
}

/// Per-item remaining quantities equal `Engine::state()` at a quiescent point, for a catalog
/// larger than one group's republishing budget and with an item added by an update.
#[test]
fn remaining_quantities_equal_the_state_after_a_quiescent_point() {
    let items: Vec<_> = (0..REMAINING_PER_GROUP * 4)
        .map(|i| ItemSpec::new(&format!("i{i}"), if i % 7 == 0 { -1 } else { 5 }, 1))
        .collect();
    let pool = Pool::new(&items, Rng::from_seed(4)).unwrap();
    let engine = Engine::start(pool, MemoryJournal::new(), unpinned()).unwrap();
    let meter = engine.meter();
    let mut client = engine.client().unwrap();
    for _ in 0..40 {
        client.pull(25).unwrap();
    }
    let added = engine.update("late", Some(rewardpool::Quantity::Finite(9)), Some(1_000)).unwrap();
    for _ in 0..20 {
        client.draw().unwrap();
    }
    let state = engine.state().unwrap();
    let remaining = meter.remaining();
    assert_eq!(remaining, remaining_of(&state));
    assert_eq!(remaining.len(), items.len() + 1);
    let ids: Vec<String> = meter.item_ids().iter().map(str::to_owned).collect();
    assert_eq!(ids.last().map(String::as_str), Some(added.id.as_str()));
    // An update's group holds no draw: group sizes still sum to the draws.
    let m = meter.read();
    assert_eq!(m.group_size.sum(), m.draws_committed);
    assert_eq!(m.draws_committed, 40 * 25 + 20);
    drop(client);
    let last = engine.shutdown().unwrap();
    assert_eq!(meter.remaining(), remaining_of(&last), "the stop republishes everything");
}

/// A failed journal shows as `failed`, also once the engine stopped.
#[test]
fn a_failed_pool_reads_as_failed() {
    let (journal, switch) = FailingJournal::new();
    let engine = Engine::start(mud_pool(), journal, unpinned()).unwrap();
    let meter = engine.meter();
    let mut client = engine.client().unwrap();
    client.draw().unwrap();
    switch.fail_now();
    assert!(client.draw().is_err());
    assert_eq!(meter.read().run_state(), RunState::Failed);
    drop(client);
    assert!(engine.shutdown().is_err());
    let m = meter.read();
    assert_eq!(m.run_state(), RunState::Failed);
    assert_eq!(m.in_flight, 0, "failed requests are answered: {m:?}");
}

/// A journal failing in the middle of a batch: every request taken is answered (failed),
/// so nothing stays in flight. The core is parked (long parks) while 200 draws are queued,
/// then woken: it takes batches of 64 into one open group, and the 101st draw fails
/// inside the second batch.
#[test]
fn a_failure_mid_batch_leaves_nothing_in_flight() {
    let (journal, switch) = FailingJournal::new();
    let idle = IdleConfig { spin_passes: 1, yield_passes: 1, park_max: Duration::from_secs(5) };
    let config = EngineConfig { idle, batch_len_max: 64, ..unpinned() };
    let engine = Engine::start(mud_pool(), journal, config).unwrap();
    let meter = engine.meter();
    switch.fail_after_draws(100);
    let mut client = engine.client().unwrap();
    thread::sleep(Duration::from_millis(50));
    for _ in 0..200 {
        let _ticket = client.try_draw().unwrap();
    }
    let mut failed = 0;
    // `drain` wakes the core. A generous deadline turns a hang (a core that never
    // stops) into a failure.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while client.outstanding() > 0 {
        assert!(std::time::Instant::now() < deadline, "the outcomes never came: a hang");
        if client.drain(|_, r| failed += u64::from(r.is_err())) == 0 {
            thread::yield_now();
        }
    }
    assert_eq!(failed, 200, "the first 100 draws were in a group never committed");
    drop(client);
    assert!(engine.shutdown().is_err());
    let m = meter.read();
    assert_eq!(m.run_state(), RunState::Failed);
    assert_eq!(m.in_flight, 0, "{m:?}");
}
