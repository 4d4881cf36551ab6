//! Process crash: a child `rewardpool draw` prints every acknowledged outcome; the test
//! kills it with SIGKILL at a random moment, runs and kills a second one in the same
//! directory (it continues in the crashed segment), recovers, and checks that nothing
//! acknowledged was lost and no id was acknowledged twice. 30 trials by default; `REWARDPOOL_CRASH_TRIALS=N` for more, `SEED=S` to replay.
//! The same campaign with `draw --pull 10` also checks that every acknowledged pull is in
//! the log whole and that the log (`wal dump`) holds no part of a pull.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rewardpool::inspect;
use rewardpool::storage::OsStorage;
use rewardpool::wal::frame::Record;

/// The binary under test: `REWARDPOOL_BIN` (tools/crash-campaign.sh points it at a release
/// build), else the one cargo built with the tests.
pub(crate) fn bin() -> std::path::PathBuf {
    std::env::var_os("REWARDPOOL_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_rewardpool").into(), std::path::PathBuf::from)
}

pub(crate) const ITEMS: [(&str, i64, u32); 4] =
    [("diamond", 2_000, 10), ("gold", 20_000, 20), ("silver", 200_000, 30), ("mud", -1, 40)];

pub(crate) fn write_config(dir: &Path, segment_kb: u64, durability: &str) -> std::path::PathBuf {
    let mut yaml = format!("working_dir: \"{}\"\npool:\n  catalog:\n", dir.join("data").display());
    for (id, q, w) in ITEMS {
        yaml.push_str(&format!("    - {{ item_id: \"{id}\", quantity: {q}, probability: {w} }}\n"));
    }
    yaml.push_str(&format!(
        "wal:\n  max_file_size_kb: {segment_kb}\n  flush_after_n_draw: 200\n  durability: {durability}\n"
    ));
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// One acknowledged outcome, as `draw --json` printed it.
pub(crate) struct Acked {
    pub(crate) request_id: u64,
    pub(crate) item: Option<String>,
}

pub(crate) fn parse(line: &str) -> Option<Acked> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(Acked {
        request_id: v.get("request_id")?.as_u64()?,
        item: v.get("item")?.as_str().map(str::to_owned),
    })
}

/// Runs `draw` (with `extra` arguments) for `run_for`, SIGKILLs it, returns every complete
/// line it printed.
pub(crate) fn draw_then_kill(config: &Path, run_for: Duration, extra: &[&str]) -> Vec<Acked> {
    let mut child = Command::new(bin())
        .args(["draw", "--count", "100000000", "--json", "--config"])
        .arg(config)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rewardpool draw");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            // Only complete lines count: a partial line was cut by the kill.
            if line.ends_with('\n') {
                if let Some(a) = parse(line.trim_end()) {
                    lines.push(a);
                }
            }
            line.clear();
        }
        lines
    });
    let start = Instant::now();
    while start.elapsed() < run_for {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("draw exited early ({status}): {err}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    reader.join().unwrap()
}

pub(crate) fn check_trial(dir: &Path, config: &Path, acked: &[Acked], trial: u64) {
    let Ok(storage) = OsStorage::existing(&dir.join("data")) else {
        // Killed before it created its data directory (a loaded machine): nothing was
        // acknowledged, and there is nothing to recover.
        assert!(acked.is_empty(), "trial {trial}: acknowledged draws but no data directory");
        return;
    };
    // Every frame recovery accepts, by request id.
    let mut logged: HashMap<u64, Option<u32>> = HashMap::new();
    inspect::dump(&storage, false, |info| {
        if let Record::Draw { request_id, item } = info.record {
            logged.insert(request_id, item);
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("trial {trial}: recovery refused after SIGKILL: {e}"));
    let catalog: Vec<rewardpool::ItemSpec> =
        ITEMS.iter().map(|(id, q, w)| rewardpool::ItemSpec::new(id, *q, *w)).collect();
    let state = rewardpool::store::read_state_on(&storage, &catalog).unwrap();
    let names: Vec<&str> = state.items.iter().map(|i| i.id.as_str()).collect();
    let first_logged = logged.keys().min().copied().unwrap_or(u64::MAX);
    let mut taken: HashMap<&str, i64> = HashMap::new();
    for a in acked {
        assert!(
            a.request_id <= state.last_request_id.0,
            "trial {trial}: acked id {} lost",
            a.request_id
        );
        if let Some(id) = &a.item {
            *taken.entry(id.as_str()).or_default() += 1;
        }
        if a.request_id >= first_logged {
            // Still in a retained segment: the log holds it with the same item.
            let item = logged.get(&a.request_id).unwrap_or_else(|| {
                panic!("trial {trial}: acknowledged request {} is not in the log", a.request_id)
            });
            let logged_name = item.map(|i| names[i as usize]);
            assert_eq!(logged_name, a.item.as_deref(), "trial {trial}: request {}", a.request_id);
        }
    }
    for (id, initial, _) in ITEMS {
        let q = state.items.iter().find(|i| i.id == id).unwrap().quantity.to_i64();
        if initial >= 0 {
            assert!(q >= 0, "trial {trial}: {id} below zero");
            let acked_taken = taken.get(id).copied().unwrap_or(0);
            assert!(
                initial - q >= acked_taken,
                "trial {trial}: {id}: {} logged < {acked_taken} acked",
                initial - q
            );
        } else {
            assert_eq!(q, -1);
        }
    }
    // A restart keeps request ids increasing above every acknowledged one.
    let out = Command::new(bin())
        .args(["draw", "--count", "3", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trial {trial}: restart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let max_acked = acked.iter().map(|a| a.request_id).max().unwrap_or(0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let a = parse(line).unwrap();
        assert!(
            a.request_id > max_acked,
            "trial {trial}: id {} after restart <= {max_acked}",
            a.request_id
        );
    }
}

/// The trials, their seed (printed; `SEED=S` replays) and a generator over it.
pub(crate) fn campaign(name: &str, trials_default: u64) -> (u64, impl FnMut() -> u64) {
    let trials: u64 = std::env::var("REWARDPOOL_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(trials_default);
    let seed: u64 = std::env::var("SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as u64
    });
    eprintln!("{name} seed: SEED={seed}");
    let mut rng = seed | 1;
    let next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    (trials, next)
}

/// Two killed runs in one fresh directory (`extra` arguments to `draw`): every line both
/// printed, each request id once.
fn two_killed_runs(
    dir: &Path,
    trial: u64,
    next: &mut impl FnMut() -> u64,
    extra: &[&str],
) -> (std::path::PathBuf, Vec<Acked>) {
    let segment_kb = if trial.is_multiple_of(2) { 4096 } else { 512 };
    let durability = if trial % 3 == 2 { "buffered" } else { "sync" };
    let config = write_config(dir, segment_kb, durability);
    let run_for = Duration::from_millis(30 + next() % 400);
    let mut acked = draw_then_kill(&config, run_for, extra);
    // A second run in the same directory recovers, continues in the crashed segment
    // (over its zeroed torn tail), and is killed too: both runs' draws must survive,
    // and no id acknowledged by the first may be acknowledged again by the second.
    acked.extend(draw_then_kill(&config, Duration::from_millis(30 + next() % 200), extra));
    let mut ids: Vec<u64> = acked.iter().map(|a| a.request_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), acked.len(), "trial {trial}: a request id acknowledged twice");
    (config, acked)
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_draw() {
    let (trials, mut next) = campaign("crash test", 30);
    let mut total_acked = 0;
    for trial in 0..trials {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let (config, acked) = two_killed_runs(tmp.path(), trial, &mut next, &[]);
        total_acked += acked.len();
        check_trial(tmp.path(), &config, &acked, trial);
    }
    assert!(total_acked > 0, "no draw was ever acknowledged");
}

/// `draw --pull 10` killed at random moments: besides everything the single-draw campaign
/// checks, every acknowledged pull (a printed line names one of its draws) is in the log
/// whole, and every group in the log ends at the end of a pull (`wal dump` never shows
/// part of one).
#[test]
fn sigkill_at_random_moments_keeps_every_acknowledged_pull_whole() {
    const PULL: u64 = 10;
    let (trials, mut next) = campaign("pull crash test", 12);
    let mut total_acked = 0;
    for trial in 0..trials {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let (config, acked) = two_killed_runs(tmp.path(), trial, &mut next, &["--pull", "10"]);
        total_acked += acked.len();
        if let Ok(storage) = OsStorage::existing(&tmp.path().join("data")) {
            let what = format!("trial {trial}");
            let logged = crate::pulls::logged_whole_pulls(&storage, PULL, &what);
            let first_logged = logged.keys().next().copied().unwrap_or(u64::MAX);
            for a in &acked {
                // Every request was a pull of 10, so pulls start at 1, 11, 21, ...
                let pull_first = (a.request_id - 1) / PULL * PULL + 1;
                for member in (pull_first..pull_first + PULL).filter(|m| *m >= first_logged) {
                    assert!(
                        logged.contains_key(&member),
                        "{what}: request {member} of acknowledged pull {pull_first} not logged"
                    );
                }
            }
        }
        check_trial(tmp.path(), &config, &acked, trial);
    }
    assert!(total_acked > 0, "no pull was ever acknowledged");
}
