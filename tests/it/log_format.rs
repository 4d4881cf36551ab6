//! The compact log (format version 3: a group's draws in one batch frame) reads the logs of
//! the previous release: the committed data directory `fixtures/log-v1` (segment header
//! version 2, one 32-byte frame per draw) recovers to the state that release printed, its
//! dump lists the same draws, and drawing on appends batch frames after the old frames,
//! after which it recovers again.

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
    assert_eq!(state(dir), expected);
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

    // Drawing on: batch frames after the old frames (the newest old segment is resumed
    // and rewritten as version 3), then new version-3 segments; an update in between.
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
    assert_eq!(version(dir, segments.last().unwrap()), 3, "{segments:?}");

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
