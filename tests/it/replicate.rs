//! The replication seam without a network (`rewardpool::replicate`): a [`LogTail`] reads a
//! live engine's committed groups from its files up to the durable watermark, across
//! rotations, and a [`Replica`] rebuilt from them has the primary's state; bad and missing
//! groups are refused; a tail resumes after a group it handed out; retention keeps what a
//! tail still holds.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rewardpool::replicate::{Applied, ApplyError, Group, LogTail, Replica, TailStart};
use rewardpool::storage::{OsStorage, Storage};
use rewardpool::{Config, Durability, Engine, Quantity};

const CATALOG: &str =
    "pool:\n  catalog:\n    - { item_id: gold, quantity: 300, probability: 20 }\n    \
                       - { item_id: mud, quantity: -1, probability: 70 }\n";

fn config(dir: &std::path::Path, durability: Durability) -> Config {
    let mut c = Config::from_yaml_str(&format!(
        "{CATALOG}wal:\n  max_file_size_kb: 16\n  flush_after_n_draw: 64\n  durability: {durability}\n"
    ))
    .unwrap();
    c.working_dir = dir.to_owned();
    c
}

/// Draws, pulls of 10, keyed pulls and updates: many groups, several segments.
fn load(engine: &Engine, rounds: u64) {
    let mut client = engine.client().unwrap();
    for round in 0..rounds {
        client.draw().unwrap();
        let _ = client.pull(10).unwrap();
        let _ = client.pull_keyed(3, u128::from(round) + 1).unwrap();
        if round % 50 == 7 {
            engine.update("gold", Quantity::from_i64(1000), Some(round as u32 + 1)).unwrap();
        }
        if round == 120 {
            engine.update("new", Some(Quantity::Unlimited), Some(5)).unwrap();
        }
    }
}

/// Every group up to the engine's last request id, once its durable watermark reached it
/// (the watermark in the metrics is published after the caller's acknowledgement, so it
/// may lag a moment behind the last draw).
fn drain(tail: &mut LogTail, engine: &Engine) -> Vec<Group> {
    let last = engine.state().unwrap().last_request_id.0;
    let start = Instant::now();
    let durable = loop {
        let durable = engine.metrics().durable_request_id.0;
        if durable >= last {
            break durable;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never durable: {durable} < {last}");
        std::thread::sleep(Duration::from_millis(1));
    };
    let mut groups = Vec::new();
    loop {
        match tail.next_group(durable).unwrap() {
            Some(g) => groups.push(g),
            None if tail.last_request_id() >= durable => break,
            None => {
                assert!(start.elapsed() < Duration::from_secs(10), "the tail stalled: {tail:?}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    groups
}

/// The fairness audit of the log `config` keeps: no failure, and at least one run verified.
fn audit_clean(config: &Config) -> rewardpool::inspect::FairnessReport {
    let dir = storage(&config.working_dir);
    let audit =
        rewardpool::inspect::audit_fairness(&*dir, &config.wal_options().pool, None, None).unwrap();
    assert!(audit.failure.is_none(), "{audit:?}");
    assert!(audit.runs_verified >= 1 && audit.draws_verified > 0, "{audit:?}");
    audit
}

/// The seed frames of the log in `dir`, in order.
fn seed_frames(dir: &std::path::Path) -> Vec<rewardpool::wal::frame::Record> {
    let mut seeds = Vec::new();
    rewardpool::inspect::dump(&*storage(dir), false, |info| {
        if let rewardpool::wal::frame::Record::Seed { .. } = &info.record {
            seeds.push(info.record.clone());
        }
        Ok(())
    })
    .unwrap();
    seeds
}

fn storage(dir: &std::path::Path) -> Arc<dyn Storage> {
    Arc::new(OsStorage::existing(dir).unwrap())
}

#[test]
fn a_replica_built_from_the_tail_has_the_primarys_state_across_rotations() {
    for durability in [Durability::Buffered, Durability::Sync] {
        let root = tempfile::tempdir().unwrap();
        let primary = config(&root.path().join("primary"), durability);
        let engine = rewardpool::open(&primary).unwrap();
        // Hold every segment from retention, as a shipper does for what it has not read.
        engine.journal_stats().unwrap().retain_from.store(1, Ordering::Relaxed);
        load(&engine, 200);
        let mut tail = LogTail::open(storage(&primary.working_dir), TailStart::Beginning).unwrap();
        let groups = drain(&mut tail, &engine);
        assert!(tail.segment() > 2, "{durability}: the log rotated: {tail:?}");
        let replica_config = config(&root.path().join("replica"), durability);
        let mut replica = Replica::open(&replica_config).unwrap();
        let mut prev = 0;
        for g in &groups {
            assert_eq!(g.prev_request_id, prev, "{durability}: groups follow each other");
            prev = g.last_request_id;
            assert_eq!(
                replica.apply(g.prev_request_id, &g.frames).unwrap(),
                Applied::Appended { draws: g.draws }
            );
        }
        replica.sync().unwrap();
        let primary_state = engine.shutdown().unwrap();
        let replica_state = replica.close().unwrap();
        assert_eq!(replica_state.last_request_id, primary_state.last_request_id, "{durability}");
        assert_eq!(replica_state.items, primary_state.items, "{durability}");
        // The replica's log carries the primary's seed frames (commitments and reveals), in
        // order: all but the reveal the primary's shutdown wrote after the groups were read,
        // and those of the replica's segments that its own retention kept.
        let primary_seeds = seed_frames(&primary.working_dir);
        let replica_seeds = seed_frames(&replica_config.working_dir);
        assert!(replica_seeds.len() >= 2, "{durability}: {replica_seeds:?}");
        let shipped = &primary_seeds[..primary_seeds.len() - 1];
        assert!(shipped.ends_with(&replica_seeds), "{durability}: {replica_seeds:?} {shipped:?}");
        // So the replica's log audits as the primary's does: every run it holds whole is
        // verified, a run whose commitment its retention dropped is not a failure.
        audit_clean(&replica_config);
        // The key windows hold the same keys and outcomes. A key's second may differ by one:
        // the primary's pool stamps it when it draws, its log when the batch frame is
        // written (recovery, and so a replica, take the log's).
        let (rk, pk) = (&replica_state.keys, &primary_state.keys);
        assert_eq!(rk.window, pk.window, "{durability}");
        assert_eq!(rk.items, pk.items, "{durability}");
        assert_eq!(rk.records.len(), pk.records.len(), "{durability}");
        for (r, p) in rk.records.iter().zip(&pk.records) {
            assert_eq!((r.key, r.first, r.count), (p.key, p.first, p.count), "{durability}");
            assert!(r.unix_s.abs_diff(p.unix_s) <= 1, "{durability}: {r:?} vs {p:?}");
        }
        // The replica's directory is a normal log: recovered, it has the same state.
        let reread =
            rewardpool::store::read_state(&replica_config.catalog(), &replica_config.wal_options())
                .unwrap();
        assert_eq!(reread.hash(), replica_state.hash(), "{durability}");
    }
}

#[test]
fn a_tail_resumes_after_a_group_and_refuses_a_wrong_position() {
    let root = tempfile::tempdir().unwrap();
    let primary = config(&root.path().join("primary"), Durability::Buffered);
    let engine = rewardpool::open(&primary).unwrap();
    engine.journal_stats().unwrap().retain_from.store(1, Ordering::Relaxed);
    load(&engine, 60);
    let dir = storage(&primary.working_dir);
    let mut tail = LogTail::open(Arc::clone(&dir), TailStart::Beginning).unwrap();
    let all = drain(&mut tail, &engine);
    let middle = &all[all.len() / 2];
    let after = TailStart::After {
        segment: middle.segment,
        end: middle.end,
        last_request_id: middle.last_request_id,
    };
    let mut resumed = LogTail::open(Arc::clone(&dir), after).unwrap();
    let rest = drain(&mut resumed, &engine);
    assert_eq!(rest, all[all.len() / 2 + 1..], "the same groups, byte for byte");
    let wrong = TailStart::After {
        segment: middle.segment,
        end: middle.end,
        last_request_id: middle.last_request_id + 1,
    };
    let e = LogTail::open(Arc::clone(&dir), wrong).unwrap_err();
    assert!(e.to_string().contains("cannot continue the log"), "{e}");
    engine.shutdown().unwrap();
}

#[test]
fn bad_gapped_and_repeated_groups_are_refused_or_skipped() {
    let root = tempfile::tempdir().unwrap();
    let primary = config(&root.path().join("primary"), Durability::Buffered);
    let engine = rewardpool::open(&primary).unwrap();
    engine.journal_stats().unwrap().retain_from.store(1, Ordering::Relaxed);
    load(&engine, 20);
    let mut tail = LogTail::open(storage(&primary.working_dir), TailStart::Beginning).unwrap();
    let groups = drain(&mut tail, &engine);
    engine.shutdown().unwrap();
    let mut replica =
        Replica::open(&config(&root.path().join("replica"), Durability::Buffered)).unwrap();
    let first = &groups[0];
    // A flipped bit anywhere: the frame's CRC refuses it.
    for at in [0, 5, first.frames.len() / 2, first.frames.len() - 1] {
        let mut bad = first.frames.clone();
        bad[at] ^= 0x10;
        let e = replica.apply(first.prev_request_id, &bad).unwrap_err();
        assert!(matches!(e, ApplyError::BadGroup { .. }), "byte {at}: {e}");
    }
    // Cut before its commit.
    let e = replica.apply(0, &first.frames[..first.frames.len() - 32]).unwrap_err();
    assert!(e.to_string().contains("without a commit frame"), "{e}");
    // A gap: a later group first (the first groups, the seed's commitment and the first
    // draws, both follow request id 0).
    let later = groups.iter().find(|g| g.prev_request_id > 0).unwrap();
    let e = replica.apply(later.prev_request_id, &later.frames).unwrap_err();
    assert!(matches!(e, ApplyError::Gap { applied: 0, .. }), "{e}");
    assert_eq!(replica.last_request_id(), 0, "nothing of a refused group is applied");
    // In order, then a redelivery: applied once.
    for g in &groups[..3] {
        assert!(matches!(
            replica.apply(g.prev_request_id, &g.frames).unwrap(),
            Applied::Appended { .. }
        ));
    }
    let last = replica.last_request_id();
    for g in &groups[..3] {
        assert_eq!(replica.apply(g.prev_request_id, &g.frames).unwrap(), Applied::Duplicate);
    }
    assert_eq!(replica.last_request_id(), last);
    replica.close().unwrap();
}

/// A shipper that is behind puts several consecutive groups in one message: applied
/// together they give the state applied one by one; a bad frame in any of them, or a cut
/// last group, refuses the whole message before anything of it is applied; redelivered, it
/// appends nothing.
#[test]
fn several_groups_in_one_message_apply_as_one_by_one() {
    let root = tempfile::tempdir().unwrap();
    let primary = config(&root.path().join("primary"), Durability::Buffered);
    let engine = rewardpool::open(&primary).unwrap();
    engine.journal_stats().unwrap().retain_from.store(1, Ordering::Relaxed);
    load(&engine, 150);
    let mut tail = LogTail::open(storage(&primary.working_dir), TailStart::Beginning).unwrap();
    let groups = drain(&mut tail, &engine);
    let primary_state = engine.shutdown().unwrap();
    assert!(groups.len() > 100, "{}", groups.len());
    let concat =
        |gs: &[Group]| gs.iter().flat_map(|g| g.frames.iter().copied()).collect::<Vec<u8>>();
    let mut replica =
        Replica::open(&config(&root.path().join("replica"), Durability::Buffered)).unwrap();
    // Messages of 1, 2, 3, ... groups.
    let (mut at, mut size) = (0, 1);
    while at < groups.len() {
        let chunk = &groups[at..(at + size).min(groups.len())];
        let message = concat(chunk);
        // A flipped bit in the chunk's last group: the whole message is refused.
        let last_len = chunk.last().unwrap().frames.len();
        let mut bad = message.clone();
        bad[message.len() - last_len / 2] ^= 0x01;
        let before = replica.last_request_id();
        let e = replica.apply(chunk[0].prev_request_id, &bad).unwrap_err();
        assert!(matches!(e, ApplyError::BadGroup { .. }), "{e}");
        // Its last group cut short: refused too.
        let e = replica.apply(chunk[0].prev_request_id, &message[..message.len() - 16]);
        assert!(e.is_err(), "a cut last group is refused");
        assert_eq!(replica.last_request_id(), before, "nothing of a refused message applied");
        let draws: u64 = chunk.iter().map(|g| g.draws).sum();
        match replica.apply(chunk[0].prev_request_id, &message).unwrap() {
            Applied::Appended { draws: d } => assert_eq!(d, draws),
            Applied::Duplicate => assert_eq!(draws, 0, "only groups without draws can repeat"),
        }
        assert_eq!(replica.last_request_id(), chunk.last().unwrap().last_request_id);
        // Redelivered: nothing new. (A group without draws that follows the replica's last
        // request id cannot be told from a new one by its ids: a follower skips a redelivery
        // by its stream sequence first.)
        if chunk.last().unwrap().draws > 0 {
            let last = replica.last_request_id();
            assert_eq!(
                replica.apply(chunk[0].prev_request_id, &message).unwrap(),
                Applied::Duplicate
            );
            assert_eq!(replica.last_request_id(), last);
        }
        at += size;
        size = size % 7 + 1;
    }
    let state = replica.close().unwrap();
    assert_eq!(state.last_request_id, primary_state.last_request_id);
    assert_eq!(state.items, primary_state.items);
}

/// The lowest and highest segment numbers in `dir`.
fn segment_range(dir: &dyn Storage) -> (u64, u64) {
    let seqs: Vec<u64> = dir
        .list()
        .unwrap()
        .iter()
        .filter_map(|n| rewardpool::layout::parse_segment_name(n))
        .collect();
    (*seqs.iter().min().unwrap(), *seqs.iter().max().unwrap())
}

#[test]
fn retention_keeps_what_a_tail_holds_up_to_its_bound() {
    let root = tempfile::tempdir().unwrap();
    let primary = config(&root.path().join("primary"), Durability::Buffered);
    let mut wal = primary.wal_options();
    wal.retention_segments = 2;
    wal.held_segments_max = 3;
    let engine =
        rewardpool::open_engine(&primary.catalog(), &wal, primary.engine_config(), None).unwrap();
    let stats = engine.journal_stats().expect("a durable journal keeps stats");
    stats.retain_from.store(1, Ordering::Relaxed); // a reader still needs segment 0
    let dir = storage(&primary.working_dir);
    let mut rounds = 0;
    while segment_range(&*dir).1 < 4 {
        load(&engine, 5);
        rounds += 1;
        assert!(rounds < 1000, "the log never reached segment 4");
    }
    // Rotations run on the preparer thread: give the last one time to apply retention.
    std::thread::sleep(Duration::from_millis(100));
    let (oldest, newest) = segment_range(&*dir);
    assert_eq!(oldest, 0, "held, within the bound: segments {oldest}..={newest}");
    let mut tail = LogTail::open(Arc::clone(&dir), TailStart::Beginning).unwrap();
    assert!(!drain(&mut tail, &engine).is_empty());
    // Past the bound (2 kept + 3 held), retention deletes what the hold asks for anyway.
    while segment_range(&*dir).1 < 9 {
        load(&engine, 5);
    }
    std::thread::sleep(Duration::from_millis(100));
    let (oldest, newest) = segment_range(&*dir);
    assert!(oldest > 0 && oldest + 5 >= newest, "bounded: segments {oldest}..={newest}");
    engine.shutdown().unwrap();
}

/// A replica whose segments are smaller than its primary's: each of the primary's seed runs
/// spans several replica segments, and the replica's retention deletes the segment holding
/// the first retained run's commitment. Its audit verifies the runs it holds whole and does
/// not fail on the reveal whose commitment is gone.
#[test]
fn a_replica_with_smaller_segments_audits_without_a_stray_reveal() {
    let root = tempfile::tempdir().unwrap();
    let mut primary = config(&root.path().join("primary"), Durability::Buffered);
    primary.wal.max_file_size_kb = 256;
    let engine = rewardpool::open(&primary).unwrap();
    engine.journal_stats().unwrap().retain_from.store(1, Ordering::Relaxed);
    load(&engine, 2_000);
    let mut tail = LogTail::open(storage(&primary.working_dir), TailStart::Beginning).unwrap();
    let groups = drain(&mut tail, &engine);
    engine.shutdown().unwrap();
    let replica_config = config(&root.path().join("replica"), Durability::Buffered);
    let mut replica = Replica::open(&replica_config).unwrap();
    for g in &groups {
        replica.apply(g.prev_request_id, &g.frames).unwrap();
    }
    replica.close().unwrap();
    let seeds = seed_frames(&replica_config.working_dir);
    assert!(
        matches!(
            seeds.first(),
            Some(rewardpool::wal::frame::Record::Seed { revealed: Some(_), .. })
        ),
        "the replica's oldest retained seed frame is a reveal: {seeds:?}"
    );
    let audit = audit_clean(&replica_config);
    assert!(audit.draws_unseeded > 0, "the cut run's draws are not verified: {audit:?}");
}
