//! Pulls: one request for n draws, n outcomes with consecutive request ids, committed whole
//! in one group (SPEC §1.10). The bounds (0, the maximum, one more), an item running out
//! mid-pull, back-pressure from the pull area, and power loss while pulls of 10 stream in.
//! The SIGKILL campaign with pulls is in `crash.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use rewardpool::engine::CorePin;
use rewardpool::storage::{CrashMode, FaultyStorage, Storage};
use rewardpool::store::{open_engine_on, read_state_on, Durability};
use rewardpool::wal::frame::Record;
use rewardpool::{
    DrawError, Engine, EngineConfig, ItemIndex, ItemSpec, MemoryJournal, Outcome, Pool, Rng,
    PULL_LEN_MAX,
};

use crate::recovery::{catalog, engine_config, wal};

fn memory_engine(items: &[ItemSpec], config: EngineConfig) -> Engine {
    let pool = Pool::new(items, Rng::from_seed(5)).unwrap();
    Engine::start(pool, MemoryJournal::new(), config).unwrap()
}

fn unpinned() -> EngineConfig {
    EngineConfig { core: CorePin::Unpinned, ..EngineConfig::default() }
}

/// Every draw frame recovery accepts in `storage`, by request id, after checking that the
/// log holds whole pulls of `pull` (every request was a pull of `pull`, ids from 1): draw
/// ids follow each other, and every group ends at the end of a pull, so no group (and no
/// segment) holds part of one.
pub(crate) fn logged_whole_pulls(
    storage: &dyn Storage,
    pull: u64,
    what: &str,
) -> BTreeMap<u64, Option<u32>> {
    let mut logged = BTreeMap::new();
    let mut last: Option<u64> = None;
    rewardpool::inspect::dump(storage, false, |info| {
        match info.record {
            Record::Draw { request_id, item } => {
                if let Some(last) = last {
                    assert_eq!(request_id, last + 1, "{what}: draw ids do not follow");
                }
                last = Some(request_id);
                logged.insert(request_id, item);
            }
            Record::Commit { last_request_id, group } => {
                assert_eq!(
                    last_request_id % pull,
                    0,
                    "{what}: group {group} ends at request {last_request_id}, inside a pull"
                );
            }
            _ => {}
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{what}: the log does not read back: {e}"));
    logged
}

#[test]
fn a_pull_has_consecutive_ids_and_drain_delivers_each_draw_under_its_ticket() {
    let engine = memory_engine(&catalog(), unpinned());
    let mut client = engine.client().unwrap();
    let pull = client.pull(10).unwrap();
    assert_eq!(pull.len(), 10);
    assert_eq!(pull.first_request_id().0, 1);
    let ids: Vec<u64> = pull.map(|o| o.request_id.0).collect();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());

    let a = client.try_draw().unwrap();
    let b = client.try_pull(5).unwrap();
    let c = client.try_draw().unwrap();
    assert_eq!((a.id(), b.id(), b.len(), c.id()), (1, 2, 5, 3));
    let mut seen: Vec<(u64, u64)> = Vec::new();
    while seen.len() < 7 {
        client.drain(|seq, r| seen.push((seq, r.unwrap().request_id.0)));
    }
    assert_eq!(seen, [(1, 11), (2, 12), (2, 13), (2, 14), (2, 15), (2, 16), (3, 17)]);
    assert_eq!(client.outstanding(), 0);
    assert_eq!(engine.shutdown().unwrap().last_request_id.0, 17);
}

#[test]
fn an_item_that_runs_out_mid_pull_gives_empty_outcomes_for_the_rest() {
    let items = [ItemSpec::new("gold", 3, 1)];
    let storage = FaultyStorage::new();
    let engine = open_engine_on(
        Arc::new(storage.clone()),
        &items,
        &wal(Durability::Sync, 1 << 20),
        engine_config(),
        Some(1),
    )
    .unwrap();
    let mut client = engine.client().unwrap();
    let outcomes: Vec<Outcome> = client.pull(5).unwrap().collect();
    let items_won: Vec<Option<ItemIndex>> = outcomes.iter().map(|o| o.item).collect();
    let gold = Some(ItemIndex(0));
    assert_eq!(items_won, [gold, gold, gold, None, None]);
    assert_eq!(outcomes.iter().map(|o| o.request_id.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert!(client.pull(2).unwrap().all(|o| o.item.is_none()));
    drop(client);
    let live = engine.shutdown().unwrap();
    assert_eq!(live.last_request_id.0, 7);
    assert_eq!(live.items[0].quantity.to_i64(), 0);
    assert_eq!(read_state_on(&storage, &items).unwrap(), live);
    let logged = logged_whole_pulls(&storage, 1, "run out");
    assert_eq!(logged.values().filter(|i| i.is_some()).count(), 3);
    assert_eq!(logged.len(), 7);
}

#[test]
fn the_longest_pull_is_accepted_one_more_and_zero_are_refused() {
    const { assert!(PULL_LEN_MAX >= 1000) };
    let engine = memory_engine(&catalog(), unpinned());
    let mut client = engine.client().unwrap();
    assert_eq!(client.pull_max(), PULL_LEN_MAX);
    let pull = client.pull(PULL_LEN_MAX).unwrap();
    assert_eq!(pull.count(), PULL_LEN_MAX as usize);
    let too_long = client.try_pull(PULL_LEN_MAX + 1).unwrap_err();
    assert_eq!(too_long, DrawError::PullLen { len: PULL_LEN_MAX + 1, max: PULL_LEN_MAX });
    let message = too_long.to_string();
    assert!(message.contains("1001") && message.contains("1 to 1000"), "{message}");
    assert_eq!(client.try_pull(0).unwrap_err(), DrawError::PullLen { len: 0, max: PULL_LEN_MAX });
    assert_eq!(client.outstanding(), 0, "a refused pull sends nothing");
    drop(client);
    assert_eq!(engine.shutdown().unwrap().last_request_id.0, u64::from(PULL_LEN_MAX));
}

/// A segment too small for [`PULL_LEN_MAX`] draws in one group lowers the client's maximum;
/// pulls of that maximum rotate segments between pulls, never inside one.
#[test]
fn a_small_segment_lowers_the_maximum_and_never_splits_a_pull() {
    let storage = FaultyStorage::new();
    let engine = open_engine_on(
        Arc::new(storage.clone()),
        &catalog(),
        &wal(Durability::Buffered, 16 << 10),
        engine_config(),
        Some(2),
    )
    .unwrap();
    let mut client = engine.client().unwrap();
    let max = client.pull_max();
    assert!(max < PULL_LEN_MAX && max > 100, "max={max}");
    for _ in 0..8 {
        assert_eq!(client.pull(max).unwrap().len(), max as usize);
    }
    let refused = client.try_pull(max + 1).unwrap_err();
    assert_eq!(refused, DrawError::PullLen { len: max + 1, max });
    drop(client);
    let live = engine.shutdown().unwrap();
    let logged = logged_whole_pulls(&storage, u64::from(max), "small segment");
    // A segment holds one such pull: the oldest ones were rotated out and retired.
    let first = logged.keys().next().copied().unwrap_or(0);
    assert!(first > u64::from(max), "first logged {first}: the pulls never rotated");
    assert_eq!(logged.keys().last().copied(), Some(live.last_request_id.0));
    assert_eq!(read_state_on(&storage, &catalog()).unwrap(), live);
}

#[test]
fn a_full_pull_area_pushes_back_until_outcomes_are_taken() {
    let config = EngineConfig { pull_area_len: 1024, ..unpinned() };
    let engine = memory_engine(&catalog(), config);
    let mut client = engine.client().unwrap();
    let first = client.try_pull(1000).unwrap();
    assert_eq!(client.try_pull(100), Err(DrawError::Full));
    // A single draw does not use the area.
    let single = client.try_draw().unwrap();
    assert_eq!(client.wait_pull(first).unwrap().len(), 1000);
    let second = client.try_pull(1000).unwrap();
    assert_eq!(client.wait(single).unwrap().request_id.0, 1001);
    let pull = client.wait_pull(second).unwrap();
    assert_eq!(pull.first_request_id().0, 1002);
    let pool = Pool::new(&catalog(), Rng::from_seed(1)).unwrap();
    let small = EngineConfig { pull_area_len: 999, ..unpinned() };
    let refused = Engine::start(pool, MemoryJournal::new(), small);
    assert!(refused.is_err(), "a pull area below PULL_LEN_MAX is refused");
}

/// Power loss at a random moment while pulls of 10 stream in (sync mode, a slow device,
/// small segments so pulls meet rotations): every acknowledged pull is in the recovered
/// log whole, and the log holds no part of a pull.
#[test]
fn power_loss_keeps_every_acknowledged_pull_whole() {
    const PULL: u32 = 10;
    for round in 0..4_u64 {
        let storage = if round % 2 == 1 { FaultyStorage::staged() } else { FaultyStorage::new() };
        storage.set_sync_delay(std::time::Duration::from_micros(300));
        let engine = open_engine_on(
            Arc::new(storage.clone()),
            &catalog(),
            &wal(Durability::Sync, 32 << 10),
            engine_config(),
            Some(round),
        )
        .unwrap();
        let crashed = AtomicBool::new(false);
        let acked_count = AtomicUsize::new(0);
        let (image, acked) = std::thread::scope(|s| {
            let drawer = s.spawn(|| {
                let mut client = engine.client().unwrap();
                let mut before_crash = Vec::new();
                while !crashed.load(Ordering::SeqCst) {
                    while client.outstanding() < 16 && client.try_pull(PULL).is_ok() {}
                    let mut seen = Vec::new();
                    client.drain(|_, r| seen.extend(r.ok()));
                    // Acknowledged before the crash began only if the flag is still clear
                    // after they were seen.
                    if !crashed.load(Ordering::SeqCst) {
                        before_crash.extend(seen);
                        acked_count.store(before_crash.len(), Ordering::SeqCst);
                    }
                }
                before_crash
            });
            std::thread::sleep(std::time::Duration::from_millis(40 + 17 * round));
            // A loaded machine may not have acknowledged anything yet: crash once it has.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while acked_count.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            crashed.store(true, Ordering::SeqCst);
            let image = storage.crash(CrashMode::PowerLoss);
            (image, drawer.join().unwrap())
        });
        drop(engine);
        assert!(!acked.is_empty(), "round {round}: nothing acknowledged");
        let what = format!("round {round}");
        let logged = logged_whole_pulls(&image, u64::from(PULL), &what);
        let state = read_state_on(&image, &catalog()).unwrap_or_else(|e| panic!("{what}: {e}"));
        let first_logged = logged.keys().next().copied().unwrap_or(u64::MAX);
        for o in &acked {
            let id = o.request_id.0;
            assert!(id <= state.last_request_id.0, "{what}: acknowledged {id} lost");
            let pull_first = (id - 1) / u64::from(PULL) * u64::from(PULL) + 1;
            for member in pull_first..pull_first + u64::from(PULL) {
                if member >= first_logged {
                    assert!(logged.contains_key(&member), "{what}: {member} of {id}'s pull lost");
                }
            }
            if id >= first_logged {
                assert_eq!(logged[&id], o.item.map(|i| i.0), "{what}: request {id}");
            }
        }
    }
}
