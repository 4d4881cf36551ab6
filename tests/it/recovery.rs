//! Recovery and the durable log on the fault-injecting storage: round trips, crashes,
//! torn tails, damage, injected faults. One test per row of the decision table in
//! `src/recovery.rs`.

use std::sync::Arc;

use rewardpool::engine::CorePin;
use rewardpool::recovery::{recover, RecoveryError};
use rewardpool::storage::{CrashMode, FaultyStorage, Storage};
use rewardpool::store::{open_engine_on, read_state_on, Durability, OpenError, WalOptions};
use rewardpool::{DrawError, Engine, EngineConfig, ItemSpec, Outcome, PoolState};

pub(crate) fn catalog() -> Vec<ItemSpec> {
    vec![
        ItemSpec::new("diamond", 50, 10),
        ItemSpec::new("gold", 500, 20),
        ItemSpec::new("silver", 5_000, 30),
        ItemSpec::new("mud", -1, 70),
    ]
}

pub(crate) fn wal(durability: Durability, segment_size_bytes: u64) -> WalOptions {
    WalOptions { durability, segment_size_bytes, retention_segments: 3, ..WalOptions::default() }
}

pub(crate) fn engine_config() -> EngineConfig {
    EngineConfig { core: CorePin::Unpinned, flush_after_n_draw: 64, ..EngineConfig::default() }
}

pub(crate) fn open(storage: &FaultyStorage, durability: Durability, segment: u64) -> Engine {
    open_engine_on(Arc::new(storage.clone()), &catalog(), &wal(durability, segment), engine_config(), Some(7))
        .expect("open")
}

/// Draws `n` pipelined, returns the acknowledged outcomes (stops at the first error).
pub(crate) fn draw_n(engine: &Engine, n: usize) -> (Vec<Outcome>, Option<DrawError>) {
    let mut client = engine.client().expect("client");
    let mut out = Vec::with_capacity(n);
    let mut error = None;
    let mut submitted = 0;
    while out.len() + error.map_or(0, |_| 1) < n && error.is_none() {
        while submitted < n && client.outstanding() < 32 {
            match client.try_draw() {
                Ok(_ticket) => submitted += 1,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        client.drain(|_, r| match r {
            Ok(o) => out.push(o),
            Err(e) => error = error.or(Some(e)),
        });
        if out.len() == submitted && submitted == n {
            break;
        }
        std::thread::yield_now();
    }
    (out, error)
}

fn expected_state(initial: &[ItemSpec], acked: &[Outcome]) -> Vec<i64> {
    let mut q: Vec<i64> = initial.iter().map(|s| s.quantity.to_i64()).collect();
    for o in acked {
        if let Some(i) = o.item {
            if q[i.0 as usize] > 0 {
                q[i.0 as usize] -= 1;
            }
        }
    }
    q
}

fn quantities(state: &PoolState) -> Vec<i64> {
    state.items.iter().map(|i| i.quantity.to_i64()).collect()
}

#[test]
fn clean_shutdown_round_trips_across_rotations_and_updates() {
    let storage = FaultyStorage::new();
    let engine = open(&storage, Durability::Sync, 16 << 10);
    let (acked, err) = draw_n(&engine, 3_000);
    assert_eq!(err, None);
    assert_eq!(acked.len(), 3_000);
    engine.update("ruby", Some(rewardpool::Quantity::Finite(3)), Some(5)).expect("add ruby");
    engine.update("gold", None, Some(1)).expect("reweight gold");
    let (more, err) = draw_n(&engine, 1_000);
    assert_eq!(err, None);
    let live = engine.shutdown().expect("shutdown");
    assert_eq!(live.last_request_id.0, 4_000);
    let segments = storage.list().unwrap().iter().filter(|n| n.starts_with("wal.")).count();
    assert!(segments >= 2, "expected rotations, found {segments} segments");
    let recovered = read_state_on(&storage, &catalog()).expect("recover");
    assert_eq!(recovered, live);
    assert_eq!(recovered.hash(), live.hash());
    assert!(more.iter().all(|o| o.request_id.0 > 3_000));
    // And again after another run: ids keep increasing across restarts.
    let engine = open(&storage, Durability::Sync, 16 << 10);
    let (after, _) = draw_n(&engine, 10);
    assert!(after.iter().all(|o| o.request_id.0 > 4_000));
    engine.shutdown().unwrap();
}

#[test]
fn power_loss_in_sync_mode_keeps_every_acknowledged_draw() {
    for round in 0..5_u64 {
        let storage = FaultyStorage::new();
        let engine = open(&storage, Durability::Sync, 32 << 10);
        let (acked, _) = draw_n(&engine, 2_000 + 500 * round as usize);
        // Crash while the engine still runs: only synced bytes and entries survive.
        let image = storage.crash(CrashMode::TornPowerLoss(round + 1));
        drop(engine);
        let state = read_state_on(&image, &catalog()).expect("recover after power loss");
        let last = acked.last().map_or(0, |o| o.request_id.0);
        assert!(state.last_request_id.0 >= last, "round {round}: lost acknowledged draws");
        // Quantities equal the initial ones minus logged draws, never below zero: the
        // recovered log holds at least the acknowledged prefix.
        let at_ack = expected_state(&catalog(), &acked);
        for (got, acked_q) in quantities(&state).iter().zip(&at_ack) {
            assert!(*got == -1 || *got <= *acked_q, "round {round}: {got} > {acked_q}");
            assert!(*got >= -1);
        }
    }
}

#[test]
fn a_second_writer_is_refused_by_the_lock() {
    let storage = FaultyStorage::new();
    let engine = open(&storage, Durability::Buffered, 1 << 20);
    let err = open_engine_on(Arc::new(storage.clone()), &catalog(), &wal(Durability::Sync, 1 << 20), engine_config(), None)
        .expect_err("second open");
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    engine.shutdown().unwrap();
}

#[test]
fn empty_directory_starts_from_the_catalog() {
    let storage = FaultyStorage::new();
    let r = recover(&storage, &catalog()).expect("fresh");
    assert!(r.fresh);
    assert_eq!(r.next_sequence, 0);
    assert_eq!(r.state.items.len(), 4);
    let _unused: Option<RecoveryError> = None;
}
