//! Several pools through the real binary: `--pool` on every command that acts on a pool,
//! its errors (listing the pools), pools that never touch each other's stock or log, a
//! SIGKILL of two `draw` processes on one two-pool configuration (both pools recover), the
//! configuration's pool errors, and `bench --pools`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cli::{rewardpool, Run};
use rewardpool::{Config, Host};

/// A two-pool configuration (`eu`: gold and mud; `us`: ruby and rock) in `dir/config.yaml`,
/// data in `dir/data`; returns its path as a string.
fn two_pools(dir: &Path) -> String {
    let yaml = format!(
        "working_dir: \"{}\"\nwal:\n  durability: buffered\n  max_file_size_kb: 64\n  \
         flush_after_n_draw: 50\npools:\n  \
         - name: eu\n    catalog:\n      - {{ item_id: gold, quantity: 100000, probability: 1 }}\n      \
         - {{ item_id: mud, quantity: -1, probability: 3 }}\n  \
         - name: us\n    catalog:\n      - {{ item_id: ruby, quantity: 100000, probability: 1 }}\n      \
         - {{ item_id: rock, quantity: -1, probability: 3 }}\n",
        dir.join("data").display()
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.to_str().unwrap().to_owned()
}

fn json(run: &Run) -> Value {
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run:?}"))
}

fn refused_listing(run: &Run, wanted: &str, pools: &str) {
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(run.stderr.starts_with("error: "), "{run:?}");
    assert!(run.stderr.contains(wanted), "stderr should say {wanted:?}: {run:?}");
    assert!(run.stderr.contains(pools), "stderr should list {pools:?}: {run:?}");
}

#[test]
fn pool_errors_list_the_pools() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_pools(dir.path());
    let c = ["--config", config.as_str()];
    for cmd in [
        vec!["draw"],
        vec!["state"],
        vec!["update", "--item", "gold", "--quantity", "1"],
        vec!["wal", "dump"],
        vec!["wal", "verify"],
        vec!["wal", "repair"],
        vec!["wal", "stats"],
    ] {
        let mut args: Vec<&str> = cmd.clone();
        args.extend(c);
        let run = rewardpool(dir.path(), &args);
        refused_listing(&run, "choose one with --pool NAME", "2 pools (eu, us)");
        let mut args = cmd.clone();
        args.extend(c);
        args.extend(["--pool", "asia"]);
        let run = rewardpool(dir.path(), &args);
        refused_listing(&run, "unknown pool \"asia\"", "pools are eu, us");
    }
    // `wal` takes --pool before its subcommand too.
    let run = rewardpool(dir.path(), &["wal", "--pool", "asia", "dump", "--config", &config]);
    refused_listing(&run, "unknown pool \"asia\"", "eu, us");
    assert!(!dir.path().join("data").exists(), "a refused command creates nothing");

    // The Go form's one pool is "default": named, it works; another name is refused.
    let run = rewardpool(dir.path(), &["draw", "--json", "--pool", "default", "--data-dir", "d"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(dir.path().join("d/wal.000000").is_file(), "the Go form's files stay flat");
    let run = rewardpool(dir.path(), &["state", "--json", "--pool", "default", "--data-dir", "d"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(json(&run)["last_request_id"], 1);
    let run = rewardpool(dir.path(), &["draw", "--pool", "eu", "--data-dir", "d"]);
    refused_listing(&run, "unknown pool \"eu\"", "pools are default");
}

#[test]
fn each_command_acts_on_its_pool_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_pools(dir.path());
    let run = rewardpool(
        dir.path(),
        &["draw", "--pool", "eu", "--count", "30", "--json", "--config", &config],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let items: Vec<String> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["item"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(items.len(), 30);
    assert!(items.iter().all(|i| i == "gold" || i == "mud"), "{items:?}");
    let golds = items.iter().filter(|i| *i == "gold").count() as i64;

    let state = |pool: &str| {
        let run = rewardpool(dir.path(), &["state", "--json", "--pool", pool, "--config", &config]);
        assert_eq!(run.code, Some(0), "{run:?}");
        json(&run)
    };
    let eu = state("eu");
    assert_eq!(eu["last_request_id"], 30);
    assert_eq!(eu["items"][0]["quantity"].as_i64(), Some(100_000 - golds));
    let us = state("us");
    assert_eq!(us["last_request_id"], 0, "eu's draws are not us's: {us}");
    assert_eq!(us["items"][0]["item_id"], "ruby");
    assert_eq!(us["items"][0]["quantity"], 100_000);

    let run = rewardpool(
        dir.path(),
        &["update", "--pool", "us", "--item", "ruby", "--quantity", "7", "--config", &config],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(state("us")["items"][0]["quantity"], 7);
    assert_eq!(state("eu")["items"][0]["quantity"].as_i64(), Some(100_000 - golds));
    // An item of the other pool is unknown here.
    let run = rewardpool(
        dir.path(),
        &["update", "--pool", "eu", "--item", "ruby", "--quantity", "7", "--config", &config],
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("unknown item ruby"), "{run:?}");

    // The logs: eu's holds 30 draws, us's none and its update; each in its directory.
    let frames = |pool: &str| {
        let run =
            rewardpool(dir.path(), &["wal", "dump", "--json", "--pool", pool, "--config", &config]);
        assert_eq!(run.code, Some(0), "{run:?}");
        run.stdout.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect::<Vec<_>>()
    };
    let draws = |f: &[Value]| f.iter().filter(|v| v["type"] == "draw").count();
    assert_eq!(draws(&frames("eu")), 30);
    let us_frames = frames("us");
    assert_eq!(draws(&us_frames), 0);
    assert!(us_frames.iter().any(|v| v["type"] == "update"), "{us_frames:?}");
    for pool in ["eu", "us"] {
        let run = rewardpool(dir.path(), &["wal", "--pool", pool, "verify", "--config", &config]);
        assert_eq!(run.code, Some(0), "{run:?}");
        assert!(dir.path().join("data").join(pool).join("wal.000000").is_file());
    }
    assert!(!dir.path().join("data/wal.000000").exists(), "nothing directly in working_dir");
}

/// Runs `draw --pool POOL` until killed; returns (request id, item) of every complete line.
fn spawn_draw(config: &str, pool: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_rewardpool"))
        .args(["draw", "--count", "100000000", "--json", "--config", config, "--pool", pool])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rewardpool draw")
}

fn read_acked(child: &mut std::process::Child) -> std::thread::JoinHandle<Vec<(u64, String)>> {
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            if line.ends_with('\n') {
                if let Ok(v) = serde_json::from_str::<Value>(line.trim_end()) {
                    let id = v["request_id"].as_u64().unwrap();
                    acked.push((id, v["item"].as_str().unwrap_or("").to_owned()));
                }
            }
            line.clear();
        }
        acked
    })
}

/// Two `draw` processes on one two-pool configuration (one per pool: each locks only its
/// pool's directory), both SIGKILLed mid-run: a host then opens both pools, each with every
/// draw it acknowledged, in its own log, and both go on.
#[test]
fn sigkill_of_draws_on_two_pools_both_recover() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = two_pools(dir.path());
    let mut eu = spawn_draw(&config_path, "eu");
    let mut us = spawn_draw(&config_path, "us");
    let (eu_lines, us_lines) = (read_acked(&mut eu), read_acked(&mut us));
    // Until both have acknowledged something (at most 20 s), then a little more.
    let start = Instant::now();
    let data = dir.path().join("data");
    while start.elapsed() < Duration::from_secs(20)
        && !(data.join("eu/wal.000001").exists() && data.join("us/wal.000001").exists())
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));
    for child in [&mut eu, &mut us] {
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
    }
    let acked: HashMap<&str, Vec<(u64, String)>> =
        [("eu", eu_lines.join().unwrap()), ("us", us_lines.join().unwrap())].into();
    assert!(!acked["eu"].is_empty() && !acked["us"].is_empty(), "both drew before the kill");

    let config = Config::load(Path::new(&config_path)).unwrap();
    let host = Host::open(&config).unwrap_or_else(|e| panic!("recovery refused: {e}"));
    for (pool, own) in [("eu", ["gold", "mud"]), ("us", ["ruby", "rock"])] {
        let engine = host.pool(pool).unwrap();
        let state = engine.state().unwrap();
        let last = acked[pool].last().unwrap().0;
        assert!(state.last_request_id.0 >= last, "{pool}: acknowledged {last} lost");
        let ids: Vec<&str> = state.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, own, "{pool} holds only its own items");
        // Its stock fell by at least what it acknowledged.
        let first = &state.items[0];
        let taken = acked[pool].iter().filter(|(_, i)| i == own[0]).count() as i64;
        assert!(100_000 - first.quantity.to_i64() >= taken, "{pool}: {first:?} vs {taken}");
        // And it goes on from there.
        let mut client = engine.client().unwrap();
        assert_eq!(client.draw().unwrap().request_id.0, state.last_request_id.0 + 1);
    }
    for (pool, result) in host.shutdown() {
        result.unwrap_or_else(|e| panic!("{pool}: {e}"));
    }
    // The logs agree with what was acknowledged, draw by draw.
    for pool in ["eu", "us"] {
        let run = rewardpool(
            dir.path(),
            &["wal", "dump", "--json", "--pool", pool, "--config", &config_path],
        );
        assert_eq!(run.code, Some(0), "{run:?}");
        let logged: HashMap<u64, String> = run
            .stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["type"] == "draw")
            .map(|v| (v["request_id"].as_u64().unwrap(), v["item"].as_str().unwrap_or("").into()))
            .collect();
        let first = logged.keys().min().copied().unwrap_or(u64::MAX);
        for (id, item) in acked[pool].iter().filter(|(id, _)| *id >= first) {
            assert_eq!(logged.get(id), Some(item), "{pool}: acknowledged {id} not logged as such");
        }
    }
}

#[test]
fn the_pools_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pools.yaml");
    let config = Config::load(&path).unwrap();
    assert_eq!(config.pool_names().collect::<Vec<_>>(), ["banner", "event"]);
    assert_eq!(config.pools[1].wal.durability, rewardpool::Durability::Sync);
    assert_eq!(config.pools[0].wal.durability, rewardpool::Durability::Buffered);
}

#[test]
fn configuration_pool_errors_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(two_pools(dir.path())).unwrap();
    let cases = [
        (good.replace("name: us", "name: \"u/s\""), vec!["pools[1].name", "\"u/s\"", "'_' or '-'"]),
        (good.replace("name: us", "name: eu"), vec!["pools[1].name \"eu\" is already used"]),
        (
            good.replace("  - name: us\n", "  - name: us\n    core: 4096\n"),
            vec!["pools[1] (pool \"us\"): core is 4096"],
        ),
        (
            good.replace("ruby, quantity: 100000", "ruby, quantity: -3"),
            vec!["pools[1] (pool \"us\"): catalog[0] (item \"ruby\")", "quantity is -3"],
        ),
        (format!("{good}pool:\n  catalog: []\n"), vec!["both `pool` and `pools`"]),
    ];
    for (yaml, names) in cases {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let run = rewardpool(dir.path(), &["state", "--config", path.to_str().unwrap()]);
        assert_eq!(run.code, Some(2), "{yaml}: {run:?}");
        for name in names {
            assert!(run.stderr.contains(name), "stderr should name {name:?}: {run:?}");
        }
    }
}

#[test]
fn bench_pools_reports_the_aggregate_and_each_pool() {
    let dir = tempfile::tempdir().unwrap();
    let run = rewardpool(
        dir.path(),
        &["bench", "--pools", "2", "--durability", "buffered", "--draws", "20000", "--json"],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let v = json(&run);
    assert_eq!(v["pools"], 2);
    assert_eq!(v["producers"], 2, "one producer per pool by default");
    assert_eq!(v["draws"], 20_000);
    let each: Vec<f64> =
        v["pool_draws_per_sec"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(each.len(), 2);
    assert!(each.iter().all(|x| *x > 0.0), "{v}");
    // Each pool's rate is over its own producers' time, within the run's: their sum is at
    // least the aggregate.
    let total = v["draws_per_sec"].as_f64().unwrap();
    assert!(each.iter().sum::<f64>() >= total * (1.0 - 1e-9), "{v}");
    assert!(!dir.path().join("bench-data").exists(), "the run's directories are removed");
    let run = rewardpool(dir.path(), &["bench", "--pools", "2", "--producers", "3"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("a multiple of --pools"), "{run:?}");
}

/// A pool's catalog edited after its log began: the warning's `update --apply-catalog`
/// command names the pool (`--pool`), and running it exactly as printed applies the change to
/// that pool only.
#[test]
fn the_catalog_hint_names_the_pool_and_works_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_pools(dir.path());
    let run =
        rewardpool(dir.path(), &["draw", "--pool", "us", "--count", "3", "--config", &config]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let yaml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        yaml.replace(
            "item_id: ruby, quantity: 100000, probability: 1",
            "item_id: ruby, quantity: 100000, probability: 9",
        ),
    )
    .unwrap();
    let run = rewardpool(dir.path(), &["state", "--pool", "us", "--config", &config]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let hint = run
        .stderr
        .lines()
        .find_map(|l| {
            let at = l.find("rewardpool update --apply-catalog")?;
            l[at..].split('`').next().map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no hint: {run:?}"));
    assert!(hint.ends_with("--pool us"), "{hint}");
    let args: Vec<&str> = hint.split_whitespace().skip(1).collect();
    let run = rewardpool(dir.path(), &args);
    assert_eq!(run.code, Some(0), "{hint}: {run:?}");
    let state = |pool: &str| {
        let run = rewardpool(dir.path(), &["state", "--json", "--pool", pool, "--config", &config]);
        assert_eq!(run.code, Some(0), "{run:?}");
        assert!(run.stderr.is_empty(), "applied, nothing to report: {run:?}");
        json(&run)
    };
    assert_eq!(state("us")["items"][0]["weight"], 9);
    assert_eq!(state("eu")["items"][0]["weight"], 1);
}
