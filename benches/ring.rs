//! The ring hand-off: rtrb push/pop of a 32-byte record across two threads, one record at a
//! time and in chunks of up to 64; and a round trip with one request outstanding, raw (two
//! rtrb rings, ping-pong) and through the engine (`Client::draw` with `MemoryJournal`).
//!
//! Cross-thread benches use `iter_custom` with a `Barrier`: time runs from the barrier to
//! the consumer's last pop. Baseline: push + pop on one thread (no hand-off).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rewardpool::engine::CorePin;
use rewardpool::{Engine, EngineConfig, ItemSpec, MemoryJournal, Pool, Rng};

/// A 32-byte record, the size of a request.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Record([u64; 4]);

const CAPACITY: usize = 512;
const CHUNK: usize = 64;

/// Producer pushes `iters` records, consumer pops them; returns the consumer's elapsed
/// time from the common start.
fn cross_thread(iters: u64, chunked: bool) -> Duration {
    let (mut tx, mut rx) = rtrb::RingBuffer::<Record>::new(CAPACITY);
    let barrier = Arc::new(Barrier::new(2));
    let consumer = {
        let barrier = Arc::clone(&barrier);
        thread::spawn(move || {
            barrier.wait();
            let start = Instant::now();
            let mut got = 0_u64;
            let mut sum = 0_u64;
            while got < iters {
                if chunked {
                    let n = rx.slots().min(CHUNK);
                    if n == 0 {
                        std::hint::spin_loop();
                        continue;
                    }
                    let chunk = rx.read_chunk(n).expect("n <= slots");
                    for r in chunk {
                        sum = sum.wrapping_add(r.0[0]);
                    }
                    got += n as u64;
                } else if let Ok(r) = rx.pop() {
                    sum = sum.wrapping_add(r.0[0]);
                    got += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
            black_box(sum);
            start.elapsed()
        })
    };
    barrier.wait();
    let mut sent = 0_u64;
    while sent < iters {
        if chunked {
            let n = (tx.slots().min(CHUNK) as u64).min(iters - sent) as usize;
            if n == 0 {
                std::hint::spin_loop();
                continue;
            }
            let chunk = tx.write_chunk_uninit(n).expect("n <= slots");
            chunk.fill_from_iter((0..n as u64).map(|k| Record([sent + k, 0, 0, 0])));
            sent += n as u64;
        } else if tx.push(Record([sent, 0, 0, 0])).is_ok() {
            sent += 1;
        } else {
            std::hint::spin_loop();
        }
    }
    consumer.join().expect("consumer")
}

fn hand_off(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring/hand_off_32B");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_same_thread", |b| {
        let (mut tx, mut rx) = rtrb::RingBuffer::<Record>::new(CAPACITY);
        b.iter(|| {
            tx.push(black_box(Record::default())).expect("room");
            black_box(rx.pop().expect("one"))
        });
    });
    g.bench_function("single", |b| b.iter_custom(|n| cross_thread(n, false)));
    g.bench_function("chunked_64", |b| b.iter_custom(|n| cross_thread(n, true)));
    g.finish();
}

/// Ping-pong: one request outstanding over two raw rtrb rings.
fn raw_round_trips(iters: u64) -> Duration {
    let (mut req_tx, mut req_rx) = rtrb::RingBuffer::<Record>::new(CAPACITY);
    let (mut resp_tx, mut resp_rx) = rtrb::RingBuffer::<Record>::new(CAPACITY);
    let barrier = Arc::new(Barrier::new(2));
    let server = {
        let barrier = Arc::clone(&barrier);
        thread::spawn(move || {
            barrier.wait();
            let mut served = 0;
            while served < iters {
                if let Ok(r) = req_rx.pop() {
                    resp_tx.push(r).expect("room");
                    served += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
        })
    };
    barrier.wait();
    let start = Instant::now();
    for i in 0..iters {
        req_tx.push(Record([i, 0, 0, 0])).expect("room");
        loop {
            if let Ok(r) = resp_rx.pop() {
                black_box(r);
                break;
            }
            std::hint::spin_loop();
        }
    }
    let elapsed = start.elapsed();
    server.join().expect("server");
    elapsed
}

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring/round_trip");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_raw_rtrb_ping_pong", |b| b.iter_custom(raw_round_trips));
    let items = [ItemSpec::new("gold", -1, 20), ItemSpec::new("mud", -1, 70)];
    let pool = Pool::new(&items, Rng::from_seed(7)).expect("catalog");
    let config = EngineConfig { core: CorePin::Auto, ..EngineConfig::default() };
    let engine = Engine::start(pool, MemoryJournal::new(), config).expect("engine");
    let mut client = engine.client().expect("client");
    g.bench_function("engine_draw_memory_journal", |b| {
        b.iter(|| black_box(client.draw().expect("draw")));
    });
    g.finish();
    drop(client);
    engine.shutdown().expect("shutdown");
}

criterion_group!(benches, hand_off, round_trip);
criterion_main!(benches);
