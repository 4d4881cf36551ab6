//! The crash campaign (issue 13, item 5): trials that SIGKILL a real `rewardpool draw` (or
//! `update`) at a random moment, mixing single draws, pulls, keyed requests and updates in
//! both durable modes (`sync`, `buffered`), each checked by recovery: every acknowledged
//! outcome in the log with its item, no id acknowledged twice, a keyed request retried
//! after the kill answers with the acknowledged outcomes, an acknowledged update kept, and
//! a restart's ids above every acknowledged one. One summary line at the end.
//!
//! Four trials (one of each kind) in the default run; `REWARDPOOL_CAMPAIGN=N` for N,
//! `SEED=S` to replay, `REWARDPOOL_BIN` to run another build (tools/crash-campaign.sh runs
//! a release build this way).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rewardpool::storage::OsStorage;

use crate::crash::{bin, campaign, check_trial, draw_then_kill, parse, write_config, Acked};

/// Runs `rewardpool ARGS --config CONFIG`, SIGKILLs it after `after` unless it exited;
/// returns its complete stdout lines and whether it exited successfully by itself.
fn run_or_kill(config: &Path, args: &[&str], after: Duration) -> (Vec<String>, bool) {
    let mut child = Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rewardpool");
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let mut exited_ok = false;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            exited_ok = status.success();
            break;
        }
        if start.elapsed() >= after {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let text = reader.join().unwrap_or_default();
    // Only complete lines count: a partial line was cut by the kill.
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    (complete.lines().map(str::to_owned).collect(), exited_ok)
}

fn replayed(line: &str) -> Option<bool> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get("replayed")?.as_bool()
}

#[derive(Default)]
struct Tally {
    trials: [u64; 4],
    sync: u64,
    buffered: u64,
    acked: u64,
    keyed_retries: u64,
    updates_acked: u64,
}

/// Keyed requests (`--count 1 --key K --pull P`), each killed at a random moment or let
/// finish, then retried with the same key to the end: every line the first printed comes
/// back the same, flagged replayed.
fn keyed_trial(config: &Path, trial: u64, next: &mut impl FnMut() -> u64, t: &mut Tally) {
    let mut acked = Vec::new();
    for _ in 0..4 {
        let key = format!("{:016x}{:016x}", next() | 1, next());
        let pull = (1 + next() % 12).to_string();
        let args = ["draw", "--count", "1", "--json", "--key", &key, "--pull", &pull];
        let (first, _) = run_or_kill(config, &args, Duration::from_millis(next() % 150));
        let (retry, ok) = run_or_kill(config, &args, Duration::from_secs(20));
        assert!(ok, "trial {trial}: keyed retry {key} failed");
        let retry_ids: Vec<(u64, Option<String>)> =
            retry.iter().filter_map(|l| parse(l)).map(|a| (a.request_id, a.item)).collect();
        if !first.is_empty() {
            t.keyed_retries += 1;
            assert!(
                retry.iter().all(|l| replayed(l) == Some(true)),
                "trial {trial}: key {key} acknowledged, drawn again on retry: {retry:?}"
            );
            for line in &first {
                let a = parse(line).expect("a draw line");
                assert!(
                    retry_ids.contains(&(a.request_id, a.item.clone())),
                    "trial {trial}: key {key}: acknowledged {line} not replayed: {retry:?}"
                );
            }
        }
        acked.extend(retry.iter().filter_map(|l| parse(l)));
    }
    // The retries' outcomes (originals or replays) are all acknowledged.
    acked.sort_by_key(|a| a.request_id);
    acked.dedup_by_key(|a| a.request_id);
    t.acked += acked.len() as u64;
    check_trial(config.parent().expect("dir"), config, &acked, trial);
}

/// Runs the campaign: `trials` trials from `seed`'s generator; returns the summary.
fn run_campaign(trials: u64, next: &mut impl FnMut() -> u64) -> Tally {
    let mut t = Tally::default();
    for trial in 0..trials {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let dir = tmp.path();
        let kind = if trials <= 4 { trial % 4 } else { next() % 4 };
        let buffered = next() % 2 == 1;
        let segment_kb = [64, 512, 4096][(next() % 3) as usize];
        let config = write_config(dir, segment_kb, if buffered { "buffered" } else { "sync" });
        t.trials[kind as usize] += 1;
        if buffered {
            t.buffered += 1;
        } else {
            t.sync += 1;
        }
        let (run1, run2) = (20 + next() % 300, 20 + next() % 150);
        match kind {
            0 | 1 => {
                let pull = (2 + next() % 19).to_string();
                let extra: Vec<&str> = if kind == 1 { vec!["--pull", &pull] } else { vec![] };
                let mut acked = draw_then_kill(&config, Duration::from_millis(run1), &extra);
                acked.extend(draw_then_kill(
                    &config,
                    Duration::from_millis(20 + next() % 150),
                    &extra,
                ));
                let mut ids: Vec<u64> = acked.iter().map(|a| a.request_id).collect();
                ids.sort_unstable();
                ids.dedup();
                assert_eq!(ids.len(), acked.len(), "trial {trial}: an id acknowledged twice");
                t.acked += acked.len() as u64;
                check_trial(dir, &config, &acked, trial);
            }
            2 => keyed_trial(&config, trial, next, &mut t),
            _ => {
                // Draws, killed; an update of gold's weight, killed at a random moment;
                // draws again, killed: an acknowledged update is in the recovered state.
                let mut acked: Vec<Acked> =
                    draw_then_kill(&config, Duration::from_millis(run1), &[]);
                let weight = (1 + next() % 90).to_string();
                let args = ["update", "--item", "gold", "--weight", &weight];
                let (_, update_acked) =
                    run_or_kill(&config, &args, Duration::from_millis(next() % 200));
                acked.extend(draw_then_kill(&config, Duration::from_millis(run2), &[]));
                t.acked += acked.len() as u64;
                check_trial(dir, &config, &acked, trial);
                if update_acked {
                    t.updates_acked += 1;
                    let storage = OsStorage::existing(&dir.join("data")).expect("data dir");
                    let catalog: Vec<rewardpool::ItemSpec> = crate::crash::ITEMS
                        .iter()
                        .map(|(id, q, w)| rewardpool::ItemSpec::new(id, *q, *w))
                        .collect();
                    let state = rewardpool::store::read_state_on(&storage, &catalog).unwrap();
                    let gold = state.items.iter().find(|i| i.id == "gold").expect("gold");
                    assert_eq!(
                        gold.weight.to_string(),
                        weight,
                        "trial {trial}: acknowledged update of gold lost"
                    );
                }
            }
        }
    }
    t
}

#[test]
fn crash_campaign_of_sigkilled_draws_pulls_keys_and_updates() {
    let trials: u64 =
        std::env::var("REWARDPOOL_CAMPAIGN").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let (_, mut next) = campaign("crash campaign", trials);
    let start = Instant::now();
    let t = run_campaign(trials, &mut next);
    println!(
        "crash campaign: {trials} trials passed ({} single draws, {} pulls, {} keyed, {} updates; \
         {} sync, {} buffered): {} acknowledged outcomes all in the log, none twice, {} keyed \
         retries replayed, {} acknowledged updates kept, every restart's ids above; {:.0} s",
        t.trials[0],
        t.trials[1],
        t.trials[2],
        t.trials[3],
        t.sync,
        t.buffered,
        t.acked,
        t.keyed_retries,
        t.updates_acked,
        start.elapsed().as_secs_f64()
    );
    assert!(t.acked > 0, "nothing was ever acknowledged");
}
