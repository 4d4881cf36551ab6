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
    // No data directory (the file names none, ./data is absent): the catalog's state. (An
    // explicit --data-dir that does not exist is refused: missing_explicit_data_dir_is_an_error.)
    let run = rewardpool(dir.path(), &["state", "--json", "--config", &config]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout.lines().count(), 1);
    let v: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 2, "{v}");
    assert_eq!(obj["last_request_id"].as_u64(), Some(0));
    let items = obj["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let gold = items[0].as_object().unwrap();
    assert_eq!(gold.len(), 4);
    assert_eq!(gold["item_id"], "gold");
    assert_eq!(gold["quantity"].as_i64(), Some(999));
    assert_eq!(gold["weight"].as_u64(), Some(20));
    assert_eq!(gold["probability"].as_f64(), Some(20.0 / 90.0));
    assert_eq!(items[1]["item_id"], "mud");
    assert_eq!(items[1]["quantity"].as_i64(), Some(-1));
    assert_eq!(items[1]["weight"].as_u64(), Some(70));
    assert_eq!(items[1]["probability"].as_f64(), Some(70.0 / 90.0));
    // The fields in their order: the earlier ones as they were, the odds last.
    assert!(
        run.stdout.starts_with(
            "{\"last_request_id\":0,\"items\":[{\"item_id\":\"gold\",\"quantity\":999,\
             \"weight\":20,\"probability\":0.2222"
        ),
        "{run:?}"
    );
}

/// `state` discloses each item's effective probability given the stock: an exhausted item
/// has 0 and leaves the denominator, an unlimited one counts; once nothing is left every
/// probability is 0. JSON (fractions) and the table (percentages) agree.
#[test]
fn state_shows_effective_probabilities_given_stock() {
    let (dir, config) = with_config(
        "pool:\n  catalog:\n    - { item_id: gone, quantity: 0, probability: 50 }\n    - { item_id: gold, quantity: 2, probability: 10 }\n    - { item_id: mud, quantity: -1, probability: 30 }\n",
    );
    // ./data in the test's directory: absent until the first update, then the log's.
    let run = |args: &[&str]| {
        let run = rewardpool(dir.path(), &[args, &["--config", &config]].concat());
        assert_eq!(run.code, Some(0), "{args:?}: {run:?}");
        run
    };
    let odds = || -> Vec<f64> {
        let v: Value = serde_json::from_str(run(&["state", "--json"]).stdout.trim()).unwrap();
        v["items"].as_array().unwrap().iter().map(|i| i["probability"].as_f64().unwrap()).collect()
    };
    assert_eq!(odds(), [0.0, 0.25, 0.75]);
    let table = run(&["state"]);
    let header = table.stdout.lines().nth(1).unwrap();
    assert!(header.ends_with("probability"), "{table:?}");
    let row = |id: &str| table.stdout.lines().find(|l| l.starts_with(id)).unwrap().to_owned();
    assert!(row("gone").ends_with(" 0.0000%"), "{table:?}");
    assert!(row("gold").ends_with(" 25.0000%"), "{table:?}");
    assert!(row("mud").ends_with(" 75.0000%"), "{table:?}");

    // Mud set to 0: gold takes all the odds; two draws exhaust it; then nothing is left.
    run(&["update", "--item", "mud", "--quantity", "0"]);
    assert_eq!(odds(), [0.0, 1.0, 0.0]);
    let drawn = run(&["draw", "--count", "2"]);
    assert_eq!(drawn.stdout, "1 gold\n2 gold\n", "{drawn:?}");
    assert_eq!(odds(), [0.0, 0.0, 0.0]);
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
        "pull",
        "rate",
        "rate_sustained",
        "log_bytes_per_draw",
        "floor_p99_ns",
        "pools",
        "pool_draws_per_sec",
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
    assert_eq!(obj["pull"].as_u64(), Some(1), "single draws");
    assert!(obj["rate"].is_null());
    assert!(obj["rate_sustained"].is_null(), "closed loop: {v}");
    assert!(obj["log_bytes_per_draw"].is_null(), "memory keeps no log: {v}");
    assert!(obj["floor_p99_ns"].is_null(), "closed loop: {v}");
    assert_eq!(obj["pools"].as_u64(), Some(1));
    assert!(obj["pool_draws_per_sec"].is_null(), "one pool: {v}");
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
    // Per group of at most 100 draws (the 100-item bench catalog: one byte per item): one
    // batch frame (16-byte header, 24 bytes of fields, up to 15 of padding) and a 32-byte
    // commit: 1 + 72/100 ..= 1 + 87 bytes per draw.
    let groups = line("groups");
    let per_draw: f64 =
        groups.split(';').nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!((1.72..=88.0).contains(&per_draw), "{groups}");
    let syncs = line("syncs");
    let count: u64 = syncs.split_whitespace().nth(1).unwrap().parse().unwrap();
    // One sync covers one group or more (groups also end when the rings run dry).
    let committed: u64 = groups.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((1..=committed).contains(&count), "{syncs} / {groups}");
    assert!(
        syncs.contains("KiB each") && syncs.contains("mean") && syncs.contains("max"),
        "{syncs}"
    );
    // The JSON report's log bytes per draw is the same measurement.
    let json = rewardpool(dir.path(), &[&args[..], &["--json"]].concat());
    assert_eq!(json.code, Some(0), "{json:?}");
    let v: Value = serde_json::from_str(json.stdout.trim()).unwrap();
    let bytes = v["log_bytes_per_draw"].as_f64().unwrap_or_else(|| panic!("{v}"));
    assert!((1.72..=88.0).contains(&bytes), "{v}");
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
    // The machine's floor p99, measured just before the run (every core spinning for 1 s).
    assert!(v["floor_p99_ns"].is_u64(), "{v}");
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
        &["update", "--item", "gold", "--weight", "-5"],
        &["draw", "--count", "-1"],
        &["bench", "--draws", "-1"],
    ] {
        let run = rewardpool(dir.path(), args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(!run.stderr.is_empty(), "{args:?}");
        assert!(!run.stderr.contains("panicked"), "{args:?}: {run:?}");
    }
}

/// `run` is `serve`'s alias: with the built-in configuration (grpc.enabled: false) and no
/// --listen it refuses, with exit code 2. `tui` refuses a bad --refresh-ms or --connect
/// address, or an output that is no terminal, before it touches anything (exit 2).
#[test]
fn run_needs_grpc_and_tui_checks_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["tui", "--data-dir", "d", "--refresh-ms", "0"][..],
        &["tui", "--connect", "not a host", "--data-dir", "d"][..],
        // Its output is a pipe here, not a terminal: refused before the directory opens.
        &["tui", "--data-dir", "d"][..],
    ] {
        let run = rewardpool(dir.path(), args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(!run.stderr.contains("panicked"), "{run:?}");
    }
    let run = rewardpool(dir.path(), &["tui", "--data-dir", "d"]);
    assert!(run.stderr.contains("not one"), "{run:?}");
    let help = rewardpool(dir.path(), &["tui", "--help"]);
    assert_eq!(help.code, Some(0), "{help:?}");
    assert!(help.stdout.contains("--connect"), "tui --help: {help:?}");
    let run = rewardpool(dir.path(), &["run", "--data-dir", "d"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("grpc.enabled"), "{run:?}");
    assert!(!dir.path().join("d").exists(), "nothing opened: {run:?}");
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
        // The floor p99 (machine/floor.rs, shared with the bench): the smallest bound whose
        // excess is at most 1 %.
        assert!(l["floor_p99_ns"].is_u64(), "{l}");
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

// ---------------------------------------------------------------------------------------
// No silent surprises (issue 8)

/// Names, sizes and modification times of the files under `dir` (recursively).
fn tree(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = e.metadata().unwrap();
        if meta.is_dir() {
            out.extend(tree(&e.path()));
        } else {
            out.push((e.path().display().to_string(), meta.len(), meta.modified().unwrap()));
        }
    }
    out.sort();
    out
}

fn state_items(run: &Run) -> Vec<(String, i64, u64)> {
    let v: Value =
        serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run:?}"));
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["item_id"].as_str().unwrap().to_owned(),
                i["quantity"].as_i64().unwrap(),
                i["weight"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A catalog edited after the data directory exists is reported by `state`, `draw` and
/// `update` (added, missing, weight, quantity) until `update --apply-catalog` logs it; the
/// catalog the log began with is never reported, whatever the draws did to its quantities.
#[test]
fn edited_catalog_is_reported_then_applied() {
    let (dir, config) = with_config(
        "pool:\n  catalog:\n    - { item_id: a, quantity: 50, probability: 1 }\n    - { item_id: b, quantity: -1, probability: 2 }\n",
    );
    let with = |args: &[&str]| {
        let mut full = args.to_vec();
        full.extend(["--config", &config, "--data-dir", "d"]);
        rewardpool(dir.path(), &full)
    };
    let first = with(&["draw", "--count", "20"]);
    assert_eq!(first.code, Some(0), "{first:?}");
    let same = with(&["state", "--json"]);
    assert_eq!(same.code, Some(0), "{same:?}");
    assert!(same.stderr.is_empty(), "the log's own catalog is not a difference: {same:?}");

    // Edit: a removed, b's weight 2 -> 4 and quantity unlimited -> 9, c added.
    std::fs::write(
        &config,
        "pool:\n  catalog:\n    - { item_id: b, quantity: 9, probability: 4 }\n    - { item_id: c, quantity: 2, probability: 1 }\n",
    )
    .unwrap();
    for args in [&["state"][..], &["draw", "--count", "1"]] {
        let run = with(args);
        assert_eq!(run.code, Some(0), "{args:?}: {run:?}");
        let e = &run.stderr;
        assert!(e.contains("warning: the catalog in") && e.contains(&config), "{args:?}: {e}");
        assert!(e.contains("a: in the pool (quantity "), "{args:?}: {e}");
        assert!(e.contains(", weight 1), not in the configuration"), "{args:?}: {e}");
        assert!(
            e.contains(
                "b: weight 2 in the pool, 4 in the configuration; quantity unlimited in the pool, 9 in the configuration"
            ),
            "{args:?}: {e}"
        );
        assert!(
            e.contains("c: in the configuration, not in the pool (quantity 2, weight 1)"),
            "{args:?}: {e}"
        );
        assert!(e.contains("rewardpool update --apply-catalog --config"), "{args:?}: {e}");
    }
    // `update` reports what is left to apply after its own change.
    let upd = with(&["update", "--item", "b", "--weight", "4", "--quantity", "9"]);
    assert_eq!(upd.code, Some(0), "{upd:?}");
    assert!(!upd.stderr.contains("b: "), "b now matches: {upd:?}");
    assert!(upd.stderr.contains("c: in the configuration"), "{upd:?}");

    let apply = with(&["update", "--apply-catalog"]);
    assert_eq!(apply.code, Some(0), "{apply:?}");
    assert!(apply.stdout.contains("a quantity=0 weight=1"), "{apply:?}");
    assert!(apply.stdout.contains("c quantity=2 weight=1"), "{apply:?}");
    assert!(apply.stdout.contains("2 items updated"), "{apply:?}");
    let after = with(&["state", "--json"]);
    assert_eq!(after.code, Some(0), "{after:?}");
    assert!(after.stderr.is_empty(), "applied: nothing left to report: {after:?}");
    let items = state_items(&after);
    assert_eq!(items[0].0, "a");
    assert_eq!((items[0].1, items[0].2), (0, 1), "{items:?}");
    assert_eq!(items[1], ("b".to_owned(), 9, 4));
    assert_eq!(items[2], ("c".to_owned(), 2, 1));
    // Draws consume the applied catalog's quantities: still nothing to report.
    let more = with(&["draw", "--count", "3"]);
    assert_eq!(more.code, Some(0), "{more:?}");
    assert!(more.stderr.is_empty(), "{more:?}");
}

/// A typo in `update --item` is refused with the known ids; `--add` adds, once.
#[test]
fn update_of_an_unknown_item_needs_add() {
    let dir = tempfile::tempdir().unwrap();
    let d = ["--data-dir", "d"];
    let first = rewardpool(dir.path(), &["draw", d[0], d[1]]);
    assert_eq!(first.code, Some(0), "{first:?}");
    let before = tree(&dir.path().join("d"));
    let typo = rewardpool(
        dir.path(),
        &["update", "--item", "diamnod", "--quantity", "0", "--weight", "10", d[0], d[1]],
    );
    assert_eq!(typo.code, Some(2), "{typo:?}");
    assert!(
        typo.stderr.contains(
            "unknown item diamnod; known: diamond, gold, silver, rock, mud, log; pass --add to add it"
        ),
        "{typo:?}"
    );
    assert_eq!(tree(&dir.path().join("d")), before, "a refused update changes nothing");
    let state = rewardpool(dir.path(), &["state", "--json", d[0], d[1]]);
    assert_eq!(state_items(&state).len(), 6, "nothing was added: {state:?}");

    let half =
        rewardpool(dir.path(), &["update", "--item", "ruby", "--add", "--weight", "3", d[0], d[1]]);
    assert_eq!(half.code, Some(2), "{half:?}");
    assert!(half.stderr.contains("--add needs both --quantity and --weight"), "{half:?}");
    let add = rewardpool(
        dir.path(),
        &["update", "--item", "ruby", "--add", "--quantity", "5", "--weight", "3", d[0], d[1]],
    );
    assert_eq!(add.code, Some(0), "{add:?}");
    assert_eq!(add.stdout.trim(), "ruby quantity=5 weight=3");
    let again = rewardpool(
        dir.path(),
        &["update", "--item", "ruby", "--add", "--quantity", "5", "--weight", "3", d[0], d[1]],
    );
    assert_eq!(again.code, Some(2), "{again:?}");
    assert!(again.stderr.contains("item ruby exists already"), "{again:?}");
    let state = rewardpool(dir.path(), &["state", "--json", d[0], d[1]]);
    assert_eq!(state_items(&state)[6], ("ruby".to_owned(), 5, 3));
}

/// `draw --count C --pull N`: C pulls of N draws, one line per draw as without `--pull`,
/// request ids consecutive; `--pull 0` and one above the maximum are refused (exit 2) by a
/// message naming the flag and the bounds, before the data directory is opened.
#[test]
fn draw_pull_prints_one_line_per_draw_and_refuses_bad_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let run = rewardpool(
        dir.path(),
        &["draw", "--count", "3", "--pull", "4", "--json", "--data-dir", "d"],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let ids: Vec<u64> =
        json_lines(&run).iter().map(|v| v["request_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=12).collect::<Vec<_>>(), "{run:?}");
    let run =
        rewardpool(dir.path(), &["draw", "--count", "1", "--pull", "1000", "--data-dir", "d"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout.lines().count(), 1000);
    let fresh = tempfile::tempdir().unwrap();
    for pull in ["0", "1001"] {
        let run = rewardpool(fresh.path(), &["draw", "--pull", pull, "--data-dir", "d"]);
        assert_eq!(run.code, Some(2), "--pull {pull}: {run:?}");
        let says = format!("--pull is {pull}: a pull asks for 1 to 1000 draws");
        assert!(run.stderr.contains(&says), "{run:?}");
    }
    assert!(!fresh.path().join("d").exists(), "refused before anything was opened");
}

/// Negative numbers reach every flag as values: out-of-range ones are refused by a message
/// naming the flag, never as an unknown argument.
#[test]
fn negative_numbers_are_values_for_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["update", "--item", "gold", "--weight", "-5"][..], "--weight is -5: a weight must be"),
        (&["update", "--item", "gold", "--quantity", "-7"], "--quantity is -7"),
        (&["bench", "--rate", "-5"], "--rate is -5"),
        (&["draw", "--count", "-1"], "invalid value '-1' for '--count"),
        (&["bench", "--draws", "-1"], "invalid value '-1' for '--draws"),
        (&["bench", "--window", "-2"], "invalid value '-2' for '--window"),
    ] {
        let run = rewardpool(dir.path(), args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(run.stderr.contains(says), "{args:?}: {run:?}");
        assert!(!run.stderr.contains("unexpected argument"), "{args:?}: {run:?}");
    }
    assert!(!dir.path().join("data").exists(), "refused before anything was opened");
}

/// `draw --count 0` opens nothing: no data directory is created, an existing one is not
/// touched (no recovery-side write, no segment).
#[test]
fn draw_count_zero_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = rewardpool(dir.path(), &["draw", "--count", "0", "--data-dir", "d"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.is_empty() && run.stderr.is_empty(), "{run:?}");
    assert!(!dir.path().join("d").exists(), "no data directory created");

    let run = rewardpool(dir.path(), &["draw", "--count", "2", "--data-dir", "d"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let before = tree(&dir.path().join("d"));
    std::thread::sleep(Duration::from_millis(20));
    let run = rewardpool(dir.path(), &["draw", "--count", "0", "--data-dir", "d"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(tree(&dir.path().join("d")), before, "the data directory changed");
}

/// `memory` durability: `draw` says on stderr that nothing is kept (and touches no data
/// directory); `update`, whose only effect is the log, is refused.
#[test]
fn memory_durability_says_it_keeps_nothing() {
    let (dir, config) = with_config(
        "pool:\n  catalog:\n    - { item_id: a, quantity: -1, probability: 1 }\nwal:\n  durability: memory\n",
    );
    let draw =
        rewardpool(dir.path(), &["draw", "--count", "2", "--config", &config, "--data-dir", "d"]);
    assert_eq!(draw.code, Some(0), "{draw:?}");
    assert_eq!(draw.stdout.lines().count(), 2, "{draw:?}");
    assert!(
        draw.stderr.contains("wal.durability is memory: these draws are kept nowhere"),
        "{draw:?}"
    );
    assert!(!dir.path().join("d").exists(), "memory durability writes no data directory");
    let update = rewardpool(
        dir.path(),
        &["update", "--item", "a", "--weight", "2", "--config", &config, "--data-dir", "d"],
    );
    assert_eq!(update.code, Some(2), "{update:?}");
    assert!(update.stderr.contains("an update would be kept nowhere"), "{update:?}");
}

/// `--plot` and `--hist-out` that cannot be written fail at once (exit 2), before the
/// default ten million draws.
#[test]
fn bench_output_paths_are_checked_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--plot", "--hist-out"] {
        let started = std::time::Instant::now();
        let run = rewardpool(dir.path(), &["bench", flag, "/no/such/dir/x.svg"]);
        assert_eq!(run.code, Some(2), "{flag}: {run:?}");
        assert!(
            run.stderr.contains(&format!("{flag} /no/such/dir/x.svg: cannot write")),
            "{run:?}"
        );
        assert!(run.stdout.is_empty(), "no run happened: {run:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{flag}: {:?}", started.elapsed());
    }
}

/// An open-loop rate far above what the engine can do is flagged (JSON `rate_sustained`,
/// plain "NOT sustained"); a modest one is not (at least once in three runs: a busy
/// machine may stall one).
#[test]
fn bench_flags_an_unsustained_open_loop_rate() {
    let dir = tempfile::tempdir().unwrap();
    let run = rewardpool(dir.path(), &["bench", "--json", "--draws", "200000", "--rate", "1e9"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let v: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(v["rate_sustained"], Value::Bool(false), "{v}");
    let plain = rewardpool(dir.path(), &["bench", "--draws", "200000", "--rate", "1e9"]);
    assert_eq!(plain.code, Some(0), "{plain:?}");
    let line = plain
        .stdout
        .lines()
        .find(|l| l.starts_with("rate "))
        .unwrap_or_else(|| panic!("{plain:?}"));
    assert!(
        line.contains("NOT sustained: achieved") && line.contains("of 1000.000 M draws/s offered"),
        "{line}"
    );
    // An open loop reads its p99 against the machine's floor, measured just before the run.
    let floor = plain.stdout.lines().find(|l| l.starts_with("floor ")).unwrap_or_else(|| {
        panic!("{plain:?}");
    });
    assert!(floor.contains("for this machine, beside the engine's p99"), "{floor}");
    assert!(floor.contains("just before the run"), "{floor}");

    let sustained = (0..3).any(|_| {
        let run = rewardpool(dir.path(), &["bench", "--json", "--draws", "1000", "--rate", "5000"]);
        assert_eq!(run.code, Some(0), "{run:?}");
        let v: Value = serde_json::from_str(run.stdout.trim()).unwrap();
        assert!(v["rate_sustained"].is_boolean(), "{v}");
        v["rate_sustained"] == Value::Bool(true)
    });
    assert!(sustained, "5000 draws/s for 0.2 s was never sustained");
}

/// `bench --config FILE` takes durability, group and window from the file's `wal` section
/// unless the flags are given.
#[test]
fn bench_config_supplies_durability_group_and_window() {
    let (dir, config) = with_config(
        "pool:\n  catalog:\n    - { item_id: a, quantity: -1, probability: 1 }\nwal:\n  durability: buffered\n  flush_after_n_draw: 50\n  max_request_buffer_size: 64\n",
    );
    let run = rewardpool(dir.path(), &["bench", "--json", "--draws", "2000", "--config", &config]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let v: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(v["durability"], "buffered", "{v}");
    assert_eq!(v["group"].as_u64(), Some(50), "{v}");
    assert_eq!(v["window"].as_u64(), Some(64), "{v}");
    assert!(!dir.path().join("bench-data").exists(), "the run's directory is removed");

    let run = rewardpool(
        dir.path(),
        &[
            "bench",
            "--json",
            "--draws",
            "2000",
            "--config",
            &config,
            "--durability",
            "memory",
            "--group",
            "7",
        ],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let v: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(v["durability"], "memory", "{v}");
    assert_eq!(v["group"].as_u64(), Some(7), "{v}");
    assert_eq!(v["window"].as_u64(), Some(64), "{v}");
}

/// Without flags or `--config`, group and window are the durability mode's defaults (README);
/// a flag still wins.
#[test]
fn bench_defaults_follow_the_durability_mode() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["bench", "--json", "--draws", "20000", "--durability", "sync"];
    let run = rewardpool(dir.path(), &args);
    assert_eq!(run.code, Some(0), "{run:?}");
    let v: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!((v["group"].as_u64(), v["window"].as_u64()), (Some(4096), Some(16384)));
    let run = rewardpool(dir.path(), &[&args[..], &["--window", "64"]].concat());
    assert_eq!(run.code, Some(0), "{run:?}");
    let v: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!((v["group"].as_u64(), v["window"].as_u64()), (Some(4096), Some(64)));
}

/// SIGINT or SIGTERM during a durable bench removes its directory and ends the process at
/// once with 128 + the signal's number.
#[test]
fn interrupted_bench_removes_its_data() {
    for (signal, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let args = ["bench", "--durability", "sync", "--draws", "1000000000"];
        let child = Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let base = dir.path().join("bench-data");
        let waited = std::time::Instant::now();
        // Started: its run directory holds a segment.
        while !std::fs::read_dir(&base).is_ok_and(|runs| {
            runs.flatten()
                .any(|r| std::fs::read_dir(r.path()).is_ok_and(|mut f| f.next().is_some()))
        }) {
            assert!(waited.elapsed() < Duration::from_secs(20), "{name}: the bench never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: kill only reads its integer arguments; the child is ours and not reaped.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "{name}");
        let sent = std::time::Instant::now();
        let run = crate::process::finish(child, &args, Duration::from_secs(10));
        assert!(sent.elapsed() < Duration::from_secs(5), "{name}: took {:?}", sent.elapsed());
        assert_eq!(run.code, Some(128 + signal), "{name}: {run:?}");
        assert!(run.stderr.contains("interrupted"), "{name}: {run:?}");
        assert!(!base.exists(), "{name}: {} is left behind", base.display());
    }
}
