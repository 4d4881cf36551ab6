//! Provably fair draws (issue 14): `inspect::fairness` and `rewardpool wal audit |
//! commitments`. An audit over a log with rotations, pulls, keyed requests and their
//! replays, an added item and items that run out verifies every draw; one logged item, one
//! revealed seed or one commitment altered (the frame's CRC fixed, so `wal verify` still
//! passes and only the audit can notice) fails it, naming the place; no seed is in any file
//! before its run ends; a crash before the reveal leaves that run unrevealed (never verified)
//! and the restart commits to a new seed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rewardpool::inspect::{self, fairness, FairnessFailure, FairnessReport, RunStatus, SeedRun};
use rewardpool::pool::DrawSeed;
use rewardpool::storage::{CrashMode, FaultyStorage, OsStorage, Storage};
use rewardpool::store::{open_engine, open_engine_on, Durability, WalOptions};
use rewardpool::wal::header::SEGMENT_HEADER_SIZE;
use rewardpool::{Engine, ItemSpec, Quantity};
use serde_json::Value;

use crate::process::Run;
use crate::recovery::{draw_n, engine_config};

const BIN: &str = env!("CARGO_BIN_EXE_rewardpool");
/// The pool name the library's default `WalOptions` commit with.
const POOL: &str = "default";
/// The fixed seed source of every engine here (`DrawSeed::fixed(SEED, first request id)`).
const SEED: u64 = 21;
/// 8 KiB segments: a rotation every few hundred draws.
const SEGMENT: u64 = 8 << 10;

/// An item that runs out at once (`rare`), two that never do.
fn catalog() -> Vec<ItemSpec> {
    vec![
        ItemSpec::new("rare", 8, 40),
        ItemSpec::new("silver", -1, 30),
        ItemSpec::new("mud", -1, 70),
    ]
}

fn wal_options(dir: &Path, durability: Durability) -> WalOptions {
    WalOptions {
        dir: dir.to_owned(),
        durability,
        segment_size_bytes: SEGMENT,
        retention_segments: 1_000,
        ..WalOptions::default()
    }
}

/// Draws, pulls, keyed requests (each sent twice: the retry is an idempotent replay that
/// draws nothing), an added item that runs out (`bonus`): returns the draws made.
fn workload(engine: &Engine, rounds: std::ops::Range<u64>) -> u64 {
    let mut client = engine.client().unwrap();
    let mut draws = 0;
    for round in rounds {
        let (outcomes, error) = draw_n(engine, 200);
        assert_eq!(error, None);
        draws += outcomes.len() as u64;
        for _ in 0..10 {
            draws += client.pull(10).unwrap().count() as u64;
        }
        for k in 0..4_u128 {
            let key = u128::from(round) << 8 | (k + 1);
            let first = client.draw_keyed(key).unwrap();
            assert!(!first.replayed);
            let retry = client.draw_keyed(key).unwrap();
            assert!(retry.replayed);
            assert_eq!((retry.request_id, retry.item), (first.request_id, first.item));
            let pull_key = key | 1 << 100;
            let pulled: Vec<_> = client.pull_keyed(5, pull_key).unwrap().collect();
            assert!(pulled.iter().all(|o| !o.replayed));
            let again: Vec<_> = client.pull_keyed(5, pull_key).unwrap().collect();
            assert!(again.iter().all(|o| o.replayed));
            draws += 1 + pulled.len() as u64;
        }
        if round == 1 {
            engine.update("bonus", Some(Quantity::Finite(25)), Some(200)).unwrap();
        }
    }
    draws
}

/// A closed log in `dir` from [`workload`]: returns the draws made.
fn make_log(dir: &Path) -> u64 {
    let engine = open_engine(
        &catalog(),
        &wal_options(dir, Durability::Buffered),
        engine_config(),
        Some(SEED),
    )
    .unwrap();
    let draws = workload(&engine, 0..6);
    engine.shutdown().unwrap();
    draws
}

/// The log's state, read under the directory's shared lock. A child process another test
/// spawns in this process can hold a copy of the lock file's descriptor between its fork and
/// its exec (the flock stays taken until it closes it), so `Locked` right after a shutdown is
/// retried for a moment (seen once under a loaded CI run); any other error is one.
fn read_state(storage: &OsStorage) -> rewardpool::PoolState {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match rewardpool::store::read_state_on(storage, &[]) {
            Err(rewardpool::store::OpenError::Locked { .. })
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other.unwrap(),
        }
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn audit(storage: &dyn Storage) -> FairnessReport {
    fairness::audit(storage, POOL, None, None).unwrap()
}

/// `(offset, length, kind)` of every frame of a segment file.
fn frames(bytes: &[u8]) -> Vec<(usize, usize, u8)> {
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_SIZE;
    while at + 16 <= bytes.len() && bytes[at..at + 16].iter().any(|&b| b != 0) {
        let payload = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let len = 16 + payload.div_ceil(16) * 16;
        out.push((at, len, bytes[at + 8]));
        at += len;
    }
    out
}

/// Rewrites the CRC of the frame holding byte `pos`, so that the frame reads as intact.
fn reseal(bytes: &mut [u8], pos: usize) -> usize {
    let (at, len, _) = frames(bytes)
        .into_iter()
        .find(|(at, len, _)| (*at..at + len).contains(&pos))
        .expect("a frame holds the byte");
    let crc = crc32c::crc32c(&bytes[at + 4..at + len]);
    bytes[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    at
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn segment_file(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("wal.{segment:06}"))
}

/// A revealed run of a middle segment (not the first, not the newest).
fn middle_run(runs: &[SeedRun]) -> &SeedRun {
    let segments: Vec<u64> = runs.iter().map(|r| r.committed_at.segment).collect();
    let (lo, hi) = (segments[0], segments[segments.len() - 1]);
    assert!(hi >= lo + 2, "the workload fills three segments or more: {segments:?}");
    runs.iter()
        .find(|r| {
            r.committed_at.segment > lo
                && r.draws > 0
                && matches!(r.status, RunStatus::Revealed { .. })
        })
        .unwrap()
}

#[test]
fn audit_verifies_every_draw_over_rotations_pulls_keys_updates_and_exhaustion() {
    let dir = tempdir();
    let draws = make_log(dir.path());
    let storage = OsStorage::new(dir.path()).unwrap();
    let runs = fairness::commitments(&storage, POOL).unwrap();
    let report = audit(&storage);
    assert_eq!(report.failure, None, "{report:?}");
    assert_eq!(report.mismatches, 0);
    assert_eq!(report.draws_verified, draws, "every draw made is verified: {report:?}");
    assert_eq!(report.runs_verified, runs.len() as u64);
    assert_eq!((report.runs_pending, report.runs_unrevealed), (0, 0));
    assert_eq!((report.draws_pending, report.draws_unrevealed, report.draws_unseeded), (0, 0, 0));
    assert!(report.segments >= 3, "rotations: {report:?}");
    assert_eq!(report.segments_without_commitments, 0);
    // Every run's seed is revealed, hashes to its commitment, and gives the fixed seed.
    let mut counted = 0;
    for run in &runs {
        let seed = run.seed().expect("revealed");
        assert_eq!(run.revealed_commitment(POOL), Some(run.commitment));
        assert_eq!(seed, DrawSeed::fixed(SEED, run.first_request_id));
        assert_ne!(run.revealed_commitment("another pool"), Some(run.commitment));
        counted += run.draws;
    }
    assert_eq!(counted, draws);
    // The state the audit replayed ran items out: `rare` (8 units) and `bonus` (25).
    let state = read_state(&storage);
    for id in ["rare", "bonus"] {
        let item = state.items.iter().find(|i| i.id == id).unwrap();
        assert_eq!(item.quantity, Quantity::Finite(0), "{id} ran out");
    }
    // A range: the middle segments only, each run once.
    let first = runs[0].committed_at.segment;
    let ranged = fairness::audit(&storage, POOL, Some(first + 1), Some(first + 1)).unwrap();
    assert_eq!(ranged.segments, 1);
    let in_range: u64 =
        runs.iter().filter(|r| r.committed_at.segment == first + 1).map(|r| r.draws).sum();
    assert_eq!(ranged.draws_verified, in_range);
    assert_eq!(ranged.failure, None);
    // Another pool's name: no seed matches its commitment.
    let other = fairness::audit(&storage, "another pool", None, None).unwrap();
    assert!(matches!(other.failure, Some(FairnessFailure::Seed { .. })), "{other:?}");
    assert_eq!(other.draws_verified, 0);
}

#[test]
fn a_flipped_item_with_a_fixed_crc_fails_the_audit_at_its_frame() {
    let dir = tempdir();
    make_log(dir.path());
    let storage = OsStorage::new(dir.path()).unwrap();
    let runs = fairness::commitments(&storage, POOL).unwrap();
    let run = middle_run(&runs);
    let path = segment_file(dir.path(), run.committed_at.segment);
    let mut bytes = fs::read(&path).unwrap();
    // The first batch frame without keys: its first item becomes another unlimited one
    // (never an exhausted one, so the log still replays).
    let (at, _, _) = frames(&bytes)
        .into_iter()
        .find(|(at, _, kind)| *kind == 5 && bytes[at + 16 + 18] == 0 && bytes[at + 16 + 16] == 1)
        .expect("a batch frame of one-byte items");
    let first_request_id = u64::from_le_bytes(bytes[at + 16..at + 24].try_into().unwrap());
    let pos = at + 16 + 24;
    let (was, now) = match bytes[pos] {
        1 => ("silver", 2),
        0 => ("rare", 1),
        2 => ("mud", 1),
        3 => ("bonus", 1),
        other => panic!("item {other} in the first draw of a batch"),
    };
    bytes[pos] = now;
    assert_eq!(reseal(&mut bytes, pos), at);
    fs::write(&path, &bytes).unwrap();

    inspect::verify(&storage).expect("the CRC is fixed: only the audit can notice");
    let report = audit(&storage);
    let failure = report.failure.clone().expect("the audit fails");
    let FairnessFailure::Draw { at: place, request_id, logged, recomputed } = &failure else {
        panic!("{failure:?}")
    };
    assert_eq!(place.segment, run.committed_at.segment);
    assert!(place.file.ends_with(&format!("wal.{:06}", place.segment)), "{place:?}");
    assert_eq!(place.offset, at as u64);
    assert_eq!(*request_id, first_request_id);
    assert_eq!(logged.as_deref(), Some(["rare", "silver", "mud"][usize::from(now)]));
    assert_eq!(recomputed.as_deref(), Some(was));
    let text = failure.to_string();
    assert!(text.contains(&format!("at offset {at}")), "{text}");
    assert!(text.contains(&format!("request id {first_request_id}")), "{text}");
    assert!(report.mismatches >= 1);
    assert!(report.runs_verified < runs.len() as u64, "the run is not verified");
}

#[test]
fn a_flipped_revealed_seed_fails_the_audit_at_the_reveal() {
    let dir = tempdir();
    make_log(dir.path());
    let storage = OsStorage::new(dir.path()).unwrap();
    let runs = fairness::commitments(&storage, POOL).unwrap();
    let run = middle_run(&runs);
    let RunStatus::Revealed { seed, at: reveal, .. } = &run.status else { unreachable!() };
    let path = segment_file(dir.path(), reveal.segment);
    let mut bytes = fs::read(&path).unwrap();
    let pos = find(&bytes, seed).expect("the reveal holds the seed");
    bytes[pos + 5] ^= 0x10;
    assert_eq!(reseal(&mut bytes, pos) as u64, reveal.offset);
    fs::write(&path, &bytes).unwrap();

    inspect::verify(&storage).expect("the CRC is fixed");
    let report = audit(&storage);
    match report.failure {
        Some(FairnessFailure::Seed { at, first_request_id, expected, got }) => {
            assert_eq!(at, *reveal);
            assert_eq!(first_request_id, run.first_request_id);
            assert_eq!(expected, run.commitment);
            assert_ne!(got, expected);
        }
        other => panic!("{other:?}"),
    }
    // Its draws are not verified; every other run's are.
    assert_eq!(report.runs_verified, runs.len() as u64 - 1);
    let others: u64 =
        runs.iter().filter(|r| r.committed_at != run.committed_at).map(|r| r.draws).sum();
    assert_eq!(report.draws_verified, others);
}

#[test]
fn a_flipped_commitment_fails_the_audit_naming_both_frames() {
    let dir = tempdir();
    make_log(dir.path());
    let storage = OsStorage::new(dir.path()).unwrap();
    let runs = fairness::commitments(&storage, POOL).unwrap();
    let run = middle_run(&runs);
    let path = segment_file(dir.path(), run.committed_at.segment);
    let mut bytes = fs::read(&path).unwrap();
    // The first copy is the commitment frame's (the reveal, later, repeats it).
    let pos = find(&bytes, &run.commitment).unwrap();
    bytes[pos] ^= 0x01;
    assert_eq!(reseal(&mut bytes, pos) as u64, run.committed_at.offset);
    fs::write(&path, &bytes).unwrap();

    inspect::verify(&storage).expect("the CRC is fixed");
    let report = audit(&storage);
    let RunStatus::Revealed { at: reveal, .. } = &run.status else { unreachable!() };
    match &report.failure {
        Some(FairnessFailure::Reveal { at, committed_at, first_request_id, repeated, .. }) => {
            assert_eq!(at, reveal);
            assert_eq!(committed_at, &run.committed_at);
            assert_eq!(*first_request_id, run.first_request_id);
            assert_eq!(repeated, &run.commitment);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(report.runs_verified, runs.len() as u64 - 1);
}

/// Every file of the data directory, read whole.
fn every_file(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn no_seed_is_in_any_file_before_its_run_ends() {
    let dir = tempdir();
    let engine = open_engine(
        &catalog(),
        &wal_options(dir.path(), Durability::Buffered),
        engine_config(),
        Some(SEED),
    )
    .unwrap();
    let storage = OsStorage::new(dir.path()).unwrap();
    let mut hidden = Vec::new();
    for round in 0..4 {
        workload(&engine, round..round + 1);
        // The engine is running: the open segment and every snapshot are read whole.
        let runs = fairness::commitments(&storage, POOL).unwrap();
        let pending = runs.last().unwrap();
        assert_eq!(pending.status, RunStatus::Pending, "{runs:?}");
        let seed = DrawSeed::fixed(SEED, pending.first_request_id);
        assert_eq!(seed.commitment(pending.commitment_segment, POOL), pending.commitment);
        let files = every_file(dir.path());
        assert!(files.iter().any(|(n, _)| n.starts_with("snapshot.")), "{files:?}");
        for (name, bytes) in &files {
            assert_eq!(find(bytes, &seed.to_bytes()), None, "the pending seed is in {name}");
            assert_eq!(find(bytes, &seed.key().to_le_bytes()), None, "its key is in {name}");
        }
        // Every earlier run's seed is revealed in the log.
        for run in &runs[..runs.len() - 1] {
            let RunStatus::Revealed { seed, at, .. } = &run.status else { panic!("{run:?}") };
            let bytes = fs::read(&at.file).unwrap();
            assert!(find(&bytes, seed).is_some());
        }
        hidden.push(seed);
    }
    engine.shutdown().unwrap();
    let files = every_file(dir.path());
    for seed in hidden {
        assert!(
            files
                .iter()
                .any(|(name, bytes)| name.starts_with("wal.")
                    && find(bytes, &seed.to_bytes()).is_some()),
            "revealed after the close"
        );
    }
    let report = audit(&storage);
    assert_eq!((report.failure, report.runs_pending), (None, 0));
}

#[test]
fn a_crash_before_the_reveal_leaves_its_run_unrevealed_and_the_restart_commits_anew() {
    let storage = FaultyStorage::new();
    let wal =
        WalOptions { segment_size_bytes: SEGMENT, ..wal_options(Path::new("."), Durability::Sync) };
    let engine =
        open_engine_on(Arc::new(storage.clone()), &catalog(), &wal, engine_config(), Some(SEED))
            .unwrap();
    let (acked, error) = draw_n(&engine, 700);
    assert_eq!(error, None);
    // A power loss keeps what was synced: every acknowledged draw, not the seed.
    let image = storage.crash(CrashMode::PowerLoss);
    drop(engine);
    let before = fairness::commitments(&image, POOL).unwrap();
    let crashed = before.last().unwrap().clone();
    assert_eq!(crashed.status, RunStatus::Pending, "{before:?}");
    assert!(crashed.draws > 0, "{crashed:?}");
    let pending = audit(&image);
    assert_eq!((pending.runs_pending, pending.draws_pending), (1, crashed.draws));
    assert_eq!(pending.failure, None);

    let engine =
        open_engine_on(Arc::new(image.clone()), &catalog(), &wal, engine_config(), Some(SEED))
            .unwrap();
    let (more, error) = draw_n(&engine, 300);
    assert_eq!(error, None);
    engine.shutdown().unwrap();

    let after = fairness::commitments(&image, POOL).unwrap();
    let i = after.iter().position(|r| r.committed_at == crashed.committed_at).unwrap();
    assert_eq!(after[i].status, RunStatus::Unrevealed, "{after:?}");
    assert_eq!(after[i].draws, crashed.draws);
    let next = &after[i + 1];
    assert_ne!(next.commitment, crashed.commitment, "a fresh seed after the restart");
    assert!(next.first_request_id > crashed.last_request_id.unwrap());
    assert!(matches!(next.status, RunStatus::Revealed { .. }));

    let report = audit(&image);
    assert_eq!(report.failure, None, "{report:?}");
    assert_eq!((report.runs_unrevealed, report.draws_unrevealed), (1, crashed.draws));
    assert_eq!(report.runs_pending, 0);
    assert_eq!(report.runs_verified, after.len() as u64 - 1, "never counted as verified");
    let logged: u64 = after.iter().map(|r| r.draws).sum();
    assert_eq!(report.draws_verified + report.draws_unrevealed, logged);
    assert!(logged >= (acked.len() + more.len()) as u64);
}

// ---------------------------------------------------------------------------------------
// The command line

/// A temporary directory holding `config.yaml` and the data directory `data`.
struct Setup {
    dir: tempfile::TempDir,
    config: String,
}

impl Setup {
    fn new(segment_kb: u64) -> Setup {
        let dir = tempdir();
        let yaml = format!(
            "working_dir: \"{}\"\npool:\n  catalog:\n    - {{ item_id: \"rare\", quantity: 8, \
             probability: 40 }}\n    - {{ item_id: \"silver\", quantity: -1, probability: 30 }}\n    \
             - {{ item_id: \"mud\", quantity: -1, probability: 70 }}\nwal:\n  max_file_size_kb: \
             {segment_kb}\n  durability: buffered\n",
            dir.path().join("data").display()
        );
        let path = dir.path().join("config.yaml");
        fs::write(&path, yaml).unwrap();
        Setup { config: path.to_str().unwrap().to_owned(), dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .args(["--config", &self.config])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        let child = self.command(args).spawn().unwrap();
        crate::process::finish(child, args, Duration::from_secs(60))
    }

    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, Some(0), "{args:?}: {run:?}");
        run
    }

    fn commitments(&self) -> Vec<Value> {
        let run = self.ok(&["wal", "commitments", "--json"]);
        run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn audit(&self) -> (Run, Value) {
        let run = self.run(&["wal", "audit", "--json"]);
        let v = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{run:?}: {e}"));
        (run, v)
    }
}

const AUDIT_KEYS: [&str; 11] = [
    "segments",
    "segments_without_commitments",
    "runs_verified",
    "runs_pending",
    "runs_unrevealed",
    "draws_verified",
    "draws_pending",
    "draws_unrevealed",
    "draws_unseeded",
    "mismatches",
    "failure",
];

const RUN_KEYS: [&str; 10] = [
    "segment",
    "offset",
    "commitment_segment",
    "first_request_id",
    "last_request_id",
    "draws",
    "generator",
    "commitment",
    "status",
    "seed",
];

#[test]
fn cli_audit_and_commitments_over_pulls_keys_and_an_update() {
    // 16 KiB segments (the smallest allowed): a rotation or more; retention (4 segments)
    // may drop the oldest, so the counts are compared with what `wal dump` finds.
    let setup = Setup::new(16);
    let key = "0123456789abcdef0123456789abcdef";
    setup.ok(&["draw", "--count", "3000"]);
    setup.ok(&["draw", "--count", "200", "--pull", "10"]);
    setup.ok(&["draw", "--key", key, "--pull", "5"]);
    let retry = setup.ok(&["draw", "--key", key, "--pull", "5", "--json"]);
    assert!(retry.stdout.contains("\"replayed\":true"), "{retry:?}");
    setup.ok(&["update", "--item", "bonus", "--add", "--quantity", "30", "--weight", "90"]);
    setup.ok(&["draw", "--count", "4000"]);
    let dump = setup.ok(&["wal", "dump", "--json"]);
    let draws = dump.stdout.lines().filter(|l| l.contains("\"type\":\"draw\"")).count() as u64;
    assert!(draws > 4000, "{draws}");

    let (run, v) = setup.audit();
    assert_eq!(run.code, Some(0), "{run:?}");
    let obj = v.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>().len(), AUDIT_KEYS.len(), "{v}");
    let mut at = 0;
    for k in AUDIT_KEYS {
        at += run.stdout[at..].find(&format!("\"{k}\":")).unwrap_or_else(|| panic!("{k}: {v}"));
    }
    assert_eq!(v["draws_verified"], draws, "{v}");
    assert_eq!(v["failure"], Value::Null);
    assert_eq!(v["mismatches"], 0);
    assert!(v["segments"].as_u64().unwrap() >= 2, "{v}");

    let runs = setup.commitments();
    for r in &runs {
        let o = r.as_object().unwrap();
        assert_eq!(o.keys().len(), RUN_KEYS.len(), "{r}");
        assert!(RUN_KEYS.iter().all(|k| o.contains_key(*k)), "{r}");
        assert_eq!(r["status"], "revealed");
        assert_eq!(r["seed"].as_str().unwrap().len(), 64);
        assert_eq!(r["commitment"].as_str().unwrap().len(), 64);
        assert_eq!(r["generator"], 1);
    }
    assert_eq!(v["runs_verified"], runs.len());
    assert_eq!(runs.iter().map(|r| r["draws"].as_u64().unwrap()).sum::<u64>(), draws);

    let text = setup.ok(&["wal", "audit"]);
    assert!(text.stdout.contains(&format!("{draws} draws verified")), "{text:?}");
    let table = setup.ok(&["wal", "commitments"]);
    assert_eq!(table.stdout.lines().count(), runs.len() + 1, "{table:?}");
    let bad = setup.run(&["wal", "audit", "--from", "3", "--to", "2"]);
    assert_eq!(bad.code, Some(2), "{bad:?}");

    // One item flipped (CRC fixed): exit 1, the first mismatch named on stderr.
    let data = setup.dir.path().join("data");
    let segment = runs[runs.len() / 2]["segment"].as_u64().unwrap();
    let path = segment_file(&data, segment);
    let mut bytes = fs::read(&path).unwrap();
    let (frame, _, _) = frames(&bytes)
        .into_iter()
        .find(|(at, _, kind)| *kind == 5 && bytes[at + 16 + 18] == 0 && bytes[at + 16 + 16] == 1)
        .unwrap();
    let pos = frame + 16 + 24;
    bytes[pos] = if bytes[pos] == 1 { 2 } else { 1 };
    reseal(&mut bytes, pos);
    fs::write(&path, &bytes).unwrap();
    setup.ok(&["wal", "verify"]);
    let (run, v) = setup.audit();
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(v["failure"]["kind"], "draw", "{v}");
    assert_eq!(v["failure"]["offset"], frame, "{v}");
    assert!(v["failure"]["file"].as_str().unwrap().ends_with(&format!("wal.{segment:06}")));
    assert!(run.stderr.contains(&format!("at offset {frame}")), "{run:?}");
    assert!(run.stderr.contains("request id"), "{run:?}");
}

#[test]
fn cli_a_kill_leaves_a_pending_run_that_the_restart_marks_unrevealed() {
    // 1 MiB segments: a rotation rarely falls within the kill.
    let setup = Setup::new(1024);
    setup.ok(&["draw", "--count", "500"]);
    let mut child =
        setup.command(&["draw", "--count", "100000000"]).stdout(Stdio::null()).spawn().unwrap();
    thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();

    let killed = setup.commitments();
    let last = killed.last().unwrap().clone();
    let (run, v) = setup.audit();
    assert_eq!(run.code, Some(0), "pending is not a failure: {run:?}");
    if last["status"] != "pending" {
        // The kill fell between a reveal and the next commitment: nothing was pending.
        eprintln!("the kill fell between runs: {last}");
        return;
    }
    assert_eq!(v["runs_pending"], 1, "{v}");
    assert_eq!(v["draws_pending"], last["draws"], "{v}");
    let text = setup.ok(&["wal", "commitments"]);
    assert!(text.stdout.lines().last().unwrap().contains("pending"), "{text:?}");

    setup.ok(&["draw", "--count", "100"]);
    let after = setup.commitments();
    let same = after
        .iter()
        .position(|r| r["offset"] == last["offset"] && r["segment"] == last["segment"])
        .unwrap();
    assert_eq!(after[same]["status"], "unrevealed", "{after:?}");
    assert_eq!(after[same]["seed"], Value::Null);
    let next = &after[same + 1];
    assert_ne!(next["commitment"], last["commitment"]);
    assert_eq!(next["status"], "revealed");
    let (run, v) = setup.audit();
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        (v["runs_unrevealed"].as_u64(), v["runs_pending"].as_u64()),
        (Some(1), Some(0)),
        "{v}"
    );
    assert_eq!(v["draws_unrevealed"], last["draws"]);
    assert_eq!(v["runs_verified"], after.len() - 1);
    let text = setup.ok(&["wal", "commitments"]);
    assert!(text.stdout.contains("unrevealed"), "{text:?}");
}

/// A log of the release before seed frames (`fixtures/log-v1`, segment version 2): its draws
/// are counted as unseeded, never verified; drawing on it commits to a seed and those draws
/// are verified.
#[test]
fn segments_before_format_4_have_no_commitments_and_their_draws_are_unseeded() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/log-v1/data");
    let dir = tempdir();
    for entry in fs::read_dir(&fixture).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let storage = OsStorage::new(dir.path()).unwrap();
    assert!(fairness::commitments(&storage, POOL).unwrap().is_empty());
    let old = audit(&storage);
    assert_eq!(old.failure, None);
    assert_eq!((old.segments, old.segments_without_commitments), (3, 3), "{old:?}");
    assert_eq!((old.draws_verified, old.draws_unseeded), (0, 4_700), "{old:?}");
    assert_eq!(old.runs_verified + old.runs_pending + old.runs_unrevealed, 0);

    let catalog = vec![
        ItemSpec::new("diamond", 10, 1),
        ItemSpec::new("gold", 300, 20),
        ItemSpec::new("mud", -1, 79),
    ];
    let wal = WalOptions {
        segment_size_bytes: 64 << 10,
        ..wal_options(dir.path(), Durability::Buffered)
    };
    let engine = open_engine(&catalog, &wal, engine_config(), Some(SEED)).unwrap();
    let (acked, error) = draw_n(&engine, 500);
    assert_eq!(error, None);
    engine.shutdown().unwrap();
    let new = audit(&storage);
    assert_eq!(new.failure, None, "{new:?}");
    assert_eq!(new.draws_unseeded, 4_700, "{new:?}");
    assert_eq!(new.draws_verified, acked.len() as u64, "{new:?}");
    assert_eq!(new.runs_verified, 1);
}
