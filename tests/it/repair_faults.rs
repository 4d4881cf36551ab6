//! Faults around the log's end and its repair: crashes at every storage operation around a
//! restart (resume, or a new segment plus the re-mark of the old end), a rotation, a clean
//! shutdown and a repair must recover (or let the repair finish) without a refusal, keep
//! every acknowledged draw, and never re-issue a request id; read errors while planning a
//! repair are errors, never a reason to drop intact segments.

use std::sync::Arc;

use rewardpool::inspect::{apply_repair, plan_repair, verify};
use rewardpool::recovery::recover;
use rewardpool::snapshot::format::snapshot_name;
use rewardpool::storage::{CrashMode, FaultyStorage, Storage};
use rewardpool::store::{open_engine_on, Durability};
use rewardpool::wal::header::parse_segment_name;
use rewardpool::Engine;

use super::recovery::{
    catalog, commit_ends, crashed_log, draw_n, engine_config, flip, segment_names, wal,
};

fn open_with(storage: &FaultyStorage, durability: Durability, segment: u64) -> Option<Engine> {
    open_engine_on(
        Arc::new(storage.clone()),
        &catalog(),
        &wal(durability, segment),
        engine_config(),
        Some(7),
    )
    .ok()
}

/// After a crash image `image`: recovery succeeds without a repair, keeps `acked_last`,
/// and a new draw gets an id above it.
fn check_image(image: &FaultyStorage, acked_last: u64, segment: u64, what: &str) {
    let r = recover(image, &catalog()).unwrap_or_else(|e| panic!("{what}: refused: {e}"));
    assert!(
        r.state.last_request_id.0 >= acked_last,
        "{what}: recovered {} < acknowledged {acked_last}",
        r.state.last_request_id.0
    );
    let engine = open_with(image, Durability::Sync, segment)
        .unwrap_or_else(|| panic!("{what}: cannot reopen"));
    let (next, err) = draw_n(&engine, 1);
    assert_eq!(err, None, "{what}");
    engine.shutdown().unwrap();
    assert!(next[0].request_id.0 > acked_last, "{what}: re-issued {}", next[0].request_id.0);
    let again = recover(image, &catalog()).unwrap_or_else(|e| panic!("{what}: after: {e}"));
    assert!(again.state.last_request_id.0 >= next[0].request_id.0, "{what}");
}

/// Base logs: (name, image, last acknowledged id, segment size to restart with).
fn bases() -> Vec<(String, FaultyStorage, u64, u64)> {
    let mut out = Vec::new();
    for staged in [false, true] {
        for clean in [false, true] {
            let storage = if staged { FaultyStorage::staged() } else { FaultyStorage::new() };
            let engine = open_with(&storage, Durability::Sync, 4 << 10).unwrap();
            let (acked, err) = draw_n(&engine, 1_500);
            assert_eq!(err, None);
            let image = if clean {
                engine.shutdown().unwrap();
                storage.crash(CrashMode::PowerLoss)
            } else {
                let image = storage.crash(CrashMode::PowerLoss);
                drop(engine);
                image
            };
            let last = acked.last().unwrap().request_id.0;
            // 16 KiB: resume when there is room; 32 KiB: a new segment and the re-mark.
            for restart_segment in [4 << 10, 8 << 10] {
                let name =
                    format!("staged={staged} clean={clean} restart_segment={restart_segment}");
                out.push((name, image.crash(CrashMode::Process), last, restart_segment));
            }
        }
    }
    out
}

/// A crash at every storage operation of a restart (recovery, closing open segments,
/// resuming or installing a new segment, re-marking the old end, the first draws, the
/// clean shutdown).
#[test]
fn a_crash_at_every_operation_of_a_restart_recovers_and_loses_nothing() {
    for (name, base, base_last, segment) in bases() {
        for n in 0..120_u64 {
            let img = base.crash(CrashMode::Process);
            img.crash_after_ops(n);
            let mut acked_last = base_last;
            let mut finished = false;
            if let Some(engine) = open_with(&img, Durability::Sync, segment) {
                let (acked, err) = draw_n(&engine, 40);
                if let Some(o) = acked.last() {
                    acked_last = acked_last.max(o.request_id.0);
                }
                finished = err.is_none() && engine.shutdown().is_ok();
            }
            for mode in [CrashMode::PowerLoss, CrashMode::Process] {
                let after = img.crash(mode);
                check_image(&after, acked_last, segment, &format!("{name} n={n} {mode:?}"));
            }
            if finished {
                break;
            }
        }
    }
}

/// A crash at every storage operation while draws stream through several rotations
/// (sync mode): power loss and process crash images both recover, nothing acknowledged lost.
#[test]
fn a_crash_at_every_operation_around_rotations_recovers_and_loses_nothing() {
    for staged in [false, true] {
        for n in 0..160_u64 {
            let storage = if staged { FaultyStorage::staged() } else { FaultyStorage::new() };
            let engine = open_with(&storage, Durability::Sync, 4 << 10).unwrap();
            storage.crash_after_ops(n);
            let (acked, _) = draw_n(&engine, 2_500);
            let _ = engine.shutdown();
            let last = acked.last().map_or(0, |o| o.request_id.0);
            for mode in [CrashMode::PowerLoss, CrashMode::Process] {
                let after = storage.crash(mode);
                check_image(&after, last, 4 << 10, &format!("staged={staged} n={n} {mode:?}"));
            }
        }
    }
}

/// A crash at every storage operation of a clean shutdown (closing the header, writing
/// the final snapshot, retention), then a restart.
#[test]
fn a_crash_at_every_operation_of_a_clean_shutdown_recovers() {
    for staged in [false, true] {
        for n in 0..40_u64 {
            let storage = if staged { FaultyStorage::staged() } else { FaultyStorage::new() };
            let engine = open_with(&storage, Durability::Sync, 4 << 10).unwrap();
            let (acked, err) = draw_n(&engine, 1_700);
            assert_eq!(err, None);
            storage.crash_after_ops(n);
            let done = engine.shutdown().is_ok();
            let last = acked.last().unwrap().request_id.0;
            for mode in [CrashMode::PowerLoss, CrashMode::Process] {
                let after = storage.crash(mode);
                check_image(&after, last, 4 << 10, &format!("staged={staged} n={n} {mode:?}"));
            }
            if done {
                break;
            }
        }
    }
}

const SEGMENT: u64 = 4 << 10;

fn clean_log(draws: usize) -> FaultyStorage {
    let storage = FaultyStorage::new();
    let engine = open_with(&storage, Durability::Sync, SEGMENT).unwrap();
    let (_, err) = draw_n(&engine, draws);
    assert_eq!(err, None);
    engine.shutdown().expect("clean shutdown");
    storage.crash(CrashMode::PowerLoss)
}

/// Plans and applies moves as `rewardpool wal repair` does; Err on the first failure
/// (the injected crash) or when a plan changes nothing (the CLI's "cannot fix this").
fn repair_until_ok(storage: &FaultyStorage) -> Result<usize, String> {
    for moves in 0..8 {
        let plan = plan_repair(storage).map_err(|e| format!("plan: {e}"))?;
        if plan.damage.is_none() {
            return Ok(moves);
        }
        if !plan.changes_anything() {
            return Err(format!("no intact part of the log to keep: {plan:?}"));
        }
        apply_repair(storage, &plan).map_err(|e| format!("apply: {e}"))?;
    }
    Err(format!("does not verify after 8 moves: {:?}", verify(storage).err()))
}

/// Damaged logs: (case, image, state's last id before the damage, whether nothing may be
/// lost).
fn damaged_logs() -> Vec<(&'static str, FaultyStorage, rewardpool::PoolState, bool)> {
    let mut out = Vec::new();
    // A flipped byte in the newest segment after a clean shutdown: adopt the final snapshot.
    let image = clean_log(3_000);
    let reference = recover(&image, &catalog()).unwrap().state;
    let newest = segment_names(&image).pop().unwrap();
    let ends = commit_ends(&image, &newest);
    // Inside the first group's commit frame: committed bytes, whatever the group sizes.
    flip(&image, &newest, ends[0].0 as usize - 20);
    out.push(("clean, flipped newest (adopt)", image, reference, true));
    // The newest segment deleted after a clean shutdown: adopt the final snapshot.
    let image = clean_log(3_000);
    let reference = recover(&image, &catalog()).unwrap().state;
    image.remove(&segment_names(&image).pop().unwrap()).unwrap();
    out.push(("clean, newest deleted (adopt)", image, reference, true));
    // The newest segment deleted after a crash: the end is re-marked, the floor raised.
    let (image, _) = crashed_log(SEGMENT, 3_000);
    let reference = recover(&image, &catalog()).unwrap().state;
    image.remove(&segment_names(&image).pop().unwrap()).unwrap();
    out.push(("crashed, newest deleted", image, reference, false));
    // A flipped byte in the newest segment after a crash: cut.
    let (image, _) = crashed_log(SEGMENT, 3_000);
    let reference = recover(&image, &catalog()).unwrap().state;
    let newest = segment_names(&image).pop().unwrap();
    let ends = commit_ends(&image, &newest);
    flip(&image, &newest, ends[ends.len() / 2].0 as usize + 20);
    out.push(("crashed, flipped newest (cut)", image, reference, false));
    // A missing middle segment: history only.
    let (image, _) = crashed_log(SEGMENT, 4_000);
    let reference = recover(&image, &catalog()).unwrap().state;
    image.remove(&segment_names(&image)[1]).unwrap();
    out.push(("crashed, middle deleted", image, reference, true));
    // The newest snapshot deleted: rebuilt.
    let (image, _) = crashed_log(SEGMENT, 3_000);
    let reference = recover(&image, &catalog()).unwrap().state;
    let seq = parse_segment_name(&segment_names(&image).pop().unwrap()).unwrap();
    image.remove(&snapshot_name(seq)).unwrap();
    out.push(("crashed, newest snapshot deleted", image, reference, true));
    out
}

/// `wal repair` interrupted at every storage operation (power loss or process crash),
/// then run again to the end: it must finish, keep what the uninterrupted repair keeps,
/// and never re-issue an id.
#[test]
fn a_repair_interrupted_at_every_operation_can_be_finished() {
    for (case, image, reference, lossless) in damaged_logs() {
        // The operations the first plan takes (planning reads only): start crashing after it.
        let full = plan_repair(&image.crash(CrashMode::Process)).unwrap();
        let planned = (0..100_000_u64)
            .find(|&n| {
                let copy = image.crash(CrashMode::Process);
                copy.crash_after_ops(n);
                plan_repair(&copy).is_ok_and(|p| p == full)
            })
            .unwrap();
        for n in planned..planned + 200 {
            let copy = image.crash(CrashMode::Process);
            copy.crash_after_ops(n);
            let first = repair_until_ok(&copy);
            for mode in [CrashMode::PowerLoss, CrashMode::Process] {
                let what = format!("{case}: crash after {n} ops ({mode:?}), first run {first:?}");
                let after = copy.crash(mode);
                repair_until_ok(&after).unwrap_or_else(|e| panic!("{what}: second run: {e}"));
                let state = recover(&after, &catalog())
                    .unwrap_or_else(|e| panic!("{what}: refused: {e}"))
                    .state;
                if lossless {
                    assert_eq!(state.items, reference.items, "{what}: lost state");
                }
                assert!(state.last_request_id.0 >= reference.last_request_id.0, "{what}");
                check_image(&after, reference.last_request_id.0, SEGMENT, &what);
            }
            if first.is_ok() {
                break;
            }
        }
    }
}

/// An adopting repair interrupted after the old segments were moved aside (a state an
/// older order of `apply_repair` could leave, or an operator who moved them): snapshots
/// and no segment; the next `wal repair` starts again from the newest intact snapshot.
#[test]
fn an_adopting_repair_interrupted_after_moving_the_segments_aside_can_be_finished() {
    let image = clean_log(3_000);
    let reference = recover(&image, &catalog()).unwrap().state;
    let newest = segment_names(&image).pop().unwrap();
    let ends = commit_ends(&image, &newest);
    // Inside the first group's commit frame: committed bytes, whatever the group sizes.
    flip(&image, &newest, ends[0].0 as usize - 20);
    let plan = plan_repair(&image).unwrap();
    assert!(plan.adopted_snapshot.is_some(), "{plan:?}");
    // The state apply_repair leaves when it stops right before writing the new segment.
    for name in &plan.dropped_segments {
        image.rename(name, &format!("dropped.{name}")).unwrap();
    }
    let result = repair_until_ok(&image);
    assert!(result.is_ok(), "the second `wal repair` cannot finish: {result:?}");
    assert_eq!(recover(&image, &catalog()).unwrap().state.items, reference.items);
    check_image(&image, reference.last_request_id.0, SEGMENT, "after the second repair");
}

/// A storage that fails the first `fails` reads of one file with EIO (a transient read
/// error: a flaky cable, a busy NFS server), then reads normally.
#[derive(Debug)]
struct FlakyReads {
    inner: FaultyStorage,
    name: String,
    fails: std::sync::atomic::AtomicU64,
}

impl FlakyReads {
    fn check(&self, name: &str) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        if name == self.name
            && self
                .fails
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
                .is_ok()
        {
            return Err(std::io::Error::from_raw_os_error(libc_eio()));
        }
        Ok(())
    }
}

fn libc_eio() -> i32 {
    5
}

impl Storage for FlakyReads {
    fn list(&self) -> std::io::Result<Vec<String>> {
        self.inner.list()
    }
    fn read(&self, name: &str) -> std::io::Result<rkyv::util::AlignedVec<16>> {
        self.check(name)?;
        self.inner.read(name)
    }
    fn read_prefix(
        &self,
        name: &str,
        len_max: usize,
    ) -> std::io::Result<(rkyv::util::AlignedVec<16>, u64)> {
        self.check(name)?;
        self.inner.read_prefix(name, len_max)
    }
    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        self.check(name)?;
        self.inner.read_at(name, offset, buf)
    }
    fn write_synced(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.write_synced(name, bytes)
    }
    fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, name: &str) -> std::io::Result<()> {
        self.inner.remove(name)
    }
    fn sync_dir(&self) -> std::io::Result<()> {
        self.inner.sync_dir()
    }
    fn create_segment(
        &self,
        name: &str,
        size: u64,
    ) -> std::io::Result<Arc<dyn rewardpool::storage::SegmentMap>> {
        self.inner.create_segment(name, size)
    }
    fn open_segment(
        &self,
        name: &str,
    ) -> std::io::Result<Arc<dyn rewardpool::storage::SegmentMap>> {
        self.inner.open_segment(name)
    }
    fn lock(&self, exclusive: bool) -> std::io::Result<Box<dyn rewardpool::storage::DirLock>> {
        self.inner.lock(exclusive)
    }
    fn describe(&self, name: &str) -> String {
        self.inner.describe(name)
    }
}

/// A transient read error while `wal repair` plans is an I/O error to report, never
/// damage to repair: with a middle segment missing, the plan must keep the newest
/// segment (history only), not cut the log before it because one read of it failed.
#[test]
fn a_transient_read_error_while_planning_never_makes_a_plan_that_drops_intact_segments() {
    let (image, _) = crashed_log(SEGMENT, 4_000);
    let names = segment_names(&image);
    image.remove(&names[1]).unwrap();
    let full = plan_repair(&image).unwrap();
    assert!(full.history_only, "{full:?}");
    let newest = names.last().unwrap().clone();
    for fails in 1..12 {
        let flaky = FlakyReads {
            inner: image.crash(CrashMode::Process),
            name: newest.clone(),
            fails: fails.into(),
        };
        match plan_repair(&flaky) {
            Err(_) => {}
            Ok(plan) => assert_eq!(
                plan, full,
                "{fails} failed read(s) of {newest} changed the plan: it drops {:?}",
                plan.dropped_segments
            ),
        }
    }
}

/// The same for the storage dying mid-plan: every plan is the full one or an error, never
/// a plan that "keeps nothing" (the CLI then tells the operator to start over, which
/// re-issues every request id).
#[test]
fn an_io_error_while_planning_is_an_error_not_an_empty_plan() {
    let image = clean_log(3_000);
    let newest = segment_names(&image).pop().unwrap();
    let ends = commit_ends(&image, &newest);
    // Inside the first group's commit frame: committed bytes, whatever the group sizes.
    flip(&image, &newest, ends[0].0 as usize - 20);
    let full = plan_repair(&image).unwrap();
    for n in 0..200 {
        let copy = image.crash(CrashMode::Process);
        copy.crash_after_ops(n);
        if let Ok(plan) = plan_repair(&copy) {
            assert_eq!(plan, full, "storage gone after {n} operations");
        }
    }
}

/// With `retention_segments: 1`, a restart that starts a new segment re-marks the old end
/// after the new journal (and its preparer, which deletes what retention drops) started:
/// the re-mark must not fail because the preparer deleted the file first.
#[test]
fn a_restart_with_retention_one_that_starts_a_new_segment_opens() {
    use rewardpool::store::WalOptions;
    for round in 0..30 {
        let storage = FaultyStorage::new();
        let options = |segment| WalOptions {
            durability: Durability::Sync,
            segment_size_bytes: segment,
            retention_segments: 1,
            ..WalOptions::default()
        };
        let open = |segment| {
            open_engine_on(
                Arc::new(storage.clone()),
                &catalog(),
                &options(segment),
                engine_config(),
                Some(7),
            )
        };
        let engine = open(4 << 10).unwrap();
        let (_, err) = draw_n(&engine, 100);
        assert_eq!(err, None);
        engine.shutdown().unwrap();
        // Another segment size: no resume, a new segment, then the re-mark.
        let engine = open(8 << 10).unwrap_or_else(|e| panic!("round {round}: {e}"));
        engine.shutdown().unwrap();
    }
}

/// `OsStorage::resume_segment` (staged) takes a staging buffer that may hold an earlier
/// segment's bytes: none of them may reach the file. The same storage is reopened so the
/// buffers retired by rotations are reused by the resume.
#[test]
fn a_staged_resume_with_a_reused_buffer_writes_no_stale_bytes() {
    use rewardpool::storage::{OsStorage, SegmentWrites};
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> =
        Arc::new(OsStorage::new(dir.path()).unwrap().with_segment_writes(SegmentWrites::Staged));
    let mut last = 0;
    for round in 0..6 {
        let engine = open_engine_on(
            Arc::clone(&storage),
            &catalog(),
            &wal(Durability::Sync, 64 << 10),
            engine_config(),
            Some(7),
        )
        .unwrap();
        // Round 0 rotates several times (buffers back to the pool); later rounds resume.
        let (acked, err) = draw_n(&engine, if round == 0 { 6_000 } else { 300 });
        assert_eq!(err, None);
        engine.shutdown().unwrap();
        last = acked.last().unwrap().request_id.0;
        let report = verify(&*storage).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let _ = report;
    }
    let r = recover(&*storage, &catalog()).unwrap();
    assert_eq!(r.state.last_request_id.0, last);
}

/// A single-segment log (the common case now that restarts continue in the newest
/// segment) shut down cleanly, whose segment header is then damaged: the final snapshot
/// holds the whole state, so the repair adopts it instead of giving up.
#[test]
fn a_damaged_header_of_the_only_segment_after_a_clean_shutdown_loses_nothing() {
    let storage = FaultyStorage::new();
    for _ in 0..3 {
        let engine = open_with(&storage, Durability::Sync, 1 << 20).unwrap();
        let (_, err) = draw_n(&engine, 200);
        assert_eq!(err, None);
        engine.shutdown().unwrap();
    }
    // Byte 100: the header; byte 300: the snapshot marker.
    for offset in [100, 300] {
        let image = storage.crash(CrashMode::PowerLoss);
        let reference = recover(&image, &catalog()).unwrap().state;
        let names = segment_names(&image);
        assert_eq!(names.len(), 1, "{names:?}");
        flip(&image, &names[0], offset);
        assert!(recover(&image, &catalog()).is_err());
        let result = repair_until_ok(&image);
        assert!(
            result.is_ok(),
            "offset {offset}: repair gives up although snapshot.000001 holds everything: {result:?}"
        );
        assert_eq!(recover(&image, &catalog()).unwrap().state.items, reference.items);
        check_image(&image, reference.last_request_id.0, 1 << 20, "after the repair");
    }
}

/// A crash after a restart installed a new segment but before it re-marked the old end
/// leaves the old end saying "shutdown" with a successor. The next restart resumes in the
/// new segment and never re-marks it: deleting the newest segment then goes unnoticed
/// again (silent loss, request ids re-issued) after a crash.
#[test]
fn a_crash_before_the_re_mark_then_a_resume_leaves_the_end_unprovable() {
    use rewardpool::wal::header::{segment_name, CloseReason, SegmentHeader};
    let base = FaultyStorage::new();
    let engine = open_with(&base, Durability::Sync, 1 << 20).unwrap();
    let (_, err) = draw_n(&engine, 100);
    assert_eq!(err, None);
    engine.shutdown().unwrap();
    let header = |s: &FaultyStorage, n: u64| {
        SegmentHeader::decode(&s.file(&segment_name(n)).unwrap()).unwrap()
    };
    // Find the crash point between installing wal.000001 and re-marking wal.000000.
    let image = (0..200_u64)
        .find_map(|n| {
            let img = base.crash(CrashMode::Process);
            img.crash_after_ops(n);
            drop(open_with(&img, Durability::Sync, 2 << 20));
            let after = img.crash(CrashMode::PowerLoss);
            (after.file(&segment_name(1)).is_some()
                && header(&after, 0).close_reason != Some(CloseReason::Rotation))
            .then_some(after)
        })
        .expect("a crash point between the install and the re-mark");
    // The restart resumes in wal.000001, draws, and crashes.
    let engine = open_with(&image, Durability::Sync, 2 << 20).unwrap();
    let (acked, err) = draw_n(&engine, 500);
    assert_eq!(err, None);
    let crashed = image.crash(CrashMode::PowerLoss);
    drop(engine);
    assert_eq!(segment_names(&crashed), vec![segment_name(0), segment_name(1)]);
    let last = acked.last().unwrap().request_id.0;
    // The newest segment is deleted: this must be refused as damage.
    crashed.remove(&segment_name(1)).unwrap();
    match recover(&crashed, &catalog()) {
        Err(_) => {}
        Ok(r) => panic!(
            "wal.000001 deleted, recovery says ok with last id {} (acknowledged up to {last}); \
             wal.000000 still says {:?}",
            r.state.last_request_id.0,
            header(&crashed, 0).close_reason
        ),
    }
}
