//! The command line through the real binary: output shapes field by field, exit codes,
//! exhaustion, the benchmark's JSON report, and a reader closing the pipe early.
//!
//! Each run has a deadline ([`DEADLINE`]): a hang fails the test instead of stalling CI.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rewardpool");
/// Longest any single run may take.
const DEADLINE: Duration = Duration::from_secs(30);

pub(crate) use crate::process::Run;

/// Runs `rewardpool args` in `cwd` and waits (at most [`DEADLINE`]) for it to end.
pub(crate) fn rewardpool(cwd: &Path, args: &[&str]) -> Run {
    run_program(BIN, cwd, args)
}

/// Runs `program args` in `cwd` and waits (at most [`DEADLINE`]) for it to end.
fn run_program(program: &str, cwd: &Path, args: &[&str]) -> Run {
    let child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    finish(child, args)
}

fn finish(child: Child, args: &[&str]) -> Run {
    crate::process::finish(child, args, DEADLINE)
}

fn with_config(yaml: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

fn json_lines(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn draw_json_lines_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let run = rewardpool(dir.path(), &["draw", "--count", "5", "--json", "--data-dir", "d"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines = json_lines(&run);
    assert_eq!(lines.len(), 5, "{run:?}");
    let builtin = ["diamond", "gold", "silver", "rock", "mud", "log"];
    let mut last = 0;
    for v in &lines {
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 2, "{v}");
        let id = obj["request_id"].as_u64().unwrap();
        assert!(id > last, "request ids increase: {run:?}");
        last = id;
        assert!(builtin.contains(&obj["item"].as_str().unwrap()), "{v}");
    }
    // Plain output: "<request id> <item>".
    let run = rewardpool(dir.path(), &["draw", "--count", "2", "--data-dir", "d"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    for line in run.stdout.lines() {
        let (id, item) = line.split_once(' ').unwrap();
        id.parse::<u64>().unwrap();
        assert!(builtin.contains(&item), "{line}");
    }
}

#[test]
fn state_json_shape_field_by_field() {
    let (dir, config) = with_config(
        "pool:\n  catalog:\n    - { item_id: gold, quantity: 999, probability: 20 }\n    - { item_id: mud, quantity: -1, weight: 70 }\n",
    );
    let run = rewardpool(dir.path(), &["state", "--json", "--config", &config, "--data-dir", "d"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout.lines().count(), 1);
    let v: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 2, "{v}");
    assert_eq!(obj["last_request_id"].as_u64(), Some(0));
    let items = obj["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let gold = items[0].as_object().unwrap();
    assert_eq!(gold.len(), 3);
    assert_eq!(gold["item_id"], "gold");
    assert_eq!(gold["quantity"].as_i64(), Some(999));
    assert_eq!(gold["weight"].as_u64(), Some(20));
    assert_eq!(items[1]["item_id"], "mud");
    assert_eq!(items[1]["quantity"].as_i64(), Some(-1));
    assert_eq!(items[1]["weight"].as_u64(), Some(70));
}

#[test]
fn exhaustion_gives_exactly_the_units_then_null() {
    let (dir, config) = with_config(
        "pool:\n  catalog:\n    - { item_id: a, quantity: 3, probability: 1 }\n    - { item_id: b, quantity: 2, probability: 5 }\n",
    );
    let run = rewardpool(
        dir.path(),
        &["draw", "--count", "8", "--json", "--config", &config, "--data-dir", "d"],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines = json_lines(&run);
    assert_eq!(lines.len(), 8, "{run:?}");
    let items: Vec<Option<&str>> = lines.iter().map(|v| v["item"].as_str()).collect();
    assert!(items[..5].iter().all(Option::is_some), "{run:?}");
    assert_eq!(items[..5].iter().filter(|i| **i == Some("a")).count(), 3);
    assert_eq!(items[..5].iter().filter(|i| **i == Some("b")).count(), 2);
    for v in &lines[5..] {
        assert!(v["item"].is_null(), "{v}");
        assert!(v["request_id"].as_u64().is_some());
    }
    let plain =
        rewardpool(dir.path(), &["draw", "--count", "1", "--config", &config, "--data-dir", "d2"]);
    assert_eq!(plain.code, Some(0), "{plain:?}");
}

#[test]
fn bench_json_report_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let run = rewardpool(dir.path(), &["bench", "--json", "--draws", "20000"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.is_empty(), "no progress line off a terminal: {run:?}");
    let v: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let obj = v.as_object().unwrap();
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    let mut want = [
        "draws",
        "seconds",
        "draws_per_sec",
        "latency_ns",
        "baseline_draws_per_sec",
        "producers",
        "items",
        "durability",
        "group",
        "window",
        "rate",
    ];
    let mut got = keys.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "{v}");
    assert_eq!(obj["draws"].as_u64(), Some(20_000));
    assert!(obj["seconds"].as_f64().unwrap() > 0.0);
    assert!(obj["draws_per_sec"].as_f64().unwrap() > 0.0);
    assert!(obj["baseline_draws_per_sec"].as_f64().unwrap() > 0.0);
    let lat = obj["latency_ns"].as_object().unwrap();
    assert_eq!(lat.len(), 5);
    let mut prev = 0;
    for p in ["p50", "p90", "p99", "p999", "max"] {
        let ns = lat[p].as_u64().unwrap();
        assert!(ns > 0 && ns >= prev, "{p}: {v}");
        prev = ns;
    }
    assert_eq!(obj["producers"].as_u64(), Some(1));
    assert_eq!(obj["items"].as_u64(), Some(100));
    assert_eq!(obj["durability"], "memory");
    assert_eq!(obj["group"].as_u64(), Some(200));
    assert_eq!(obj["window"].as_u64(), Some(256));
    assert!(obj["rate"].is_null());
    // Memory mode creates no directory.
    assert!(!dir.path().join("bench-data").exists());
}

#[test]
fn bench_sync_plain_output_reports_measured_log_bytes_and_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["bench", "--durability", "sync", "--draws", "20000", "--group", "100"];
    let run = rewardpool(dir.path(), &args);
    assert_eq!(run.code, Some(0), "{run:?}");
    let line = |prefix: &str| {
        run.stdout.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{run:?}"))
    };
    // 32-byte draw frames plus one 32-byte commit per group of at most 100: 32.3..=64 bytes.
    let groups = line("groups");
    let per_draw: f64 =
        groups.split(';').nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!((32.3..=64.0).contains(&per_draw), "{groups}");
    let syncs = line("syncs");
    let count: u64 = syncs.split_whitespace().nth(1).unwrap().parse().unwrap();
    // One sync covers one group or more (groups also end when the rings run dry).
    let committed: u64 = groups.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((1..=committed).contains(&count), "{syncs} / {groups}");
    assert!(
        syncs.contains("KiB each") && syncs.contains("mean") && syncs.contains("max"),
        "{syncs}"
    );
    // What the machine took: steal time and the threads' involuntary switches (Linux /proc).
    let machine = line("machine");
    assert!(machine.contains("steal") && machine.contains("core thread"), "{machine}");
    if cfg!(target_os = "linux") {
        assert!(!machine.contains('?'), "every figure readable on Linux: {machine}");
    }
    // The memory mode has no log and no syncs.
    let memory = rewardpool(dir.path(), &["bench", "--draws", "20000"]);
    assert!(memory.stdout.contains("no log") && !memory.stdout.contains("syncs"), "{memory:?}");
}

#[test]
fn bench_open_loop_two_producers_with_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let run = rewardpool(
        dir.path(),
        &[
            "bench",
            "--json",
            "--draws",
            "20000",
            "--producers",
            "2",
            "--items",
            "10",
            "--rate",
            "400000",
            "--window",
            "64",
            "--hist-out",
            "h.hgrm",
            "--plot",
            "p.svg",
        ],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let v: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(v["draws"].as_u64(), Some(20_000));
    assert_eq!(v["producers"].as_u64(), Some(2));
    assert_eq!(v["rate"].as_f64(), Some(400_000.0));
    let hgrm = std::fs::read_to_string(dir.path().join("h.hgrm")).unwrap();
    assert!(hgrm.contains("Percentile") && hgrm.contains("Total count"), "{hgrm}");
    let svg = std::fs::read_to_string(dir.path().join("p.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.contains("<svg"), "not an SVG");
}

#[test]
fn bad_arguments_exit_2_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["bench", "--draws", "0"][..],
        &["bench", "--producers", "0"],
        &["bench", "--window", "0"],
        &["bench", "--rate", "-5"],
        &["draw", "--count", "ten"],
        &["no-such-command"],
        &["update", "--item", "gold"],
        &["update", "--item", "gold", "--quantity", "-7"],
    ] {
        let run = rewardpool(dir.path(), args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(!run.stderr.is_empty(), "{args:?}");
        assert!(!run.stderr.contains("panicked"), "{args:?}: {run:?}");
    }
}

/// `run` and `tui` arrive with later issues (gRPC service, dashboard): until then they
/// say so, with exit code 2, and never pretend to work.
#[test]
fn run_and_tui_say_not_available_yet() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["run"][..], &["tui"]] {
        let mut full = args.to_vec();
        full.extend(["--data-dir", "d"]);
        let run = rewardpool(dir.path(), &full);
        assert!(run.stderr.contains("not available yet"), "{args:?}: {run:?}");
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(!run.stderr.contains("panicked"), "{args:?}: {run:?}");
    }
}

#[test]
fn help_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let run = rewardpool(dir.path(), &["--help"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    for cmd in ["run", "draw", "state", "update", "wal", "bench", "tui"] {
        assert!(run.stdout.contains(cmd), "{cmd}: {run:?}");
    }
    let run = rewardpool(dir.path(), &["bench", "--help"]);
    assert!(run.stdout.contains("memory"), "{run:?}");
}

#[test]
fn closed_stdout_is_success() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["draw", "--count", "100000", "--data-dir", "d"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert!(!first.is_empty());
    // The reader is dropped here: the pipe closes like `| head -1`.
    let run = finish(child, &["draw", "--count", "100000"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    assert!(run.stderr.is_empty(), "quiet on a closed pipe: {run:?}");
}

/// `rewardpool-hiccup` (tools/hiccup.rs), the machine's floor for perf/: one JSON line per
/// core with the excess for each bound, the disk mode's fdatasync percentiles (or its
/// refusal of tmpfs), exit 2 on a bad argument.
#[test]
fn hiccup_tool_reports_cpu_and_disk_floors() {
    const HICCUP: &str = env!("CARGO_BIN_EXE_rewardpool-hiccup");
    let cwd = std::env::temp_dir();
    let run = |args: &[&str]| run_program(HICCUP, &cwd, args);
    let cpu = run(&["--seconds", "0.3", "--json"]);
    assert_eq!(cpu.code, Some(0), "{}", cpu.stderr);
    let lines = json_lines(&cpu);
    assert!(!lines.is_empty());
    for l in &lines {
        assert_eq!(l["mode"], "cpu");
        let secs = l["seconds"].as_f64().unwrap();
        assert!((0.29..5.0).contains(&secs), "{l}");
        let excess = l["excess_percent_by_bound_us"].as_object().unwrap();
        for bound in ["20", "50", "1000", "2000"] {
            let e = excess[bound].as_f64().unwrap_or_else(|| panic!("bound {bound}: {l}"));
            assert!((0.0..=100.0).contains(&e), "{l}");
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let disk = run(&["--seconds", "0.3", "--json", "--disk", d, "--write-kib", "16"]);
    if disk.code == Some(1) && disk.stderr.contains("tmpfs") {
        eprintln!("temporary directory on tmpfs: disk mode refused, as it should be");
    } else {
        assert_eq!(disk.code, Some(0), "{}", disk.stderr);
        let l = &json_lines(&disk)[0];
        assert_eq!(l["mode"], "disk");
        assert!(l["syncs"].as_u64().unwrap() > 0, "{l}");
        assert!(l["mb_per_sec"].as_f64().unwrap() > 0.0, "{l}");
        for p in ["p50", "p90", "p99", "p999", "max"] {
            assert!(l["fdatasync_us"][p].as_f64().unwrap() > 0.0, "{p}: {l}");
        }
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the disk probe's file is removed"
    );

    let bad = run(&["--seconds", "0"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("--seconds"), "{}", bad.stderr);
}
