//! Idempotency keys (SPEC §1.11): a draw or pull with a key returns the original outcomes
//! when retried with the same count (same request ids, same items, flagged replayed), a
//! different count is a conflict naming the key, a retry racing its original draws once,
//! the window is bounded (eviction, expiry) and survives rotations and restarts.
//!
//! The log carries each key in the batch frame of its draws (`Record::Key`), and recovery
//! rebuilds the window from the snapshot's copy plus those records (`Pool::replay_key`), so
//! replays also survive a restart, a crash and rotations.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use rewardpool::engine::{Clock, CorePin};
use rewardpool::journal::testing::FailingJournal;
use rewardpool::pool::KeyWindow;
use rewardpool::storage::{FaultyStorage, Storage};
use rewardpool::store::{open_engine_on, Durability};
use rewardpool::{DrawError, Engine, EngineConfig, ItemSpec, MemoryJournal, Outcome, Pool, Rng};

use crate::recovery::{catalog, wal};

const KEY: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;

fn unpinned() -> EngineConfig {
    EngineConfig { core: CorePin::Unpinned, ..EngineConfig::default() }
}

fn memory_engine(config: EngineConfig) -> Engine {
    let pool = Pool::new(&unlimited(), Rng::from_seed(5)).unwrap();
    Engine::start(pool, MemoryJournal::new(), config).unwrap()
}

fn unlimited() -> Vec<ItemSpec> {
    vec![ItemSpec::new("gold", -1, 1), ItemSpec::new("silver", -1, 3), ItemSpec::new("mud", -1, 6)]
}

/// (request id, item index) of each outcome.
type Summary = Vec<(u64, Option<u32>)>;

/// The [`Summary`] of `outcomes`.
fn summary(outcomes: &[Outcome]) -> Summary {
    outcomes.iter().map(|o| (o.request_id.0, o.item.map(|i| i.0))).collect()
}

fn pull(client: &mut rewardpool::Client, len: u32, key: u128) -> (Vec<Outcome>, bool) {
    let pull = client.pull_keyed(len, key).unwrap();
    let replayed = pull.replayed();
    let outcomes: Vec<Outcome> = pull.collect();
    assert!(outcomes.iter().all(|o| o.replayed == replayed));
    (outcomes, replayed)
}

#[test]
fn a_retry_returns_the_original_outcomes_and_draws_nothing() {
    let engine = memory_engine(unpinned());
    let mut client = engine.client().unwrap();
    client.draw().unwrap();
    let (first, replayed) = pull(&mut client, 10, KEY);
    assert!(!replayed);
    assert_eq!(first[0].request_id.0, 2);
    let (again, replayed) = pull(&mut client, 10, KEY);
    assert!(replayed, "the retry is flagged replayed");
    assert_eq!(summary(&again), summary(&first));
    // A single keyed draw, and its retry (also as a pull of one: the same count).
    let one = client.draw_keyed(KEY + 1).unwrap();
    assert!(!one.replayed);
    let retry = client.draw_keyed(KEY + 1).unwrap();
    assert_eq!((retry.request_id, retry.item, retry.replayed), (one.request_id, one.item, true));
    let (as_pull, replayed) = pull(&mut client, 1, KEY + 1);
    assert!(replayed);
    assert_eq!(summary(&as_pull), summary(&[one]));
    // Nothing new was drawn: the next draw follows the original ones.
    assert_eq!(client.draw().unwrap().request_id.0, one.request_id.0 + 1);
    // Through drain: a replayed pull delivers its n outcomes under its ticket.
    let ticket = client.try_pull_keyed(10, KEY).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 10 {
        client.drain(|id, r| seen.push((id, r.unwrap())));
    }
    assert!(seen.iter().all(|(id, o)| *id == ticket.id() && o.replayed));
    let drained: Vec<Outcome> = seen.iter().map(|(_, o)| *o).collect();
    assert_eq!(summary(&drained), summary(&first));
    drop(client);
    assert_eq!(engine.shutdown().unwrap().last_request_id.0, one.request_id.0 + 1);
}

#[test]
fn the_same_key_with_another_count_is_a_conflict_naming_the_key() {
    let engine = memory_engine(unpinned());
    let mut client = engine.client().unwrap();
    pull(&mut client, 10, KEY);
    let e = client.pull_keyed(5, KEY).unwrap_err();
    assert_eq!(e, DrawError::KeyConflict { key: KEY, len: 5, original: 10 });
    let message = e.to_string();
    assert!(message.contains("0123456789abcdeffedcba9876543210"), "{message}");
    assert!(message.contains("10") && message.contains('5'), "{message}");
    let e = client.draw_keyed(KEY).unwrap_err();
    assert_eq!(e, DrawError::KeyConflict { key: KEY, len: 1, original: 10 });
    // Through drain: one error per draw asked for.
    let _ticket = client.try_pull_keyed(3, KEY).unwrap();
    let mut errors = Vec::new();
    while errors.len() < 3 {
        client.drain(|_, r| errors.push(r.unwrap_err()));
    }
    assert!(errors.iter().all(|e| *e == DrawError::KeyConflict { key: KEY, len: 3, original: 10 }));
    // The original still replays, and nothing was drawn for the conflicts.
    assert!(pull(&mut client, 10, KEY).1);
    drop(client);
    assert_eq!(engine.shutdown().unwrap().last_request_id.0, 10);
}

/// Retries racing their original from many threads, while the journal holds every group
/// (the original is in flight, not durable): one draw, every caller the same outcomes,
/// all acknowledged once the original's group is durable.
#[test]
fn a_retry_racing_its_original_draws_once() {
    const THREADS: usize = 6;
    let (journal, switch) = FailingJournal::new();
    let pool = Pool::new(&unlimited(), Rng::from_seed(9)).unwrap();
    let engine = Engine::start(pool, journal, unpinned()).unwrap();
    switch.hold(true);
    let barrier = Barrier::new(THREADS);
    let results: Vec<(Summary, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    let mut client = engine.client().unwrap();
                    barrier.wait();
                    let ticket = client.try_pull_keyed(10, KEY).unwrap();
                    client.flush();
                    let pull = client.wait_pull(ticket).unwrap();
                    let replayed = pull.replayed();
                    (summary(&pull.collect::<Vec<_>>()), replayed)
                })
            })
            .collect();
        // Every request reaches the core while nothing is durable, then the hold ends.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while engine.state().unwrap().last_request_id.0 < 10 {
            assert!(std::time::Instant::now() < deadline, "the original was never served");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(30));
        switch.hold(false);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let originals = results.iter().filter(|(_, replayed)| !replayed).count();
    assert_eq!(originals, 1, "exactly one request drew");
    assert!(results.iter().all(|(outcomes, _)| *outcomes == results[0].0));
    assert_eq!(results[0].0.iter().map(|o| o.0).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert_eq!(engine.shutdown().unwrap().last_request_id.0, 10, "drawn once");
}

#[test]
fn the_oldest_key_is_evicted_at_the_bound() {
    let window = KeyWindow { keys: 4, hours: 24 };
    let engine = memory_engine(EngineConfig { idempotency: window, ..unpinned() });
    let mut client = engine.client().unwrap();
    let firsts: Vec<Outcome> = (1..=5).map(|k| client.draw_keyed(k).unwrap()).collect();
    assert!(firsts.iter().all(|o| !o.replayed));
    // Keys 2..=5 are kept, key 1 was evicted: it runs as a new request.
    let five = client.draw_keyed(5).unwrap();
    assert_eq!((five.request_id, five.replayed), (firsts[4].request_id, true));
    let one = client.draw_keyed(1).unwrap();
    assert!(!one.replayed);
    assert_eq!(one.request_id.0, 6);
    // Inserting key 1 again evicted key 2.
    assert!(!client.draw_keyed(2).unwrap().replayed);
    assert!(client.draw_keyed(5).unwrap().replayed);
}

#[test]
fn an_expired_key_runs_as_a_new_request() {
    let clock = Clock::manual(1_800_000_000);
    let window = KeyWindow { keys: 100, hours: 1 };
    let config = EngineConfig { idempotency: window, clock: clock.clone(), ..unpinned() };
    let engine = memory_engine(config);
    let mut client = engine.client().unwrap();
    let (original, _) = pull(&mut client, 3, KEY);
    clock.advance(3599);
    let (again, replayed) = pull(&mut client, 3, KEY);
    assert!(replayed, "kept for an hour");
    assert_eq!(summary(&again), summary(&original));
    clock.advance(1);
    // Expired: another count is no conflict, it is a new request (and is kept from now).
    let (fresh, replayed) = pull(&mut client, 2, KEY);
    assert!(!replayed);
    assert_eq!(fresh[0].request_id.0, 4);
    assert!(pull(&mut client, 2, KEY).1);
}

/// Keyed pulls, then enough draws to rotate past the retention (their segments deleted),
/// then a restart: the keys replay from the snapshot's window.
#[test]
fn keys_replay_from_the_snapshot_window_after_rotations_and_a_restart() {
    let storage = FaultyStorage::new();
    let options = wal(Durability::Buffered, 16 << 10);
    let open = || {
        open_engine_on(Arc::new(storage.clone()), &catalog(), &options, unpinned(), Some(3))
            .unwrap()
    };
    let engine = open();
    let mut client = engine.client().unwrap();
    let (original, _) = pull(&mut client, 10, KEY);
    let single = client.draw_keyed(KEY + 1).unwrap();
    // About 170 pulls fill a 16 KiB segment (one group each); retention keeps a few.
    for _ in 0..2_000 {
        assert_eq!(client.pull(20).unwrap().len(), 20);
    }
    drop(client);
    engine.shutdown().unwrap();
    assert!(
        !storage.list().unwrap().iter().any(|n| n == "wal.000000"),
        "the first segment was not retired"
    );
    let engine = open();
    let mut client = engine.client().unwrap();
    let (again, replayed) = pull(&mut client, 10, KEY);
    assert!(replayed);
    assert_eq!(summary(&again), summary(&original));
    let retry = client.draw_keyed(KEY + 1).unwrap();
    assert_eq!(
        (retry.request_id, retry.item, retry.replayed),
        (single.request_id, single.item, true)
    );
    assert_eq!(
        client.pull_keyed(3, KEY).unwrap_err(),
        DrawError::KeyConflict { key: KEY, len: 3, original: 10 }
    );
}

/// A keyed pull, a clean restart (the key is only in the log's newest segment, after its
/// snapshot): the retry replays. Needs recovery to read keys from the log.
#[test]
fn keys_replay_after_a_restart() {
    let storage = FaultyStorage::new();
    let options = wal(Durability::Sync, 1 << 20);
    let open = || {
        open_engine_on(Arc::new(storage.clone()), &catalog(), &options, unpinned(), Some(4))
            .unwrap()
    };
    let engine = open();
    let mut client = engine.client().unwrap();
    let (original, _) = pull(&mut client, 10, KEY);
    drop(client);
    engine.shutdown().unwrap();
    let engine = open();
    let mut client = engine.client().unwrap();
    let (again, replayed) = pull(&mut client, 10, KEY);
    assert!(replayed);
    assert_eq!(summary(&again), summary(&original));
    assert_eq!(client.draw().unwrap().request_id.0, 11, "nothing new was drawn");
}

/// A keyed pull, then a crash (power loss keeps what was synced): the acknowledged key
/// replays after recovery. Needs recovery to read keys from the log.
#[test]
fn keys_replay_after_a_crash() {
    let storage = FaultyStorage::new();
    let options = wal(Durability::Sync, 1 << 20);
    let engine =
        open_engine_on(Arc::new(storage.clone()), &catalog(), &options, unpinned(), Some(4))
            .unwrap();
    let mut client = engine.client().unwrap();
    let (original, _) = pull(&mut client, 10, KEY);
    let image = storage.crash(rewardpool::storage::CrashMode::PowerLoss);
    drop(client);
    drop(engine);
    let engine =
        open_engine_on(Arc::new(image), &catalog(), &options, unpinned(), Some(5)).unwrap();
    let mut client = engine.client().unwrap();
    let (again, replayed) = pull(&mut client, 10, KEY);
    assert!(replayed);
    assert_eq!(summary(&again), summary(&original));
}

const HEX: &str = "0123456789abcdeffedcba9876543210";

/// A config with small segments (a few hundred draws each) and a catalog that never runs
/// out, in a fresh directory.
fn small_segments() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let yaml = "working_dir: data\npool:\n  catalog:\n    - { item_id: gold, quantity: -1, \
                probability: 1 }\n    - { item_id: mud, quantity: -1, probability: 3 }\nwal:\n  \
                max_file_size_kb: 16\n  flush_after_n_draw: 100\n  durability: buffered\n";
    std::fs::write(&path, yaml).unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

fn keyed_draw(dir: &std::path::Path, config: &str) -> crate::cli::Run {
    let args = ["draw", "--config", config, "--pull", "3", "--key", HEX, "--json"];
    let run = crate::cli::rewardpool(dir, &args);
    assert_eq!(run.code, Some(0), "{run:?}");
    run
}

/// `draw --pull 3 --key HEX --json` prints its three outcomes with `"replayed":false`.
#[test]
fn cli_key_prints_the_outcomes() {
    let (dir, config) = small_segments();
    let first = keyed_draw(dir.path(), &config);
    let lines = json_lines(&first.stdout);
    assert_eq!(lines.len(), 3);
    for (i, line) in lines.iter().enumerate() {
        let obj = line.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 3, "{line}");
        assert_eq!(obj["request_id"].as_u64(), Some(i as u64 + 1));
        assert!(obj["item"].is_string());
        assert_eq!(obj["replayed"], serde_json::Value::Bool(false));
    }
    // Unkeyed lines keep their shape (no "replayed").
    let plain = crate::cli::rewardpool(dir.path(), &["draw", "--config", &config, "--json"]);
    assert!(!plain.stdout.contains("replayed"), "{plain:?}");
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"))).collect()
}

/// `draw --pull 3 --key HEX`, draws that rotate segments (in a later run), the same command
/// again: the same lines with `"replayed":true`; another count is a conflict. The first
/// run's key reaches the later run only through the log.
#[test]
fn cli_key_replays_after_rotations() {
    let (dir, config) = small_segments();
    let first = keyed_draw(dir.path(), &config);
    assert_eq!(first.stdout.lines().count(), 3);
    assert!(first.stdout.lines().all(|l| l.ends_with(",\"replayed\":false}")), "{first:?}");
    let fill =
        crate::cli::rewardpool(dir.path(), &["draw", "--config", &config, "--count", "2000"]);
    assert_eq!(fill.code, Some(0), "{fill:?}");
    let again = keyed_draw(dir.path(), &config);
    let want = first.stdout.replace("\"replayed\":false", "\"replayed\":true");
    assert_eq!(again.stdout, want);
    assert!(again.stderr.contains(HEX) && again.stderr.contains("original"), "{again:?}");
    // Another count with the same key: a conflict naming the key, exit 2, nothing drawn.
    let args = ["draw", "--config", &config, "--pull", "4", "--key", HEX];
    let conflict = crate::cli::rewardpool(dir.path(), &args);
    assert_eq!(conflict.code, Some(2), "{conflict:?}");
    assert!(conflict.stderr.contains(HEX) && conflict.stderr.contains("3 draws"), "{conflict:?}");
    assert!(conflict.stdout.is_empty());
}

/// The same, run twice in a row: the key is only in the log's newest segment.
#[test]
fn cli_key_twice_replays() {
    let (dir, config) = small_segments();
    let first = keyed_draw(dir.path(), &config);
    let again = keyed_draw(dir.path(), &config);
    assert_eq!(again.stdout, first.stdout.replace("\"replayed\":false", "\"replayed\":true"));
}

#[test]
fn cli_refuses_a_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "abc",
        "0123456789abcdeffedcba987654321",
        "0123456789abcdeffedcba98765432100",
        "0123456789abcdeffedcba987654321g",
        "00000000000000000000000000000000",
    ] {
        let run = crate::cli::rewardpool(dir.path(), &["draw", "--key", bad, "--data-dir", "d"]);
        assert_eq!(run.code, Some(2), "{bad}: {run:?}");
        assert!(run.stderr.contains("--key"), "{bad}: {run:?}");
        assert!(
            run.stderr.contains("32 hex digits") || run.stderr.contains("all zeros"),
            "{run:?}"
        );
    }
    let run = crate::cli::rewardpool(
        dir.path(),
        &["draw", "--key", HEX, "--count", "2", "--data-dir", "d"],
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("--count 1"), "{run:?}");
    assert!(!dir.path().join("d").exists(), "nothing was opened");
}

/// `bench --keys`: every request carries a fresh key; the run completes and its JSON says
/// the pull size.
#[test]
fn bench_with_keys_on_every_pull() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["bench", "--json", "--draws", "20000", "--pull", "10", "--keys", "--seed", "1"];
    let run = crate::cli::rewardpool(dir.path(), &args);
    assert_eq!(run.code, Some(0), "{run:?}");
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(v["draws"].as_u64(), Some(20_000), "{v}");
    assert_eq!(v["pull"].as_u64(), Some(10), "{v}");
    assert!(v.get("keys").is_none(), "the JSON shape gains only pull: {v}");
}

/// A real `rewardpool draw --pull 10 --key K` SIGKILLed at a random moment (before, during
/// or after its pull became durable), then run again to the end, then once more, for a fresh
/// key per trial and both durable modes: a pull the killed run acknowledged (printed) is
/// replayed with the same ids and items; one it did not is either replayed whole or drawn
/// once; the third run replays the second; and the log holds each key exactly once, with its
/// pull whole. `REWARDPOOL_CRASH_TRIALS=N` for more trials (default 6 per mode).
#[test]
fn a_keyed_pull_killed_with_sigkill_is_replayed_or_drawn_once() {
    use std::collections::HashMap;
    use std::process::{Command, Stdio};

    let trials: u64 =
        std::env::var("REWARDPOOL_CRASH_TRIALS").ok().and_then(|t| t.parse().ok()).unwrap_or(6);
    for durability in ["buffered", "sync"] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yaml");
        let yaml = format!(
            "working_dir: \"{}\"\npool:\n  catalog:\n    - {{ item_id: gold, quantity: 100000, \
             probability: 1 }}\n    - {{ item_id: mud, quantity: -1, probability: 3 }}\nwal:\n  \
             max_file_size_kb: 4096\n  durability: {durability}\n",
            dir.path().join("data").display()
        );
        std::fs::write(&config, yaml).unwrap();
        let config = config.to_str().unwrap().to_owned();
        let mut seed = 0x9e37_79b9_u64 ^ trials;
        let mut expected: HashMap<String, Vec<(u64, String)>> = HashMap::new();
        for trial in 0..trials {
            let key = format!("{:032x}", 0xabc0_0000_u128 + u128::from(trial) + 1);
            let args = ["draw", "--config", &config, "--pull", "10", "--key", &key, "--json"];
            let mut child = Command::new(env!("CARGO_BIN_EXE_rewardpool"))
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            std::thread::sleep(Duration::from_millis((seed >> 33) % 120));
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            let killed: Vec<(u64, String, bool)> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .map(|v| {
                    let id = v["request_id"].as_u64().unwrap();
                    (id, v["item"].as_str().unwrap().to_owned(), v["replayed"].as_bool().unwrap())
                })
                .collect();
            let parse = |run: &crate::cli::Run| -> Vec<(u64, String, bool)> {
                assert_eq!(run.code, Some(0), "{run:?}");
                json_lines(&run.stdout)
                    .iter()
                    .map(|v| {
                        let id = v["request_id"].as_u64().unwrap();
                        let item = v["item"].as_str().unwrap().to_owned();
                        (id, item, v["replayed"].as_bool().unwrap())
                    })
                    .collect()
            };
            let second = parse(&crate::cli::rewardpool(dir.path(), &args));
            assert_eq!(second.len(), 10, "trial {trial}: {second:?}");
            let replayed = second[0].2;
            assert!(second.iter().all(|o| o.2 == replayed), "all or none replayed: {second:?}");
            for (i, o) in second.iter().enumerate() {
                assert_eq!(o.0, second[0].0 + i as u64, "consecutive ids: {second:?}");
            }
            // What the killed run printed was acknowledged: the retry gives exactly that.
            for (k, s) in killed.iter().zip(&second) {
                assert!(replayed, "trial {trial}: acknowledged {killed:?}, then drawn anew");
                assert_eq!((k.0, &k.1, k.2), (s.0, &s.1, false), "trial {trial}");
            }
            let third = parse(&crate::cli::rewardpool(dir.path(), &args));
            let want: Vec<(u64, String, bool)> =
                second.iter().map(|(id, item, _)| (*id, item.clone(), true)).collect();
            assert_eq!(third, want, "trial {trial}: the third run replays the second");
            expected.insert(key, second.into_iter().map(|(id, item, _)| (id, item)).collect());
        }
        // The log: each key once, its ten draws right after it.
        let dump =
            crate::cli::rewardpool(dir.path(), &["wal", "dump", "--json", "--config", &config]);
        assert_eq!(dump.code, Some(0), "{dump:?}");
        let lines = json_lines(&dump.stdout);
        let mut seen: HashMap<String, Vec<(u64, String)>> = HashMap::new();
        for (at, line) in lines.iter().enumerate() {
            if line["type"] != "key" {
                continue;
            }
            let key = line["key"].as_str().unwrap().to_owned();
            assert_eq!(line["count"].as_u64(), Some(10), "{line}");
            let draws: Vec<(u64, String)> = lines[at + 1..]
                .iter()
                .filter(|l| l["type"] == "draw")
                .take(10)
                .map(|l| {
                    (l["request_id"].as_u64().unwrap(), l["item"].as_str().unwrap().to_owned())
                })
                .collect();
            assert_eq!(draws[0].0, line["request_id"].as_u64().unwrap(), "{line}");
            assert!(seen.insert(key.clone(), draws).is_none(), "{durability}: key {key} twice");
        }
        assert_eq!(seen, expected, "{durability}: the log's keyed pulls are the acknowledged ones");
    }
}
