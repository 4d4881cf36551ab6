//! Core-side cost of idempotency keys, without the engine (no rings, no producer thread):
//! one thread running pulls of 10 on a `Pool`, keyless against keyed (a fresh key per pull,
//! touched a batch ahead as the core loop does), through a 1 M-key window already present
//! (populated before timing) so that first-touch faults are out of the picture.
//! Times are the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not wall time: the other work
//! on the shared machine then counts less.
//! Usage: keys_cost [pulls, default 4 M] [rounds, default 5]. Prints one JSON line a round.
use rewardpool::pool::{ItemSpec, KeyLookup, KeyWindow, Pool, Quantity, Rng};
use std::hint::black_box;

/// Thread CPU time (excludes time preempted by other processes on the shared machine).
#[derive(Clone, Copy)]
struct Instant(f64);
impl Instant {
    fn now() -> Instant {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Instant(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
    }
    fn elapsed(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(Instant::now().0 - self.0)
    }
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let pulls: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(4_000_000);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let catalog: Vec<ItemSpec> = (1..=100)
        .map(|w| ItemSpec { id: format!("item{w}"), quantity: Quantity::Unlimited, weight: w })
        .collect();
    let mut keyed = Pool::new(&catalog, Rng::from_seed(1)).unwrap();
    let small = std::env::var("SMALL").is_ok();
    let notouch = std::env::var("NOTOUCH").is_ok();
    let keys_n: u32 = std::env::var("KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(if small {
        1024
    } else {
        1 << 20
    });
    keyed.set_key_window(KeyWindow { keys: keys_n, hours: 24 });
    keyed.allocate_keys();
    if let Some(p) = keyed.key_pages() {
        p.populate(2 << 20, || true);
    }
    let mut plain = Pool::new(&catalog, Rng::from_seed(1)).unwrap();
    let mut next_key: u128 = 1 << 64;
    const BATCH: u64 = 20;
    let norecord = std::env::var("NORECORD").is_ok();
    // RANDOM: keys as clients send them (random 128-bit values, e.g. UUIDs), not a counter.
    let random = std::env::var("RANDOM").is_ok();
    let mix = |k: u128| -> u128 {
        if !random {
            return k;
        }
        let f = |mut z: u64| {
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
            z ^ (z >> 31)
        };
        let a = f(k as u64);
        let b = f(a ^ 0x1234_5678);
        (u128::from(b) << 64) | u128::from(a)
    };
    let dist: u128 = std::env::var("DIST").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let victims: u64 = std::env::var("VICTIMS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    for round in 0..rounds {
        let t = Instant::now();
        for _ in 0..pulls {
            for _ in 0..10 {
                black_box(plain.draw());
            }
        }
        let keyless = (pulls * 10) as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut ahead = next_key;
        for b in 0..pulls / BATCH {
            let _ = b;
            // Touch this batch's and the next batch's keys, each once.
            while dist == 0 && !notouch && ahead < next_key + 2 * u128::from(BATCH) {
                keyed.touch_key(mix(ahead));
                ahead += 1;
            }
            if dist == 0 && !notouch {
                let _ = victims;
            }
            for _ in 0..BATCH {
                if dist > 0 {
                    keyed.touch_key(mix(next_key + dist));
                }
                let k = mix(next_key);
                next_key += 1;
                if keyed.key(k, 10, 1000) == KeyLookup::New {
                    for _ in 0..10 {
                        if norecord {
                            black_box(keyed.draw());
                        } else {
                            black_box(keyed.draw_keyed());
                        }
                    }
                }
            }
        }
        let keyed_rate = (pulls / BATCH * BATCH * 10) as f64 / t.elapsed().as_secs_f64();
        println!(
            "{{\"round\":{round},\"keyless\":{keyless:.0},\"keyed\":{keyed_rate:.0},\"ratio\":{:.3}}}",
            keyed_rate / keyless
        );
    }
}
