//! Fenwick selector: sample at 6 / 100 / 10k / 1M items, point update at 100 / 1M items.
//! Baseline: the bounded RNG draw alone (part of every sample).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rewardpool::pool::Selector;
use rewardpool::Rng;

fn weights(n: usize) -> Vec<u64> {
    let rng = Rng::from_seed(1);
    (0..n as u64).map(|i| 1 + rng.below(1_000, i)).collect()
}

fn sample(c: &mut Criterion) {
    let mut g = c.benchmark_group("selector/sample");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_rng_below", |b| {
        let rng = Rng::from_seed(7);
        let mut n = 0_u64;
        b.iter(|| {
            n += 1;
            black_box(rng.below(black_box(1_000_000), n))
        });
    });
    for n in [6, 100, 10_000, 1_000_000] {
        let sel = Selector::new(&weights(n), n);
        let total = sel.total();
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            let rng = Rng::from_seed(7);
            let mut n = 0_u64;
            b.iter(|| {
                n += 1;
                black_box(sel.sample(rng.below(total, n)))
            });
        });
    }
    g.finish();
}

fn update(c: &mut Criterion) {
    let mut g = c.benchmark_group("selector/update");
    g.throughput(Throughput::Elements(1));
    for n in [100, 1_000_000] {
        let mut sel = Selector::new(&weights(n), n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            let rng = Rng::from_seed(9);
            let mut draw = 0_u64;
            // A random position to a new weight (never equal to the old one: no early return).
            let mut flip = 0_u64;
            b.iter(|| {
                flip ^= 1;
                draw += 1;
                let i = rng.below(n as u64, draw) as usize;
                sel.set(black_box(i), 2_000 + flip);
            });
        });
    }
    g.finish();
}

criterion_group!(benches, sample, update);
criterion_main!(benches);
