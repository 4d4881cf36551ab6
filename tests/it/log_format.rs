//! The compact log (format version 3: a group's draws in one batch frame) reads the logs of
//! the previous release: the committed data directory `fixtures/log-v1` (segment header
//! version 2, one 32-byte frame per draw) recovers to the state that release printed, its
//! dump lists the same draws, and drawing on appends batch frames after the old frames,
//! after which it recovers again. Keyed requests written through `Journal::append_key` come
//! back from the log (dump, and the walker's `Record::Key`) before their draws; an update
//! inside a group splits it into batches of their own width; a batch in a version-2
//! segment is damage.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::process::Run;

const BIN: &str = env!("CARGO_BIN_EXE_rewardpool");
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures/log-v1");

/// A copy of the fixture (its `config.yaml` names `data` relative to the directory).
fn copy_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    fs::copy(Path::new(FIXTURE).join("config.yaml"), dir.path().join("config.yaml")).unwrap();
    fs::create_dir(dir.path().join("data")).unwrap();
    for entry in fs::read_dir(Path::new(FIXTURE).join("data")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.path().join("data").join(entry.file_name())).unwrap();
    }
    dir
}

fn run(dir: &Path, args: &[&str]) -> Run {
    // Right after this test's own journal closed, a child process another test spawns in
    // this process may still hold a copy of the lock file's descriptor (between its fork and
    // its exec, the flock stays taken): "in use" then is retried for a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let run = loop {
        let child = Command::new(BIN)
            .args(args)
            .args(["--config", "config.yaml"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let run = crate::process::finish(child, args, Duration::from_secs(60));
        let locked = run.code == Some(2) && run.stderr.contains("is in use by another process");
        if !locked || std::time::Instant::now() >= deadline {
            break run;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(run.code, Some(0), "{args:?}: {run:?}");
    assert!(!run.stderr.contains("panicked"), "{args:?}: {run:?}");
    run
}

fn json_lines(run: &Run) -> Vec<Value> {
    run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `(request_id, item)` of a `draw --json` or `wal dump --json` draw line.
fn draw_of(v: &Value) -> (u64, Option<String>) {
    (v["request_id"].as_u64().unwrap(), v["item"].as_str().map(str::to_owned))
}

/// The draws `wal dump --json` lists, in log order; no line is a key (no keyed requests).
fn dumped_draws(dir: &Path) -> Vec<(u64, Option<String>)> {
    let dump = json_lines(&run(dir, &["wal", "dump", "--json"]));
    assert!(dump.iter().all(|v| v["type"] != "key"), "no keyed requests were made");
    dump.iter().filter(|v| v["type"] == "draw").map(draw_of).collect()
}

/// The format version in a segment's header.
fn version(dir: &Path, segment: &str) -> u32 {
    let bytes = fs::read(dir.join("data").join(segment)).unwrap();
    u32::from_le_bytes(bytes[8..12].try_into().unwrap())
}

fn state(dir: &Path) -> Value {
    serde_json::from_str(run(dir, &["state", "--json"]).stdout.trim()).unwrap()
}

#[test]
fn the_previous_release_s_log_recovers_and_continues_in_the_compact_format() {
    let dir = copy_fixture();
    let dir = dir.path();
    for old in ["wal.000000", "wal.000001", "wal.000002"] {
        assert_eq!(version(dir, old), 2, "the fixture is the previous release's: {old}");
    }

    // Read as it is: the state and every draw the previous release recorded.
    let expected: Value =
        serde_json::from_str(&fs::read_to_string(Path::new(FIXTURE).join("state.json")).unwrap())
            .unwrap();
    // The previous release's `state --json` had no effective probabilities: they are
    // compared on their own (only mud is left), the rest as recorded.
    let mut now = state(dir);
    let mut odds = Vec::new();
    for item in now["items"].as_array_mut().unwrap() {
        let probability = item.as_object_mut().unwrap().remove("probability");
        odds.push(probability.and_then(|p| p.as_f64()).unwrap());
    }
    assert_eq!(odds, [0.0, 0.0, 1.0, 0.0], "{now}");
    assert_eq!(now, expected);
    let verify = run(dir, &["wal", "verify"]);
    assert!(verify.stdout.starts_with("ok: 3 segments"), "{verify:?}");
    let recorded: Vec<(u64, Option<String>)> =
        fs::read_to_string(Path::new(FIXTURE).join("draws.txt"))
            .unwrap()
            .lines()
            .map(|l| {
                let (id, item) = l.split_once(' ').unwrap();
                (id.parse().unwrap(), (item != "null").then(|| item.to_owned()))
            })
            .collect();
    assert_eq!(recorded.len(), 4700);
    assert!(dumped_draws(dir) == recorded, "the dump lists draws.txt");

    // Drawing on: seed and batch frames after the old frames (the newest old segment is
    // resumed and rewritten as version 4), then new version-4 segments; an update in between.
    let mut acked: Vec<(u64, Option<String>)> =
        json_lines(&run(dir, &["draw", "--count", "3000", "--json"])).iter().map(draw_of).collect();
    run(dir, &["update", "--item", "gold", "--quantity", "40"]);
    acked.extend(
        json_lines(&run(dir, &["draw", "--count", "60", "--pull", "10", "--json"]))
            .iter()
            .map(draw_of),
    );
    let ids: Vec<u64> = acked.iter().map(|(id, _)| *id).collect();
    assert!(ids.iter().copied().eq(4701..=8300), "request ids go on from the old log");

    let mut segments: Vec<String> = fs::read_dir(dir.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("wal."))
        .collect();
    segments.sort();
    assert_eq!(version(dir, "wal.000000"), 2, "untouched old segments keep their version");
    assert_eq!(version(dir, segments.last().unwrap()), 4, "{segments:?}");

    // Recovered again (twice: the second start reads what the first wrote).
    let after = state(dir);
    assert_eq!(after["last_request_id"], 8300);
    let gold = &after["items"][1];
    assert_eq!(gold["item_id"], "gold");
    let gold_drawn = acked[3000..].iter().filter(|(_, i)| i.as_deref() == Some("gold")).count();
    assert_eq!(gold["quantity"].as_u64(), Some(40 - gold_drawn as u64), "{after}");
    assert_eq!(state(dir), after);
    let verify = run(dir, &["wal", "verify"]);
    assert!(verify.stdout.starts_with("ok:"), "{verify:?}");
    let mut all = recorded;
    all.extend(acked);
    assert!(dumped_draws(dir) == all, "old and new draws, in order");
}

/// Writes, through the WAL journal as the core loop does, two groups with keyed requests:
/// draw, keyed pull of 3 (key A), draw, keyed draw (key B) | keyed pull of 2 (key C).
/// Returns the data directory's parent (with `config.yaml`).
fn keyed_log() -> tempfile::TempDir {
    use rewardpool::journal::Space;
    use rewardpool::storage::OsStorage;
    use rewardpool::store::{open_journal, Durability, WalOptions};
    use rewardpool::{ItemSpec, Journal as _, RequestId};

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    fs::write(
        dir.path().join("config.yaml"),
        "working_dir: \"data\"\npool:\n  catalog:\n    - { item_id: \"gold\", quantity: 500, \
         probability: 20 }\n    - { item_id: \"mud\", quantity: -1, probability: 80 }\nwal:\n  \
         durability: buffered\n",
    )
    .unwrap();
    fs::create_dir(dir.path().join("data")).unwrap();
    let storage = std::sync::Arc::new(OsStorage::new(&dir.path().join("data")).unwrap());
    let items = [ItemSpec::new("gold", 500, 20), ItemSpec::new("mud", -1, 80)];
    let wal = WalOptions { durability: Durability::Buffered, ..WalOptions::default() };
    let (mut pool, mut journal) = open_journal(storage, &items, &wal, Some(9)).unwrap();
    journal.reserve(Space::Draws(6), &mut pool).unwrap();
    let plan: [(Option<u128>, u32); 4] = [(None, 1), (Some(KEY_A), 3), (None, 1), (Some(KEY_B), 1)];
    for (key, count) in plan {
        if let Some(key) = key {
            journal.append_key(key, count).unwrap();
        }
        for _ in 0..count {
            journal.append_draw(pool.draw()).unwrap();
        }
    }
    journal.commit(RequestId(6)).unwrap();
    journal.reserve(Space::Draws(2), &mut pool).unwrap();
    journal.append_key(KEY_C, 2).unwrap();
    journal.append_draw(pool.draw()).unwrap();
    journal.append_draw(pool.draw()).unwrap();
    journal.commit(RequestId(8)).unwrap();
    journal.close(&pool).unwrap();
    dir
}

const KEY_A: u128 = 0x0123_4567_89AB_CDEF_0011_2233_4455_6677;
const KEY_B: u128 = 1;
const KEY_C: u128 = u128::MAX;

/// Keys written through `Journal::append_key` come back from the log: `wal dump --json`
/// prints each right before its request's draws, with the batch frame's offset, and the
/// walker hands recovery `Record::Key` with the first request id, count and time.
#[test]
fn keyed_requests_come_back_from_the_log_before_their_draws() {
    let dir = keyed_log();
    let dir = dir.path();
    let verify = run(dir, &["wal", "verify"]);
    assert!(verify.stdout.starts_with("ok:"), "{verify:?}");
    assert_eq!(state(dir)["last_request_id"], 8);
    let dump = json_lines(&run(dir, &["wal", "dump", "--json"]));
    let body: Vec<&Value> = dump.iter().filter(|v| v["type"] != "snapshot").collect();
    let kinds: Vec<&str> = body.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "seed", "commit", "draw", "key", "draw", "draw", "draw", "draw", "key", "draw",
            "commit", "key", "draw", "draw", "commit", "seed", "commit"
        ],
        "the seed's commitment before the draws, its reveal after them"
    );
    let keys: Vec<(String, u64, u64)> = body
        .iter()
        .filter(|v| v["type"] == "key")
        .map(|v| {
            let obj = v.as_object().unwrap();
            assert_eq!(obj.len(), 6, "exactly segment, offset, type, key, request_id, count: {v}");
            (
                v["key"].as_str().unwrap().to_owned(),
                v["request_id"].as_u64().unwrap(),
                v["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let hex = |k: u128| format!("{k:032x}");
    assert_eq!(keys, [(hex(KEY_A), 2, 3), (hex(KEY_B), 6, 1), (hex(KEY_C), 7, 2)]);
    assert_eq!(keys[0].0, "0123456789abcdef0011223344556677");
    // A group's keys and draws share its batch frame's offset.
    assert!(body[2..10].iter().all(|v| v["offset"] == body[2]["offset"]), "{body:?}");
    assert!(body[11..14].iter().all(|v| v["offset"] == body[11]["offset"]), "{body:?}");
    // The plain dump names the key too.
    let plain = run(dir, &["wal", "dump"]).stdout;
    assert!(plain.contains(&format!("key       {} -> requests 2 x3", hex(KEY_A))), "{plain}");

    // What replay and the keys work see: the key with its first id, count and time.
    let storage = rewardpool::storage::OsStorage::new(&dir.join("data")).unwrap();
    let mut seen = Vec::new();
    rewardpool::recovery::scan_segment(&storage, "wal.000000", 0, true, |info| {
        if let rewardpool::wal::frame::Record::Key { key, first_request_id, count, unix_s } =
            info.record
        {
            seen.push((key, first_request_id, count, unix_s));
        }
        Ok(())
    })
    .unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    for (_, _, _, unix_s) in &seen {
        assert!(now.as_secs().abs_diff(u64::from(*unix_s)) < 600, "{seen:?}");
    }
    let seen: Vec<_> = seen.iter().map(|&(k, f, c, _)| (k, f, c)).collect();
    assert_eq!(seen, [(KEY_A, 2, 3), (KEY_B, 6, 1), (KEY_C, 7, 2)]);
}

/// `append_key` refuses a zero key, and a commit refuses a key whose draws did not all
/// follow (a caller's bug, never a silently wrong log).
#[test]
fn append_key_refuses_what_the_log_cannot_hold() {
    use rewardpool::journal::Space;
    use rewardpool::storage::OsStorage;
    use rewardpool::store::{open_journal, Durability, WalOptions};
    use rewardpool::{ItemSpec, Journal as _, RequestId};

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let storage = std::sync::Arc::new(OsStorage::new(dir.path()).unwrap());
    let items = [ItemSpec::new("mud", -1, 1)];
    let wal = WalOptions { durability: Durability::Buffered, ..WalOptions::default() };
    let (mut pool, mut journal) = open_journal(storage, &items, &wal, Some(1)).unwrap();
    journal.reserve(Space::Draws(4), &mut pool).unwrap();
    let e = journal.append_key(0, 1).unwrap_err();
    assert!(e.to_string().contains("non-zero"), "{e}");
    let e = journal.append_key(7, 0).unwrap_err();
    assert!(e.to_string().contains("1 to"), "{e}");
    journal.append_key(7, 2).unwrap();
    journal.append_draw(pool.draw()).unwrap();
    let e = journal.commit(RequestId(1)).unwrap_err();
    assert!(e.to_string().contains("announced 2 draws, 1 followed"), "{e}");
}

/// An update inside a group ends the pending batch first, so a batch never spans an update:
/// 255 items fit one byte per draw (0xFF is the empty draw), the item the update adds
/// (index 255) needs two, and each batch has the width of its own draws.
#[test]
fn an_update_inside_a_group_starts_a_new_batch_of_its_own_width() {
    use rewardpool::journal::Space;
    use rewardpool::storage::{OsStorage, Storage as _};
    use rewardpool::store::{open_journal, read_state_on, Durability, WalOptions};
    use rewardpool::wal::frame::{self, Record};
    use rewardpool::{ItemSpec, Journal as _, Quantity, RequestId};

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let storage = std::sync::Arc::new(OsStorage::new(dir.path()).unwrap());
    // Every catalog item is out of stock: draws are empty until the update adds one.
    let items: Vec<ItemSpec> = (0..255).map(|i| ItemSpec::new(&format!("i{i}"), 0, 1)).collect();
    let wal = WalOptions { durability: Durability::Buffered, ..WalOptions::default() };
    let (mut pool, mut journal) = open_journal(storage.clone(), &items, &wal, Some(2)).unwrap();
    journal.reserve(Space::Draws(8), &mut pool).unwrap();
    for _ in 0..3 {
        journal.append_draw(pool.draw()).unwrap();
    }
    let (index, state) = pool.update("big", Some(Quantity::Unlimited), Some(1)).unwrap();
    assert_eq!(index.0, 255);
    journal.append_update(index, &state).unwrap();
    for _ in 0..3 {
        journal.append_draw(pool.draw()).unwrap();
    }
    journal.commit(RequestId(6)).unwrap();
    journal.close(&pool).unwrap();
    drop(journal);

    // The raw frames, batches not expanded.
    let file = storage.read("wal.000000").unwrap();
    let mut bytes = rkyv::util::AlignedVec::<16>::new();
    bytes.extend_from_slice(&file);
    let mut at = 256;
    let mut frames = Vec::new();
    while let Some((record, len)) = frame::decode(&bytes[at..]).unwrap() {
        frames.push(record);
        at += len;
    }
    let shapes: Vec<String> = frames
        .iter()
        .map(|r| match r {
            Record::Snapshot { .. } => "snapshot".to_owned(),
            Record::Batch(b) => {
                format!("batch {} x{} w{}", b.first_request_id, b.items.len(), b.width)
            }
            Record::Update { index, .. } => format!("update {index}"),
            Record::Commit { last_request_id, .. } => format!("commit {last_request_id}"),
            Record::Seed { first_request_id, revealed, .. } => {
                format!("seed {first_request_id} revealed {}", revealed.is_some())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        shapes,
        [
            "snapshot",
            "seed 1 revealed false",
            "commit 0",
            "batch 1 x3 w1",
            "update 255",
            "batch 4 x3 w2",
            "commit 6",
            "seed 1 revealed true",
            "commit 6"
        ]
    );
    let Record::Batch(first) = &frames[3] else { unreachable!() };
    assert_eq!(first.items, [None, None, None]);
    let Record::Batch(second) = &frames[5] else { unreachable!() };
    assert_eq!(second.items, [Some(255); 3]);
    // And recovery replays both.
    let recovered = read_state_on(&*storage, &items).unwrap();
    assert_eq!(recovered.last_request_id.0, 6);
    assert_eq!(recovered.items.len(), 256);
}

/// A frame newer than its segment's header (here a seed frame, then a batch frame, in a
/// segment whose header says version 2, written before either existed) is damage, named
/// with the file, the frame's offset and the reason.
#[test]
fn a_batch_frame_in_a_version_2_segment_is_refused() {
    let dir = keyed_log();
    let data = dir.path().join("data");
    let path = data.join("wal.000000");
    let mut bytes = fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&2_u32.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..252]);
    bytes[252..256].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, bytes).unwrap();
    let storage = rewardpool::storage::OsStorage::new(&data).unwrap();
    let items =
        [rewardpool::ItemSpec::new("gold", 500, 20), rewardpool::ItemSpec::new("mud", -1, 80)];
    match rewardpool::recovery::recover(&storage, &items) {
        Err(rewardpool::recovery::RecoveryError::Damaged { file, offset, reason }) => {
            assert!(file.ends_with("wal.000000"), "{file}");
            assert_eq!(offset, 352, "the first frame after the snapshot marker: {reason}");
            assert!(
                reason.contains(
                    "seed frame in a segment of format version 2 (such frames need version 4)"
                ),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}
