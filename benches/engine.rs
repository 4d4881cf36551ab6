//! End to end: pipelined draws through `Engine` + `Client` + `MemoryJournal` (one producer
//! thread, the pinned core thread), at 100 and 10k items, with 64 and 256 draws in flight.
//! Baseline: `Pool::draw` alone on one thread (selection without the engine).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rewardpool::engine::CorePin;
use rewardpool::{Client, DrawError, Engine, EngineConfig, ItemSpec, MemoryJournal, Pool, Rng};

fn catalog(n: usize) -> Vec<ItemSpec> {
    (0..n).map(|i| ItemSpec::new(&format!("item{i}"), -1, 1 + (i as u32 % 97))).collect()
}

/// `iters` draws with up to `window` in flight; time until the last outcome is drained.
fn pipelined(client: &mut Client, iters: u64, window: u64) -> Duration {
    let start = Instant::now();
    let mut submitted = 0;
    let mut delivered = 0;
    while delivered < iters {
        while submitted < iters && client.outstanding() < window {
            match client.try_draw() {
                Ok(_ticket) => submitted += 1,
                Err(DrawError::Full) => break,
                Err(e) => panic!("{e}"),
            }
        }
        delivered += client.drain(|_, r| {
            black_box(r.expect("draw"));
        }) as u64;
    }
    start.elapsed()
}

fn end_to_end(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine/pipelined");
    g.throughput(Throughput::Elements(1));
    for items in [100, 10_000] {
        let mut pool = Pool::new(&catalog(items), Rng::from_seed(3)).expect("catalog");
        g.bench_with_input(BenchmarkId::new("baseline_pool_draw", items), &items, |b, _| {
            b.iter(|| black_box(pool.draw()))
        });
        let pool = Pool::new(&catalog(items), Rng::from_seed(3)).expect("catalog");
        let config =
            EngineConfig { ring_capacity: 256, core: CorePin::Auto, ..EngineConfig::default() };
        let engine = Engine::start(pool, MemoryJournal::new(), config).expect("engine");
        let mut client = engine.client().expect("client");
        for window in [64, 256] {
            g.bench_with_input(
                BenchmarkId::new(format!("items{items}"), format!("window{window}")),
                &window,
                |b, &w| b.iter_custom(|n| pipelined(&mut client, n, w)),
            );
        }
        drop(client);
        engine.shutdown().expect("shutdown");
    }
    g.finish();
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
