//! The log proves its own end, and `wal repair` keeps the newest state that is provably
//! intact without ever re-issuing a request id: one test per damage case of issue 8, on
//! real multi-segment logs (crashed by power loss, or shut down cleanly).

use std::sync::Arc;

use rewardpool::inspect::{apply_repair, plan_repair, verify, RepairPlan};
use rewardpool::recovery::recover;
use rewardpool::snapshot::format::snapshot_name;
use rewardpool::storage::{CrashMode, FaultyStorage, Storage};
use rewardpool::store::{open_engine_on, Durability};
use rewardpool::wal::header::{parse_segment_name, segment_name, CloseReason, SegmentHeader};
use rewardpool::PoolState;

use super::recovery::{
    catalog, commit_ends, crashed_log, draw_n, engine_config, expect_damage, flip, open,
    segment_names, wal,
};

const SEGMENT: u64 = super::recovery::SMALL_SEGMENT;

/// The state a log recovers to (panics on damage).
fn state(storage: &FaultyStorage) -> PoolState {
    recover(storage, &catalog()).unwrap_or_else(|e| panic!("recover: {e}")).state
}

/// Plans and applies repair moves until the log verifies (as `rewardpool wal repair`
/// does); returns the plans.
fn repair(storage: &FaultyStorage) -> Vec<RepairPlan> {
    let mut plans = Vec::new();
    for _ in 0..8 {
        let plan = plan_repair(storage).expect("plan");
        if plan.damage.is_none() {
            return plans;
        }
        apply_repair(storage, &plan).expect("apply");
        plans.push(plan);
    }
    panic!("the log does not verify after 8 moves: {:?}", verify(storage).err());
}

/// Opens the log, draws once and shuts down cleanly; returns the new draw's request id.
fn next_id(storage: &FaultyStorage) -> u64 {
    let engine = open(storage, Durability::Sync, SEGMENT);
    let (acked, err) = draw_n(&engine, 1);
    assert_eq!(err, None);
    engine.shutdown().expect("clean shutdown");
    acked[0].request_id.0
}

/// A log of several segments shut down cleanly (every segment closed, a final snapshot).
fn clean_log(draws: usize) -> (FaultyStorage, PoolState) {
    let storage = FaultyStorage::new();
    let engine = open(&storage, Durability::Sync, SEGMENT);
    let (_, err) = draw_n(&engine, draws);
    assert_eq!(err, None);
    engine.shutdown().expect("clean shutdown");
    let reference = state(&storage);
    (storage, reference)
}

fn header(storage: &FaultyStorage, name: &str) -> SegmentHeader {
    SegmentHeader::decode(&storage.file(name).expect("segment")).expect("header")
}

#[test]
fn the_newest_segment_deleted_is_damage_and_repair_never_reissues_its_ids() {
    for clean in [false, true] {
        let (image, reference) = if clean {
            clean_log(3_000)
        } else {
            let (image, _) = crashed_log(SEGMENT, 3_000);
            let reference = state(&image);
            (image, reference)
        };
        let names = segment_names(&image);
        assert!(names.len() >= 3, "{names:?}");
        image.remove(names.last().unwrap()).unwrap();
        let (_, offset, reason) = expect_damage(&image, &names[names.len() - 2]);
        assert_eq!(offset, 56, "{reason}");
        assert!(reason.contains("successor") && reason.contains("missing"), "{reason}");
        assert!(verify(&image).is_err(), "verify must not say ok");

        let plans = repair(&image);
        assert!(plans[0].unreadable, "the missing draws cannot be counted");
        let after = state(&image);
        if clean {
            // The final snapshot of the clean shutdown holds the whole state: adopted.
            assert!(plans[0].adopted_snapshot.is_some(), "{:?}", plans[0]);
            assert_eq!(after.items, reference.items, "nothing lost");
        } else {
            assert!(plans[0].end_missing, "{:?}", plans[0]);
        }
        assert!(after.last_request_id.0 >= reference.last_request_id.0, "clean {clean}");
        let id = next_id(&image);
        assert!(id > reference.last_request_id.0, "re-issued {id}, clean {clean}");
    }
}

#[test]
fn a_deleted_suffix_of_segments_is_damage() {
    let (image, _) = crashed_log(SEGMENT, 4_000);
    let reference = state(&image);
    let names = segment_names(&image);
    assert!(names.len() >= 3, "{names:?}");
    for name in &names[names.len() - 2..] {
        image.remove(name).unwrap();
    }
    let (_, _, reason) = expect_damage(&image, &names[names.len() - 3]);
    assert!(
        reason.contains(&segment_name(parse_segment_name(&names[names.len() - 3]).unwrap() + 1))
    );
    // The newest snapshot beyond the end (the state at the start of the last deleted
    // segment) holds more than the segment left: the log starts again from it.
    let plans = repair(&image);
    let (snapshot, _) = plans[0].adopted_snapshot.clone().expect("adopted");
    let seq = parse_segment_name(names.last().unwrap()).unwrap();
    assert_eq!(snapshot, snapshot_name(seq), "{:?}", plans[0]);
    assert!(verify(&image).is_ok());
    assert!(next_id(&image) > reference.last_request_id.0);
}

#[test]
fn a_snapshot_beyond_the_end_is_damage_even_when_the_end_looks_clean() {
    // The moment between installing a successor and re-marking its predecessor: the
    // predecessor still says "shutdown". The final snapshot of the deleted segment gives
    // the loss away.
    let (image, reference) = clean_log(3_000);
    let names = segment_names(&image);
    let newest = names.last().unwrap().clone();
    let seq = parse_segment_name(&newest).unwrap();
    assert!(image.file(&snapshot_name(seq + 1)).is_some(), "a clean shutdown's final snapshot");
    image.remove(&newest).unwrap();
    let prev = &names[names.len() - 2];
    let h = header(&image, prev);
    assert_eq!(h.close_reason, Some(CloseReason::Rotation));
    let mut bytes = image.file(prev).unwrap();
    bytes[..256].copy_from_slice(
        &h.reopened().closed(h.end_offset, CloseReason::Shutdown, h.next_request_id).encode(),
    );
    image.put_file(prev, bytes);
    let (_, _, reason) = expect_damage(&image, &snapshot_name(seq + 1));
    assert!(reason.contains("newer than the log"), "{reason}");
    // The same with only the deleted segment's own final snapshot: it records more.
    image.remove(&snapshot_name(seq)).unwrap();
    image.rename(&snapshot_name(seq + 1), &snapshot_name(seq)).unwrap();
    let (_, _, reason) = expect_damage(&image, &snapshot_name(seq));
    assert!(reason.contains("beyond the log's end"), "{reason}");
    repair(&image);
    assert!(next_id(&image) > reference.last_request_id.0);
}

#[test]
fn snapshots_without_any_segment_are_damage() {
    let (image, _) = clean_log(2_000);
    for name in segment_names(&image) {
        image.remove(&name).unwrap();
    }
    let (_, _, reason) = expect_damage(&image, "snapshot.");
    assert!(reason.contains("no segment"), "{reason}");
}

/// The newest snapshot deleted (`damaged` false) or with a flipped byte: rebuilt byte for
/// byte from the replay of the segment before it; nothing else changes, nothing is lost.
fn newest_snapshot_is_rebuilt(damaged: bool) {
    let (image, _) = crashed_log(SEGMENT, 3_000);
    let reference = state(&image);
    let names = segment_names(&image);
    let seq = parse_segment_name(names.last().unwrap()).unwrap();
    let snapshot = snapshot_name(seq);
    let original = image.file(&snapshot).unwrap();
    if damaged {
        flip(&image, &snapshot, 70);
    } else {
        image.remove(&snapshot).unwrap();
    }
    let (_, _, reason) = expect_damage(&image, &snapshot);
    assert!(reason.contains(if damaged { "SHA-256" } else { "missing" }), "{reason}");
    let plans = repair(&image);
    assert_eq!(plans.len(), 1, "{plans:?}");
    assert_eq!(plans[0].rebuilt_snapshots.len(), 1);
    assert!(plans[0].dropped_segments.is_empty() && plans[0].cut.is_none());
    assert_eq!(image.file(&snapshot).unwrap(), original, "rebuilt byte for byte");
    let copy = image.file(&format!("dropped.{snapshot}"));
    assert_eq!(copy.is_some(), damaged, "the damaged copy is kept");
    assert_eq!(state(&image), reference, "nothing lost");
    assert!(next_id(&image) > reference.last_request_id.0);
}

#[test]
fn the_newest_snapshot_deleted_is_rebuilt_from_the_segment_before() {
    newest_snapshot_is_rebuilt(false);
}

#[test]
fn a_damaged_newest_snapshot_is_rebuilt_and_the_damaged_copy_kept() {
    newest_snapshot_is_rebuilt(true);
}

#[test]
fn a_damaged_snapshot_whose_segment_before_is_gone_falls_back_to_the_final_snapshot() {
    // Retention deleted everything before the newest segment: its snapshot cannot be
    // rebuilt, but the clean shutdown's final snapshot holds the whole state.
    let (image, reference) = clean_log(3_000);
    let names = segment_names(&image);
    for name in &names[..names.len() - 1] {
        image.remove(name).unwrap();
    }
    let seq = parse_segment_name(names.last().unwrap()).unwrap();
    flip(&image, &snapshot_name(seq), 70);
    expect_damage(&image, &snapshot_name(seq));
    let plan = plan_repair(&image).unwrap();
    assert!(plan.rebuilt_snapshots.is_empty(), "{plan:?}");
    assert_eq!(plan.adopted_snapshot, Some((snapshot_name(seq + 1), segment_name(seq + 1))));
    repair(&image);
    assert_eq!(state(&image).items, reference.items, "nothing lost");
    // Without that final snapshot, nothing before the damage is intact: the plan changes
    // nothing (the command line then says the repair cannot fix it).
    let (image, _) = clean_log(3_000);
    let names = segment_names(&image);
    for name in &names[..names.len() - 1] {
        image.remove(name).unwrap();
    }
    // Group sizes vary with timing, so this log may have another number of segments.
    let seq = parse_segment_name(names.last().unwrap()).unwrap();
    image.remove(&snapshot_name(seq + 1)).unwrap();
    flip(&image, &snapshot_name(seq), 70);
    let plan = plan_repair(&image).unwrap();
    assert!(!plan.changes_anything(), "{plan:?}");
}

#[test]
fn a_missing_middle_segment_loses_nothing() {
    let (image, _) = crashed_log(SEGMENT, 4_000);
    let reference = state(&image);
    let names = segment_names(&image);
    assert!(names.len() >= 3, "{names:?}");
    image.remove(&names[1]).unwrap();
    let (_, _, reason) = expect_damage(&image, &names[2]);
    assert!(reason.contains(&format!("missing segment {}", names[1])), "{reason}");
    let plans = repair(&image);
    assert!(plans[0].history_only, "{:?}", plans[0]);
    assert_eq!(plans[0].dropped_segments, vec![names[0].clone()]);
    assert_eq!(state(&image), reference, "the newest state is kept");
    assert!(next_id(&image) > reference.last_request_id.0);
}

#[test]
fn a_truncated_newest_segment_is_cut_at_its_last_intact_commit() {
    // One 64 KiB segment with a few dozen groups.
    let (image, _) = crashed_log(64 << 10, 1_500);
    let reference = state(&image);
    let names = segment_names(&image);
    let newest = names.last().unwrap();
    let ends = commit_ends(&image, newest);
    assert!(ends.len() >= 3, "{ends:?}");
    let original = image.file(newest).unwrap();
    let (last_end, _) = *ends.last().unwrap();
    let mut cuts: Vec<usize> =
        ends.iter().flat_map(|(e, _)| [*e as usize, *e as usize + 16]).collect();
    cuts.extend([1000, last_end as usize - 8, original.len() - 16]);
    for cut in cuts {
        let copy = image.crash(CrashMode::Process);
        copy.put_file(newest, original[..cut].to_vec());
        let (_, offset, reason) = expect_damage(&copy, newest);
        assert_eq!(offset, 48, "cut {cut}: {reason}");
        assert!(reason.contains("truncated"), "{reason}");
        let plans = repair(&copy);
        let kept = ends.iter().rev().find(|(e, _)| *e as usize <= cut).map_or(0, |(_, id)| *id);
        let after = state(&copy);
        let committed: u64 =
            recover(&copy, &catalog()).unwrap().newest.map(|s| s.last_request_id).unwrap();
        if kept > 0 {
            assert_eq!(committed, kept, "cut {cut}: every intact commit is kept ({plans:?})");
        }
        assert_eq!(copy.file(newest).unwrap().len(), original.len(), "size restored");
        assert!(after.last_request_id.0 >= reference.last_request_id.0, "cut {cut}");
        let id = next_id(&copy);
        assert!(id > reference.last_request_id.0, "cut {cut}: re-issued {id}");
    }
}

#[test]
fn a_truncated_closed_segment_keeps_every_commit() {
    let (image, reference) = clean_log(3_000);
    let names = segment_names(&image);
    let newest = names.last().unwrap();
    let h = header(&image, newest);
    let bytes = image.file(newest).unwrap();
    image.put_file(newest, bytes[..h.end_offset as usize + 64].to_vec());
    expect_damage(&image, newest);
    let plans = repair(&image);
    assert!(!plans[0].unreadable, "nothing beyond the end was lost: {:?}", plans[0]);
    assert_eq!(state(&image).items, reference.items);
    assert_eq!(plans[0].next_request_id, reference.last_request_id.0 + 1, "{:?}", plans[0]);
}

#[test]
fn a_flipped_byte_in_the_newest_segment_is_cut_and_no_dropped_id_is_reissued() {
    let (image, _) = crashed_log(SEGMENT, 3_000);
    let reference = state(&image);
    let newest = segment_names(&image).pop().unwrap();
    let ends = commit_ends(&image, &newest);
    // Not the last commit (bytes after it are a tail to trim, not damage).
    let (mid_end, mid_id) = ends[(ends.len() - 1) / 2];
    flip(&image, &newest, mid_end as usize + 20);
    expect_damage(&image, &newest);
    let plans = repair(&image);
    let scan = recover(&image, &catalog()).unwrap().newest.unwrap();
    assert_eq!(scan.last_request_id, mid_id, "{plans:?}");
    let id = next_id(&image);
    assert!(id > reference.last_request_id.0, "re-issued {id}");
}

#[test]
fn a_restart_continues_in_the_newest_segment() {
    let storage = FaultyStorage::new();
    for _ in 0..12 {
        let engine = open(&storage, Durability::Sync, 1 << 20);
        let (_, err) = draw_n(&engine, 10);
        assert_eq!(err, None);
        engine.shutdown().unwrap();
    }
    assert_eq!(segment_names(&storage), vec![segment_name(0)], "one segment for 12 runs");
    let r = recover(&storage, &catalog()).unwrap();
    assert_eq!(r.state.last_request_id.0, 120);
    assert!(verify(&storage).is_ok());
}

#[test]
fn a_resumed_segment_never_replays_the_torn_tail_it_continued_over() {
    // A crash leaves uncommitted frames after the last commit; the restart continues
    // there. Whatever it writes next, the old frames must never come back as committed.
    for staged in [false, true] {
        let storage = if staged { FaultyStorage::staged() } else { FaultyStorage::new() };
        let engine = open(&storage, Durability::Sync, 1 << 20);
        let (acked, _) = draw_n(&engine, 2_000);
        storage.hold_syncs(true);
        // Frames that will never be synced: a torn tail once crashed (Process mode keeps
        // what was written; in staged mode nothing unsynced reached the file).
        let mut client = engine.client().unwrap();
        for _ in 0..200 {
            let _ = client.try_draw();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let image = storage.crash(CrashMode::Process);
        storage.hold_syncs(false);
        drop(client);
        drop(engine);
        let before = recover(&image, &catalog()).unwrap();
        assert!(before.state.last_request_id.0 >= acked.last().unwrap().request_id.0);
        let engine = open(&image, Durability::Sync, 1 << 20);
        let (more, err) = draw_n(&engine, 3);
        assert_eq!(err, None);
        let image2 = image.crash(CrashMode::Process);
        drop(engine);
        let after = recover(&image2, &catalog()).unwrap();
        assert_eq!(
            after.state.last_request_id.0,
            more.last().unwrap().request_id.0,
            "staged {staged}: nothing after the last acknowledged draw"
        );
        assert_eq!(segment_names(&image2).len(), 1, "continued in the same segment");
    }
}

#[test]
fn a_repair_floor_is_carried_by_a_new_segment() {
    let (image, _) = crashed_log(SEGMENT, 3_000);
    let reference = state(&image);
    let names = segment_names(&image);
    image.remove(names.last().unwrap()).unwrap();
    repair(&image);
    let floor = state(&image).last_request_id.0;
    // The next start cannot continue in the segment whose floor is above its last commit:
    // a new segment starts at the floor, and survives a restart.
    let storage: Arc<dyn Storage> = Arc::new(image.clone());
    let engine = open_engine_on(
        storage,
        &catalog(),
        &wal(Durability::Sync, SEGMENT),
        engine_config(),
        Some(1),
    )
    .unwrap();
    let (acked, _) = draw_n(&engine, 5);
    engine.shutdown().unwrap();
    assert_eq!(acked[0].request_id.0, floor + 1);
    assert!(floor > reference.last_request_id.0);
    assert_eq!(state(&image).last_request_id.0, floor + 5);
    assert!(verify(&image).is_ok());
}

#[test]
fn damage_in_the_newest_segment_after_a_clean_shutdown_loses_nothing() {
    // The final snapshot holds the whole state: repair starts the log again from it.
    let (image, reference) = clean_log(3_000);
    let newest = segment_names(&image).pop().unwrap();
    let ends = commit_ends(&image, &newest);
    // Inside the first group's commit frame: committed bytes, whatever the group sizes.
    flip(&image, &newest, ends[0].0 as usize - 20);
    expect_damage(&image, &newest);
    let plans = repair(&image);
    let (snapshot, segment) = plans[0].adopted_snapshot.clone().expect("adopted");
    assert_eq!(parse_segment_name(&segment), snapshot_name_seq(&snapshot));
    assert_eq!(state(&image).items, reference.items);
    assert_eq!(segment_names(&image), vec![segment]);
    assert!(next_id(&image) > reference.last_request_id.0);
    assert!(verify(&image).is_ok());
}

fn snapshot_name_seq(name: &str) -> Option<u64> {
    rewardpool::snapshot::format::parse_snapshot_name(name)
}

/// Rewrites every segment header of `storage` as format 1 (the previous release): version 1,
/// bytes 56..252 zero (no close reason, no floor).
fn as_format_1(storage: &FaultyStorage) {
    use rewardpool::wal::frame::Record;
    use rewardpool::wal::header::{SegmentStatus, SEGMENT_HEADER_SIZE};
    use rewardpool::wal::reader::FrameIter;
    for name in segment_names(storage) {
        let file = storage.file(&name).unwrap();
        let mut bytes = rkyv::util::AlignedVec::<16>::new();
        bytes.extend_from_slice(&file);
        let h = SegmentHeader::decode(&bytes).unwrap();
        let closed = h.status == SegmentStatus::Closed;
        let end = if closed { h.end_offset as usize } else { bytes.len() };
        // Format 1 wrote a 32-byte frame per draw: re-encode the batches as such (the file
        // grows where it must; its header says so).
        let mut frames = vec![0_u8; SEGMENT_HEADER_SIZE];
        let mut out = rkyv::util::AlignedVec::<16>::new();
        out.resize(4096, 0);
        for (_, record) in FrameIter::new(&bytes, SEGMENT_HEADER_SIZE, end).map_while(Result::ok) {
            // Format 1 had neither keys nor seed frames.
            if matches!(record, Record::Key { .. } | Record::Seed { .. }) {
                continue;
            }
            let len = record.encode(&mut out).unwrap();
            frames.extend_from_slice(&out[..len]);
        }
        let size = (frames.len() as u64 + 4096).max(h.segment_size);
        let end_offset = if closed { frames.len() as u64 } else { 0 };
        let h = SegmentHeader { version: 2, segment_size: size, end_offset, ..h };
        let mut header = h.encode();
        header[8..12].copy_from_slice(&1_u32.to_le_bytes());
        header[56..252].fill(0);
        let crc = crc32c::crc32c(&header[..252]);
        header[252..256].copy_from_slice(&crc.to_le_bytes());
        frames[..SEGMENT_HEADER_SIZE].copy_from_slice(&header);
        frames.resize(size as usize, 0);
        storage.put_file(&name, frames);
    }
}

#[test]
fn a_log_written_by_the_previous_format_recovers_and_is_upgraded_on_open() {
    for clean in [true, false] {
        let (image, reference) = if clean {
            clean_log(3_000)
        } else {
            let (image, _) = crashed_log(SEGMENT, 3_000);
            let reference = state(&image);
            (image, reference)
        };
        as_format_1(&image);
        let names = segment_names(&image);
        assert_eq!(state(&image), reference, "clean {clean}: the same state from format 1");
        assert!(verify(&image).is_ok(), "clean {clean}");
        let id = next_id(&image);
        assert!(id > reference.last_request_id.0, "clean {clean}");
        // Opening rewrote the old ends: every segment but the newest says a successor
        // exists, so deleting the newest is damage from now on.
        for name in &segment_names(&image)[..segment_names(&image).len() - 1] {
            let h = header(&image, name);
            assert_eq!(h.close_reason, Some(CloseReason::Rotation), "clean {clean}: {name}");
        }
        assert!(segment_names(&image).len() >= names.len());
    }
}
