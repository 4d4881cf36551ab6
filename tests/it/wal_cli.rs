//! `rewardpool wal dump | verify | repair | stats` through the real binary: the JSON shapes
//! field by field, dump against what `draw --json` acknowledged, the torn tail after a
//! SIGKILL, four kinds of damage (refused by `draw`/`state`, reported by `verify`, cut by
//! `repair`), the fairness audit over 10^6 draws, and a reader closing the pipe early.
//!
//! Each run has a deadline ([`DEADLINE`]): a hang fails the test instead of stalling CI.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rewardpool");
/// Longest any single run may take.
const DEADLINE: Duration = Duration::from_secs(60);

pub(crate) use crate::process::Run;

/// A temporary directory holding `config.yaml` and the data directory `data`.
struct Setup {
    dir: tempfile::TempDir,
    config: String,
}

impl Setup {
    /// `catalog`: `(item_id, quantity, weight)`.
    fn new(catalog: &[(&str, i64, u32)], segment_kb: u64, durability: &str) -> Setup {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut yaml =
            format!("working_dir: \"{}\"\npool:\n  catalog:\n", dir.path().join("data").display());
        for (id, q, w) in catalog {
            yaml.push_str(&format!(
                "    - {{ item_id: \"{id}\", quantity: {q}, probability: {w} }}\n"
            ));
        }
        yaml.push_str(&format!(
            "wal:\n  max_file_size_kb: {segment_kb}\n  durability: {durability}\n"
        ));
        let path = dir.path().join("config.yaml");
        fs::write(&path, yaml).unwrap();
        let config = path.to_str().unwrap().to_owned();
        Setup { dir, config }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs `rewardpool args --config <config>` and waits for it.
    fn run(&self, args: &[&str]) -> Run {
        let child = self.command(args).stdout(Stdio::piped()).spawn().expect("spawn");
        finish(child, args)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .args(["--config", &self.config])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Segment files in the data directory, oldest first.
    fn segments(&self) -> Vec<String> {
        segment_names(&self.data())
    }
}

/// Segment files in `dir`, oldest first.
pub(crate) fn segment_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("wal."))
        .collect();
    names.sort();
    names
}

fn finish(child: Child, args: &[&str]) -> Run {
    crate::process::finish(child, args, DEADLINE)
}

fn json_lines(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn ok(run: &Run, what: &str) {
    assert_eq!(run.code, Some(0), "{what}: {run:?}");
    assert!(!run.stderr.contains("panicked"), "{what}: {run:?}");
}

/// Checks one `wal dump --json` line's exact shape and returns its type.
fn check_shape(v: &Value) -> &str {
    let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
    assert!(obj["segment"].as_u64().is_some(), "{v}");
    assert!(obj["offset"].as_u64().is_some(), "{v}");
    let torn = match obj.get("torn") {
        None => 0,
        Some(t) => {
            assert_eq!(t, &Value::Bool(true), "torn is only ever true: {v}");
            1
        }
    };
    let kind = obj["type"].as_str().unwrap_or_else(|| panic!("{v}"));
    let keys: &[&str] = match kind {
        "draw" => {
            assert!(obj["request_id"].as_u64().is_some(), "{v}");
            assert!(obj["item"].is_string() || obj["item"].is_null(), "{v}");
            &["segment", "offset", "type", "request_id", "item"]
        }
        "update" => {
            assert!(obj["item"].is_string(), "{v}");
            assert!(obj["quantity"].as_i64().is_some(), "{v}");
            assert!(obj["weight"].as_u64().is_some(), "{v}");
            &["segment", "offset", "type", "item", "quantity", "weight"]
        }
        "snapshot" => {
            let file = obj["file"].as_str().unwrap_or_else(|| panic!("{v}"));
            assert!(file.starts_with("snapshot."), "{v}");
            assert!(obj["last_request_id"].as_u64().is_some(), "{v}");
            &["segment", "offset", "type", "file", "last_request_id"]
        }
        "commit" => {
            assert!(obj["request_id"].as_u64().is_some(), "{v}");
            &["segment", "offset", "type", "request_id"]
        }
        "key" => {
            let key = obj["key"].as_str().unwrap_or_else(|| panic!("{v}"));
            assert!(key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()), "{v}");
            assert!(obj["request_id"].as_u64().is_some(), "{v}");
            assert!(obj["count"].as_u64().is_some_and(|c| c >= 1), "{v}");
            &["segment", "offset", "type", "key", "request_id", "count"]
        }
        "seed" => {
            let hex32 = |k: &str| {
                obj[k]
                    .as_str()
                    .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            };
            assert!(obj["request_id"].as_u64().is_some(), "{v}");
            assert!(obj["commitment_segment"].as_u64().is_some(), "{v}");
            assert!(hex32("commitment"), "{v}");
            assert!(obj["seed"].is_null() || hex32("seed"), "{v}");
            &["segment", "offset", "type", "request_id", "commitment_segment", "commitment", "seed"]
        }
        other => panic!("unknown type {other:?}: {v}"),
    };
    assert_eq!(obj.len(), keys.len() + torn, "exactly these keys {keys:?}: {v}");
    for k in keys {
        assert!(obj.contains_key(*k), "{k}: {v}");
    }
    kind
}

/// Checks a raw `wal dump --json` line: its shape, and its keys in the documented order.
fn check_line(line: &str) -> Value {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let keys: &[&str] = match check_shape(&v) {
        "draw" => &["segment", "offset", "type", "request_id", "item"],
        "update" => &["segment", "offset", "type", "item", "quantity", "weight"],
        "snapshot" => &["segment", "offset", "type", "file", "last_request_id"],
        _ => &["segment", "offset", "type", "request_id"],
    };
    let mut at = 0;
    for k in keys.iter().chain(v.get("torn").map(|_| &"torn")) {
        let pos = line[at..]
            .find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("{k} out of order: {line}"));
        at += pos + 1;
    }
    v
}

/// `draw --count n --json`: `(request_id, item)` per acknowledged draw.
fn draw(setup: &Setup, n: u64) -> Vec<(u64, Option<String>)> {
    let run = setup.run(&["draw", "--count", &n.to_string(), "--json"]);
    ok(&run, "draw");
    let lines = json_lines(&run);
    assert_eq!(lines.len() as u64, n, "{run:?}");
    lines
        .iter()
        .map(|v| (v["request_id"].as_u64().unwrap(), v["item"].as_str().map(str::to_owned)))
        .collect()
}

#[test]
fn dump_json_field_by_field_matches_the_draws() {
    // 16 KiB segments hold at most about 8000 draws (batch frames of 200-draw groups, each
    // group reserving its worst case first; fewer when groups are small, as on a loaded
    // machine): 20000 draws and an update make three segments or more. Retention keeps the
    // newest four: the dump holds every draw after the oldest kept segment's snapshot.
    let setup = Setup::new(&[("gold", 150, 1), ("silver", 200, 3)], 16, "sync");
    let mut acked = draw(&setup, 6_000);
    let run =
        setup.run(&["update", "--item", "bonus", "--add", "--quantity", "100", "--weight", "5"]);
    ok(&run, "update");
    // 50 units left plus the bonus's 100: the rest are empty draws.
    acked.extend(draw(&setup, 14_000));
    assert!(acked.iter().any(|(_, i)| i.is_none()), "some empty draws");
    assert!(acked.iter().any(|(_, i)| i.as_deref() == Some("bonus")), "the added item");

    let run = setup.run(&["wal", "dump", "--json"]);
    ok(&run, "wal dump --json");
    assert!(run.stderr.is_empty(), "{run:?}");
    let lines: Vec<Value> = run.stdout.lines().map(check_line).collect();
    let mut segments: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for v in &lines {
        segments.entry(v["segment"].as_u64().unwrap()).or_default().push(v);
    }
    assert!(segments.len() >= 3, "several segments: {:?}", setup.segments());
    assert_eq!(segments.len(), setup.segments().len());
    let mut draws = Vec::new();
    let mut updates = 0;
    let mut last_commit = 0;
    let oldest = segments.values().next().unwrap()[0]["last_request_id"].as_u64().unwrap();
    let mut last_draw = oldest;
    for frames in segments.values() {
        let first = frames[0];
        assert_eq!(first["type"], "snapshot", "{first}");
        assert_eq!(first["offset"].as_u64(), Some(256), "{first}");
        assert_eq!(first["last_request_id"].as_u64(), Some(last_draw), "{first}");
        let mut offset = 0;
        for v in frames {
            let at = v["offset"].as_u64().unwrap();
            // A batch frame's draws share its offset; frames follow one another.
            assert!(at >= offset, "offsets never decrease: {v}");
            assert_eq!(at % 16, 0, "{v}");
            offset = at;
            match v["type"].as_str().unwrap() {
                "draw" => {
                    last_draw = v["request_id"].as_u64().unwrap();
                    draws.push((last_draw, v["item"].as_str().map(str::to_owned)));
                }
                "commit" => {
                    let id = v["request_id"].as_u64().unwrap();
                    assert!(id >= last_commit, "commit ids increase: {v}");
                    assert_eq!(id, last_draw, "a commit names its group's last request: {v}");
                    last_commit = id;
                }
                "update" => {
                    updates += 1;
                    assert_eq!(v["item"], "bonus", "{v}");
                    assert_eq!(v["quantity"].as_i64(), Some(100), "{v}");
                    assert_eq!(v["weight"].as_u64(), Some(5), "{v}");
                }
                "snapshot" => assert_eq!(at, 256, "one marker per segment: {v}"),
                "seed" => {}
                _ => unreachable!(),
            }
        }
    }
    // The update came after 6000 draws: in the dump unless retention dropped its segment.
    // A segment that starts at 6000 may begin just before the update or just after it (a
    // rotation between the update and the next draw), so there either count is right.
    match oldest.cmp(&6_000) {
        std::cmp::Ordering::Less => assert_eq!(updates, 1, "oldest kept snapshot at {oldest}"),
        std::cmp::Ordering::Equal => assert!(updates <= 1, "{updates} updates"),
        std::cmp::Ordering::Greater => assert_eq!(updates, 0, "oldest kept snapshot at {oldest}"),
    }
    assert_eq!(last_commit, 20_000);
    assert!(
        draws == acked[oldest as usize..],
        "dump's draws are exactly the acknowledged draws after the oldest snapshot, in order"
    );

    // Plain output: one line per frame too.
    let plain = setup.run(&["wal", "dump"]);
    ok(&plain, "wal dump");
    assert_eq!(plain.stdout.lines().count(), lines.len(), "{plain:?}");
    // The update's line names the item (draws of it may be in the kept segments or not).
    assert!(updates == 0 || plain.stdout.contains("bonus"), "{plain:?}");
    // Nothing torn after clean shutdowns: --all adds nothing.
    let all = setup.run(&["wal", "dump", "--json", "--all"]);
    ok(&all, "wal dump --json --all");
    assert_eq!(all.stdout, run.stdout);
}

/// SIGKILL a `draw` at a moment drawn from a printed seed (`SEED=S` replays it): `wal dump
/// --all` puts torn lines only after the newest segment's last commit; then, with that
/// commit zeroed, its group becomes torn too. A kill that leaves no group to lose (killed
/// right after a rotation, or between closing a segment and installing the next) is
/// retried with another moment, at most `KILLS` times, and the test fails if none served.
#[test]
fn dump_all_after_a_kill_puts_torn_lines_after_the_last_commit() {
    const KILLS: u64 = 6;
    let (_, mut next) = crate::crash::campaign("dump_all_after_a_kill", 1);
    let mut skipped = Vec::new();
    for kill in 0..KILLS {
        let delay_ms = 150 + next() % 150;
        match killed_dump_round(delay_ms) {
            Ok(()) => return,
            Err(why) => {
                eprintln!("kill {kill} after {delay_ms} ms: {why}; killing again");
                skipped.push(format!("{delay_ms} ms: {why}"));
            }
        }
    }
    panic!("no kill left a group whose commit could be lost: {skipped:?}");
}

/// One kill of [`dump_all_after_a_kill_puts_torn_lines_after_the_last_commit`]; `Err` says
/// why the lost-commit half could not run (the torn-line checks before it did).
fn killed_dump_round(delay_ms: u64) -> Result<(), String> {
    let setup = Setup::new(
        &[("gold", 20_000, 20), ("silver", 200_000, 30), ("mud", -1, 50)],
        // 1 MiB segments: a rotation or two in 200 ms, never past the retention window (a
        // kill while retention deletes files is `kill_during_retention_leaves_a_log_that_verifies`).
        1024,
        "buffered",
    );
    let mut child = setup
        .command(&["draw", "--count", "100000000", "--json"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(delay_ms));
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();

    let all = setup.run(&["wal", "dump", "--json", "--all"]);
    ok(&all, "wal dump --all");
    let committed = setup.run(&["wal", "dump", "--json"]);
    ok(&committed, "wal dump");
    let all_lines: Vec<Value> = all.stdout.lines().map(check_line).collect();
    let newest = all_lines.iter().map(|v| v["segment"].as_u64().unwrap()).max();
    let mut by_segment: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for v in &all_lines {
        by_segment.entry(v["segment"].as_u64().unwrap()).or_default().push(v);
    }
    let mut torn_count = 0;
    for (segment, frames) in &by_segment {
        let last_commit = frames
            .iter()
            .rposition(|v| v["type"] == "commit" && v.get("torn").is_none())
            .unwrap_or(0);
        let last_commit_offset = frames[last_commit]["offset"].as_u64().unwrap();
        for (i, v) in frames.iter().enumerate() {
            if v.get("torn").is_some() {
                torn_count += 1;
                assert_eq!(Some(*segment), newest, "only the newest segment is torn: {v}");
                assert!(i > last_commit, "torn after the last commit: {v}");
                assert!(v["offset"].as_u64().unwrap() > last_commit_offset, "{v}");
            } else {
                assert!(i <= last_commit, "nothing committed after a torn frame: {v}");
            }
        }
    }
    // Without --all: exactly the frames that are not torn, in the same order.
    let kept: Vec<&Value> = all_lines.iter().filter(|v| v.get("torn").is_none()).collect();
    let plain: Vec<Value> = json_lines(&committed);
    assert_eq!(kept.len(), plain.len());
    for (a, b) in kept.iter().zip(&plain) {
        assert_eq!(*a, b);
    }
    eprintln!("{} frames, {torn_count} torn", all_lines.len());
    // A torn tail is not damage.
    let verify = setup.run(&["wal", "verify"]);
    ok(&verify, "wal verify");
    assert!(verify.stdout.contains(&format!("{torn_count} torn")), "{verify:?}");

    // The kill rarely lands between a group's draws and its commit: make that moment by
    // zeroing the newest segment's last commit frame (32 bytes), as if the crash came just
    // before it was written. Its group becomes torn tail.
    let newest = newest.ok_or("killed before anything was logged")?;
    let frames = &by_segment[&newest];
    let last = frames
        .iter()
        .rposition(|v| v["type"] == "commit" && v.get("torn").is_none())
        .ok_or("no commit in the newest segment")?;
    let previous = frames[..last].iter().rposition(|v| v["type"] != "draw").unwrap();
    let group = last - previous - 1;
    if group == 0 {
        return Err("the newest segment's last commit commits no draw".into());
    }
    let name = format!("wal.{newest:06}");
    let path = setup.data().join(&name);
    let mut bytes = fs::read(&path).unwrap();
    if bytes[12..16] != 1_u32.to_le_bytes() {
        // Killed between closing the segment and installing the next: nothing is torn, and
        // a closed segment that lost a commit is damage, not a torn tail.
        return Err("the newest segment is closed".into());
    }
    let at = usize::try_from(frames[last]["offset"].as_u64().unwrap()).unwrap();
    bytes[at..at + 32].fill(0);
    fs::write(&path, bytes).unwrap();

    let all = setup.run(&["wal", "dump", "--json", "--all"]);
    ok(&all, "wal dump --all after a lost commit");
    let lines: Vec<Value> = all.stdout.lines().map(check_line).collect();
    let torn: Vec<&Value> = lines.iter().filter(|v| v.get("torn").is_some()).collect();
    // Frames torn before sit past the zeroed hole (end of data): they may no longer show.
    assert!(torn.len() >= group && torn.len() <= group + torn_count, "{all:?}");
    assert!(torn.iter().take(group).all(|v| v["type"] == "draw"), "{all:?}");
    assert_eq!(torn[0], &{
        let mut v = frames[previous + 1].clone();
        v["torn"] = Value::Bool(true);
        v
    });
    let committed = setup.run(&["wal", "dump", "--json"]);
    ok(&committed, "wal dump after a lost commit");
    assert_eq!(committed.stdout.lines().count(), lines.len() - torn.len());
    let verify = setup.run(&["wal", "verify"]);
    ok(&verify, "wal verify after a lost commit");
    assert!(verify.stdout.contains(&format!("{} torn", torn.len())), "{verify:?}");
    Ok(())
}

/// What a test does to the log.
enum Damage {
    /// Flip a bit of the oldest segment's header.
    HeaderBit,
    /// Flip a bit inside a committed frame of the oldest (closed) segment.
    FrameBit,
    /// Truncate the second segment to 100 bytes.
    TruncatedHeader,
    /// Overwrite the second segment with zeros, same length.
    Zeroed,
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0x10;
    fs::write(path, bytes).unwrap();
}

fn damaged_log_is_refused_reported_and_repaired(damage: Damage) {
    let setup = Setup::new(&[("gold", 5_000, 20), ("mud", -1, 80)], 16, "sync");
    // About 8000 draws per segment: three segments, the second run continues the newest.
    draw(&setup, 20_000);
    draw(&setup, 50);
    let segments = setup.segments();
    assert!(segments.len() >= 3, "{segments:?}");
    let (file, at) = match damage {
        Damage::HeaderBit => {
            flip(&setup.data().join(&segments[0]), 20);
            (&segments[0], None)
        }
        Damage::FrameBit => {
            flip(&setup.data().join(&segments[0]), 1000);
            (&segments[0], Some(1000))
        }
        Damage::TruncatedHeader => {
            let f = fs::OpenOptions::new().write(true).open(setup.data().join(&segments[1]));
            f.unwrap().set_len(100).unwrap();
            (&segments[1], None)
        }
        Damage::Zeroed => {
            let path = setup.data().join(&segments[1]);
            let len = fs::metadata(&path).unwrap().len();
            fs::write(&path, vec![0_u8; usize::try_from(len).unwrap()]).unwrap();
            (&segments[1], None)
        }
    };

    for args in [&["draw"][..], &["state", "--json"]] {
        let run = setup.run(args);
        assert_eq!(run.code, Some(2), "{args:?} refuses a damaged log: {run:?}");
        assert!(run.stderr.contains(file.as_str()), "{args:?} names {file}: {run:?}");
        assert!(!run.stderr.contains("panicked"), "{run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
    }

    let verify = setup.run(&["wal", "verify"]);
    assert_eq!(verify.code, Some(1), "{verify:?}");
    assert!(verify.stderr.contains(file.as_str()), "names {file}: {verify:?}");
    let offset: u64 = verify
        .stderr
        .split("at offset ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("names an offset: {verify:?}"));
    if let Some(at) = at {
        // The damaged frame starts at or before the flipped byte, within one frame (a batch
        // frame of a 200-draw group is 256 bytes).
        assert!(offset <= at && offset + 256 > at, "offset {offset}: {verify:?}");
    }
    assert!(!verify.stderr.contains("panicked"), "{verify:?}");

    // dump prints what precedes the damage, then refuses.
    let dump = setup.run(&["wal", "dump", "--json"]);
    assert_eq!(dump.code, Some(2), "{dump:?}");
    assert!(dump.stderr.contains(file.as_str()), "{dump:?}");
    for line in dump.stdout.lines() {
        check_line(line);
    }

    let repair = setup.run(&["wal", "repair"]);
    ok(&repair, "wal repair");
    assert!(
        repair.stdout.contains("will drop") || repair.stdout.contains("will move aside"),
        "says what it drops: {repair:?}"
    );
    assert!(repair.stdout.contains(file.as_str()), "names the damaged file: {repair:?}");
    assert!(repair.stdout.contains(&format!("dropped.{file}")), "where the copy is: {repair:?}");
    assert!(setup.data().join(format!("dropped.{file}")).exists());

    let verify = setup.run(&["wal", "verify"]);
    ok(&verify, "wal verify after repair");
    assert!(verify.stdout.starts_with("ok:"), "{verify:?}");
    let again = setup.run(&["wal", "repair"]);
    ok(&again, "a second repair");
    assert!(again.stdout.contains("nothing to repair"), "{again:?}");

    let state = setup.run(&["state", "--json"]);
    ok(&state, "state after repair");
    let v: Value = serde_json::from_str(state.stdout.trim()).unwrap();
    let last = v["last_request_id"].as_u64().unwrap();
    assert!(last <= 20_050, "{v}");
    // And the pool draws again, continuing the request ids.
    let next = draw(&setup, 3);
    assert!(next[0].0 > last, "{next:?} after {last}");
}

#[test]
fn damage_header_bit_flip() {
    damaged_log_is_refused_reported_and_repaired(Damage::HeaderBit);
}

#[test]
fn damage_frame_bit_flip_in_a_closed_segment() {
    damaged_log_is_refused_reported_and_repaired(Damage::FrameBit);
}

#[test]
fn damage_truncated_header() {
    damaged_log_is_refused_reported_and_repaired(Damage::TruncatedHeader);
}

#[test]
fn damage_zeroed_segment() {
    damaged_log_is_refused_reported_and_repaired(Damage::Zeroed);
}

/// 10^6 draws take about 5 s in the debug binary, the audit about 2 s (2-core VM).
const STATS_DRAWS: u64 = 1_000_000;
/// The finite item: weight 100 of 200, so it runs out about half-way.
const RARE: u64 = 250_000;

#[test]
fn stats_json_on_a_million_draws_follows_the_weights() {
    let setup = Setup::new(
        &[
            ("a", -1, 10),
            ("b", -1, 20),
            ("c", -1, 30),
            ("d", -1, 40),
            ("rare", i64::try_from(RARE).unwrap(), 100),
        ],
        // 16 MiB segments: a few of them, all within the retention window.
        16 * 1024,
        "buffered",
    );
    let child = setup
        .command(&["draw", "--count", &STATS_DRAWS.to_string(), "--json"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let run = finish(child, &["draw"]);
    ok(&run, "draw");

    let run = setup.run(&["wal", "stats", "--json"]);
    ok(&run, "wal stats --json");
    assert_eq!(run.stdout.lines().count(), 1, "{run:?}");
    let line = run.stdout.trim();
    assert!(line.starts_with("{\"draws\":"), "{line}");
    let v: Value = serde_json::from_str(line).unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["chi_square", "degrees_of_freedom", "draws", "empty_draws", "items", "p_value"],
        "{v}"
    );
    assert_eq!(obj["draws"].as_u64(), Some(STATS_DRAWS));
    assert_eq!(obj["empty_draws"].as_u64(), Some(0));
    assert_eq!(obj["degrees_of_freedom"].as_u64(), Some(4));
    assert!(obj["chi_square"].as_f64().unwrap() >= 0.0);
    let p = obj["p_value"].as_f64().unwrap();
    assert!(p >= 0.001, "p = {p}: {v}");
    let items = obj["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    let mut total = 0;
    for (item, (id, weight)) in
        items.iter().zip([("a", 10), ("b", 20), ("c", 30), ("d", 40), ("rare", 100)])
    {
        let it = item.as_object().unwrap();
        assert_eq!(it.len(), 5, "{item}");
        assert_eq!(it["item_id"], id);
        assert_eq!(it["weight"].as_u64(), Some(weight));
        let drawn = it["drawn"].as_u64().unwrap();
        total += drawn;
        let observed = it["observed_share"].as_f64().unwrap();
        let expected = it["expected_share"].as_f64().unwrap();
        assert!((observed - drawn as f64 / STATS_DRAWS as f64).abs() < 1e-12, "{item}");
        assert!(expected > 0.0, "{item}");
        assert!((observed - expected).abs() / expected < 0.03, "{id}: {item}");
    }
    assert_eq!(total, STATS_DRAWS);
    assert_eq!(items[4]["drawn"].as_u64(), Some(RARE), "the finite item ran out exactly");
    // Given availability: the rare item had half the weight while it lasted (about half
    // the draws), so about a quarter of all draws; an audit that ignored exhaustion would
    // expect 100/200 = 50 %.
    let rare_expected = items[4]["expected_share"].as_f64().unwrap();
    assert!((rare_expected - 0.25).abs() < 0.01, "{rare_expected}");

    // Plain output: a table and the verdict.
    let plain = setup.run(&["wal", "stats"]);
    ok(&plain, "wal stats");
    assert!(plain.stdout.contains("verdict: draws follow the weights"), "{plain:?}");
    for id in ["a", "b", "c", "d", "rare"] {
        assert!(plain.stdout.lines().any(|l| l.starts_with(id)), "{id}: {plain:?}");
    }
}

#[test]
fn closed_pipe_ends_dump_quietly() {
    let setup = Setup::new(&[("mud", -1, 1)], 1024, "buffered");
    let child = setup
        .command(&["draw", "--count", "50000", "--json"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    ok(&finish(child, &["draw"]), "draw");
    let mut child =
        setup.command(&["wal", "dump", "--json"]).stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert!(first.starts_with("{\"segment\":"), "{first}");
    // The reader is dropped here: the pipe closes like `| head -1`, with about 3 MB unread.
    let run = finish(child, &["wal", "dump", "--json"]);
    ok(&run, "wal dump | head -1");
    assert!(run.stderr.is_empty(), "quiet on a closed pipe: {run:?}");
}

#[test]
fn missing_data_directory_is_nothing_to_do() {
    let setup = Setup::new(&[("mud", -1, 1)], 64, "sync");
    let dump = setup.run(&["wal", "dump", "--json"]);
    ok(&dump, "dump");
    assert!(dump.stdout.is_empty(), "{dump:?}");
    for args in [&["wal", "verify"][..], &["wal", "repair"], &["wal", "stats"]] {
        let run = setup.run(args);
        ok(&run, &format!("{args:?}"));
    }
    let stats = setup.run(&["wal", "stats", "--json"]);
    ok(&stats, "stats --json");
    let v: Value = serde_json::from_str(stats.stdout.trim()).unwrap();
    assert_eq!(v["draws"].as_u64(), Some(0));
    assert!(!setup.data().exists(), "read-only commands create no directory");
}

/// The oldest retained segment without its snapshot (a kill between retention's removals,
/// or an operator's mistake): `state` and `draw` still work (recovery loads only the newest
/// segment's snapshot), `wal verify` reports the damage, and `wal repair` moves the old
/// segment aside (history only: nothing of the state is lost). A clean shutdown applies
/// retention before it exits, so exactly four segments remain.
#[test]
fn repair_fixes_a_segment_whose_snapshot_retention_deleted() {
    let setup = Setup::new(&[("gold", 5_000, 20), ("mud", -1, 80)], 16, "sync");
    draw(&setup, 45_000); // six segments: retention keeps the newest four
    let segments = setup.segments();
    assert_eq!(segments.len(), 4, "{segments:?}");
    let oldest = segments[0].replace("wal.", "snapshot.");
    fs::remove_file(setup.data().join(&oldest)).unwrap();

    ok(&setup.run(&["state", "--json"]), "state");
    let verify = setup.run(&["wal", "verify"]);
    assert_eq!(verify.code, Some(1), "{verify:?}");
    assert!(verify.stderr.contains(&oldest), "{verify:?}");
    let repair = setup.run(&["wal", "repair"]);
    ok(&repair, "wal repair");
    let verify = setup.run(&["wal", "verify"]);
    ok(&verify, "wal verify after repair");
    ok(&setup.run(&["wal", "stats"]), "wal stats after repair");
}

/// Retention through real kills: SIGKILL `draw` while it rotates 64 KiB segments past
/// the retention window, then `wal verify`. Each trial's kill moment is in its message.
#[test]
fn kill_during_retention_leaves_a_log_that_verifies() {
    for trial in 0..40 {
        let setup = Setup::new(&[("gold", 20_000, 20), ("mud", -1, 80)], 64, "buffered");
        let mut child =
            setup.command(&["draw", "--count", "100000000"]).stdout(Stdio::null()).spawn().unwrap();
        let delay_ms = 150 + 10 * (trial % 10);
        thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        let _ = child.wait();
        let verify = setup.run(&["wal", "verify"]);
        assert_eq!(verify.code, Some(0), "trial {trial}, killed after {delay_ms} ms: {verify:?}");
    }
}

/// Issue 8's first hole, through the command line on real files: the newest segment
/// deleted is damage for `state`, `wal verify` and `draw` (never "ok"), and after
/// `wal repair` no request id that was acknowledged is issued again.
#[test]
fn a_deleted_newest_segment_is_refused_and_repair_never_reissues_ids() {
    let setup = Setup::new(&[("gold", 5_000, 20), ("mud", -1, 80)], 16, "sync");
    let acked = draw(&setup, 20_000);
    let max_acked = acked.iter().map(|(id, _)| *id).max().unwrap();
    let segments = setup.segments();
    assert!(segments.len() >= 3, "{segments:?}");
    let before = setup.run(&["state", "--json"]);
    ok(&before, "state");
    let items =
        |run: &Run| serde_json::from_str::<Value>(run.stdout.trim()).unwrap()["items"].clone();
    let newest = segments.last().unwrap();
    fs::remove_file(setup.data().join(newest)).unwrap();
    let previous = &segments[segments.len() - 2];

    let state = setup.run(&["state", "--json"]);
    assert_eq!(state.code, Some(2), "{state:?}");
    assert!(state.stderr.contains(previous) && state.stderr.contains("successor"), "{state:?}");
    let verify = setup.run(&["wal", "verify"]);
    assert_eq!(verify.code, Some(1), "{verify:?}");
    let refused = setup.run(&["draw", "--count", "1"]);
    assert_eq!(refused.code, Some(2), "{refused:?}");

    let repair = setup.run(&["wal", "repair"]);
    ok(&repair, "wal repair");
    // `draw` shut down cleanly: its final snapshot holds the whole state, and the repair
    // starts the log again from it, so not even the deleted segment's draws are lost.
    assert!(repair.stdout.contains("will start the log again from snapshot."), "{repair:?}");
    assert!(repair.stdout.contains("request ids continue from"), "{repair:?}");
    ok(&setup.run(&["wal", "verify"]), "verify after repair");
    let after = setup.run(&["state", "--json"]);
    ok(&after, "state after repair");
    assert_eq!(items(&after), items(&before), "nothing lost");
    let next = draw(&setup, 3);
    assert!(next.iter().all(|(id, _)| *id > max_acked), "re-issued: {next:?} <= {max_acked}");
}

/// A read-only bind mount of a directory, unmounted when dropped.
struct ReadOnlyMount {
    point: PathBuf,
}

impl ReadOnlyMount {
    /// Mounts `source` read-only at `point`, or says why it cannot (not root, no mount).
    fn new(source: &Path, point: &Path) -> Result<ReadOnlyMount, String> {
        // SAFETY: geteuid has no arguments and cannot fail.
        #[allow(unsafe_code)]
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root: a bind mount needs root".to_owned());
        }
        let mount = |args: &[&std::ffi::OsStr]| -> Result<(), String> {
            let out =
                Command::new("mount").args(args).output().map_err(|e| format!("mount: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("mount {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
            }
        };
        fs::create_dir_all(point).unwrap();
        mount(&["--bind".as_ref(), source.as_os_str(), point.as_os_str()])?;
        let guard = ReadOnlyMount { point: point.to_owned() };
        mount(&["-o".as_ref(), "remount,bind,ro".as_ref(), point.as_os_str()])?;
        Ok(guard)
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.point).status();
    }
}

fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut names: Vec<(String, u64)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), e.metadata().unwrap().len())
        })
        .collect();
    names.sort();
    names
}

/// A backup on a read-only mount can be inspected: `state`, `wal verify`, `wal dump` and
/// `wal stats` succeed and create nothing, with the lock file present (a shared lock on a
/// read-only descriptor) and without it (no lock where no writer can run).
#[test]
fn read_only_inspection_on_a_read_only_bind_mount() {
    let setup = Setup::new(&[("gold", 5_000, 20), ("mud", -1, 80)], 16, "sync");
    draw(&setup, 600);
    let point = setup.dir.path().join("ro");
    let mount = match ReadOnlyMount::new(&setup.data(), &point) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED read_only_inspection_on_a_read_only_bind_mount: {why}");
            return;
        }
    };
    assert!(fs::write(point.join("probe"), b"x").is_err(), "the mount is read-only");
    let writable = setup.run(&["state", "--json"]);
    ok(&writable, "state on the writable directory");
    for with_lock in [true, false] {
        if !with_lock {
            // Through the writable source: the mount shows the same directory.
            fs::remove_file(setup.data().join("lock")).unwrap();
        }
        let before = listing(&point);
        assert_eq!(before.iter().any(|(n, _)| n == "lock"), with_lock);
        let dir = point.to_str().unwrap();
        for args in [
            &["state", "--json"][..],
            &["wal", "verify"],
            &["wal", "dump", "--json"],
            &["wal", "stats", "--json"],
        ] {
            let mut full = args.to_vec();
            full.extend(["--data-dir", dir]);
            let run = setup.run(&full);
            ok(&run, &format!("{args:?} on a read-only mount (lock file present: {with_lock})"));
            assert!(!run.stdout.is_empty(), "{args:?}: {run:?}");
            if args[0] == "state" {
                assert_eq!(run.stdout, writable.stdout, "the same state read-only");
            }
        }
        assert_eq!(listing(&point), before, "nothing created or changed (lock: {with_lock})");
    }
    drop(mount);
}

/// An explicit `--data-dir` that does not exist is an error for the read-only commands (a
/// typo never reads as "nothing to verify"); `wal repair` refuses it too.
#[test]
fn missing_explicit_data_dir_is_an_error() {
    let setup = Setup::new(&[("mud", -1, 1)], 64, "sync");
    for args in [
        &["state"][..],
        &["wal", "verify"],
        &["wal", "dump"],
        &["wal", "stats"],
        &["wal", "repair"],
    ] {
        let mut full = args.to_vec();
        full.extend(["--data-dir", "typo"]);
        let run = setup.run(&full);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(run.stderr.contains("no data directory typo"), "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
    }
    assert!(!setup.dir.path().join("typo").exists(), "nothing created");
}

/// A dozen small command-line calls on the default 64 MiB segments stay in one segment file
/// (a restart continues in the newest segment), and `wal stats` audits every draw they made.
#[test]
fn a_dozen_small_calls_stay_in_one_segment_and_stats_sees_them_all() {
    let setup = Setup::new(&[("gold", 5_000, 20), ("mud", -1, 80)], 65_536, "sync");
    let mut drawn = 0;
    for call in 0..12 {
        if call % 6 == 5 {
            let run = setup.run(&["update", "--item", "gold", "--weight", "21"]);
            ok(&run, "update");
        } else {
            drawn += draw(&setup, 3).len() as u64;
        }
    }
    assert_eq!(setup.segments(), vec!["wal.000000".to_owned()]);
    let bytes: u64 =
        fs::read_dir(setup.data()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(bytes < (64 << 20) + (1 << 20), "one 64 MiB segment and small files: {bytes}");
    let stats = setup.run(&["wal", "stats", "--json"]);
    ok(&stats, "wal stats");
    let v: Value = serde_json::from_str(stats.stdout.trim()).unwrap();
    assert_eq!(v["draws"].as_u64(), Some(drawn), "{v}");
}

/// `wal stats --json` as a map: item id → (drawn, expected share); and the draws.
fn stats_by_item(setup: &Setup, range: &[&str]) -> (u64, BTreeMap<String, (u64, f64)>) {
    let run = setup.run(&[&["wal", "stats", "--json"][..], range].concat());
    ok(&run, &format!("wal stats {range:?}"));
    let v: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let shape = ["chi_square", "degrees_of_freedom", "draws", "empty_draws", "items", "p_value"];
    assert_eq!(keys, shape, "the shape is the same with a range: {v}");
    let items = v["items"].as_array().unwrap();
    let by_item = items
        .iter()
        .map(|i| {
            let id = i["item_id"].as_str().unwrap().to_owned();
            (id, (i["drawn"].as_u64().unwrap(), i["expected_share"].as_f64().unwrap()))
        })
        .collect();
    (v["draws"].as_u64().unwrap(), by_item)
}

/// `wal stats --from SEG --to SEG` audits exactly the draws of those segments (counted
/// against `wal dump`), expecting each item's effective odds at each draw: in a segment
/// after the finite item ran out, it is expected 0 times and the unlimited one always. The
/// whole range named explicitly is the default. A reversed range, or an end the log does
/// not hold (never written, or deleted by retention), is bad input (exit 2) naming the
/// segments the log holds.
#[test]
fn stats_over_a_range_of_segments_counts_exactly_its_draws() {
    // 16 KiB segments: 30000 draws make six or more, retention keeps the newest four. Gold
    // (a fifth of the weight) runs out after about 15000 draws, before the newest segment
    // (at most about 8000 draws) begins.
    let setup = Setup::new(&[("gold", 3_000, 20), ("mud", -1, 80)], 16, "buffered");
    let child = setup.command(&["draw", "--count", "30000"]).stdout(Stdio::null()).spawn().unwrap();
    ok(&finish(child, &["draw"]), "draw");
    // Draws per segment and item, from the dump.
    let dump = setup.run(&["wal", "dump", "--json"]);
    ok(&dump, "wal dump --json");
    let mut counted: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
    for v in json_lines(&dump) {
        let per_item = counted.entry(v["segment"].as_u64().unwrap()).or_default();
        if v["type"] == "draw" {
            *per_item.entry(v["item"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    let segments: Vec<u64> = counted.keys().copied().collect();
    assert!(segments.len() >= 3, "several segments: {segments:?}");
    let (first, last) = (segments[0], segments[segments.len() - 1]);
    assert!(first > 0, "retention deleted the oldest: {segments:?}");
    let count = |from: u64, to: u64, item: &str| -> u64 {
        counted.range(from..=to).map(|(_, items)| items.get(item).copied().unwrap_or(0)).sum()
    };

    for (from, to) in [(segments[1], segments[2]), (first, first), (last, last), (first, last)] {
        let (f, t) = (from.to_string(), to.to_string());
        let (draws, items) = stats_by_item(&setup, &["--from", &f, "--to", &t]);
        assert_eq!(draws, count(from, to, "gold") + count(from, to, "mud"), "{from}..={to}");
        for id in ["gold", "mud"] {
            assert_eq!(items[id].0, count(from, to, id), "{id} in {from}..={to}: {items:?}");
        }
    }
    // The newest segment began after gold ran out: its odds were 0, mud's 1.
    let (_, newest) = stats_by_item(&setup, &["--from", &last.to_string()]);
    assert_eq!(newest["gold"], (0, 0.0), "{newest:?}");
    assert_eq!(newest["mud"].1, 1.0, "{newest:?}");
    // The whole range, named or not, is the same audit.
    let named = setup.run(&["wal", "stats", "--json", "--from", &first.to_string()]);
    assert_eq!(named.stdout, setup.run(&["wal", "stats", "--json"]).stdout);
    // The table says which segments it covers.
    let plain = setup.run(&["wal", "stats", "--to", &segments[1].to_string()]);
    ok(&plain, "wal stats --to");
    let range = format!(" in segments {first} to {}", segments[1]);
    assert!(plain.stdout.contains(&range), "{plain:?}");

    let holds = format!("it holds segments {first} to {last}");
    let cases: [(&[&str], &str); 4] = [
        (&["--from", &last.to_string(), "--to", &first.to_string()], "reversed"),
        (&["--from", &(first - 1).to_string()], &holds),
        (&["--to", &(last + 1).to_string()], &holds),
        (&["--from", "-1"], "--from"),
    ];
    for (range, says) in cases {
        let run = setup.run(&[&["wal", "stats"][..], range].concat());
        assert_eq!(run.code, Some(2), "{range:?}: {run:?}");
        assert!(run.stderr.contains(says), "{range:?} should say {says:?}: {run:?}");
        assert!(run.stdout.is_empty() && !run.stderr.contains("panicked"), "{run:?}");
    }
    // No data directory holds no segments.
    let empty = Setup::new(&[("mud", -1, 1)], 64, "sync");
    let run = empty.run(&["wal", "stats", "--from", "0"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("the log holds no segments"), "{run:?}");
}
