//! Recovery replay speed: builds a log of `REPLAY_DRAWS` draws (default 10 M) in one
//! segment on the real file system (a temp dir under `target/`, never tmpfs), then times
//! `recovery::recover` over it five times and prints the median frames per second.
//!
//! `cargo bench --bench replay` (plain main, not criterion: one big measurement).

use std::sync::Arc;
use std::time::Instant;

use rewardpool::engine::CorePin;
use rewardpool::recovery::recover;
use rewardpool::storage::OsStorage;
use rewardpool::store::{open_engine_on, Durability, WalOptions};
use rewardpool::{EngineConfig, ItemSpec};

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        // `cargo test --benches` runs benches once as tests: nothing to list or check here.
        return;
    }
    let draws: u64 =
        std::env::var("REPLAY_DRAWS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let items: Vec<ItemSpec> =
        (1..=100).map(|i| ItemSpec::new(&format!("item{i}"), -1, i)).collect();
    let tmp = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR").to_owned() + "/target").unwrap();
    let storage = Arc::new(OsStorage::new(tmp.path()).unwrap());
    // One segment big enough for every frame: replay covers the newest segment.
    let segment = (draws * 32 + draws / 200 * 32 + (64 << 20)).next_multiple_of(1 << 20);
    let wal = WalOptions {
        durability: Durability::Buffered,
        segment_size_bytes: segment,
        ..WalOptions::default()
    };
    let config =
        EngineConfig { core: CorePin::Unpinned, ring_capacity: 4096, ..EngineConfig::default() };
    let build = Instant::now();
    let engine = open_engine_on(storage.clone(), &items, &wal, config, Some(1)).unwrap();
    let mut client = engine.client().unwrap();
    let mut done = 0_u64;
    let mut sent = 0_u64;
    while done < draws {
        while sent < draws && client.try_draw().is_ok() {
            sent += 1;
        }
        done += client.drain(|_, r| {
            r.unwrap();
        }) as u64;
    }
    drop(client);
    engine.shutdown().unwrap();
    eprintln!("built a log of {draws} draws in {:.2?}", build.elapsed());
    let mut rates = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let r = recover(&*storage, &items).unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(r.state.last_request_id.0, draws);
        rates.push(r.frames_replayed as f64 / secs);
        eprintln!(
            "replayed {} frames in {:.3} s: {:.1} M frames/s",
            r.frames_replayed,
            secs,
            r.frames_replayed as f64 / secs / 1e6
        );
    }
    rates.sort_by(f64::total_cmp);
    println!("replay: median {:.1} M frames/s over 5 runs ({draws} draws, one segment, file read included)", rates[2] / 1e6);
}
