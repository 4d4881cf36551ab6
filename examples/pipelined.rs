//! Pipelined draws with `try_draw` / `drain`, back-pressure on a full ring, and why a
//! blocking `draw()` is the wrong tool for throughput.
//!
//! `cargo run --release --example pipelined`: four threads on one engine (durability
//! `sync`, from `examples/config.yaml`, data in a temporary directory), two phases of half a
//! second each:
//! 1. every thread calls the blocking `client.draw()` in a loop: one request in flight per
//!    thread, so each draw waits for a whole group commit and its sync, and a group holds at
//!    most one draw per thread;
//! 2. every thread keeps its ring full with `try_draw`, and when the ring pushes back
//!    (`DrawError::Full`) it waits for its oldest ticket and `drain`s whatever else
//!    completed: groups fill up, and one sync acknowledges hundreds of draws.
//!
//! It prints both rates and the draws per group commit.

use std::collections::VecDeque;
use std::error::Error;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rewardpool::{Client, Config, DrawError, Engine};

const THREADS: usize = 4;
const PHASE: Duration = Duration::from_millis(500);

fn main() -> Result<(), Box<dyn Error>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.yaml");
    let mut config = Config::load(&path)?;
    let dir = tempfile::tempdir()?;
    config.working_dir = dir.path().join("data");
    let engine = rewardpool::open(&config)?;

    let blocking = phase(&engine, blocking_draws)?;
    let pipelined = phase(&engine, pipelined_draws)?;
    println!("{THREADS} threads, durability {}, {PHASE:?} each:", config.wal.durability);
    blocking.print("blocking draw()");
    pipelined.print("try_draw + drain");
    println!(
        "  the ring pushed back (DrawError::Full) {} times: each time the thread collected \
         outcomes before submitting more",
        pipelined.full
    );

    let state = engine.shutdown()?;
    assert_eq!(state.last_request_id.0, blocking.draws + pipelined.draws);
    Ok(())
}

/// Draws one thread acknowledged, and how often its ring was full.
type Counts = (u64, u64);

/// One request in flight: `draw()` submits and waits for this draw's group to be durable.
fn blocking_draws(client: &mut Client, deadline: Instant) -> Result<Counts, DrawError> {
    let mut draws = 0;
    while Instant::now() < deadline {
        client.draw()?;
        draws += 1;
    }
    Ok((draws, 0))
}

/// Up to the client's capacity in flight. `Full` is back-pressure, not an error: the core
/// has not caught up (or the group is not durable yet), so collect before submitting more.
fn pipelined_draws(client: &mut Client, deadline: Instant) -> Result<Counts, DrawError> {
    // Tickets in request order (allocated once: the loop itself allocates nothing).
    let mut in_flight = VecDeque::with_capacity(client.capacity());
    let (mut draws, mut full) = (0, 0);
    loop {
        if Instant::now() < deadline {
            loop {
                match client.try_draw() {
                    Ok(ticket) => in_flight.push_back(ticket),
                    Err(DrawError::Full) => {
                        full += 1;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // Block for progress on the oldest ticket (it also wakes a parked core), then take
        // every other outcome that is ready, without blocking.
        let Some(oldest) = in_flight.pop_front() else { break };
        client.wait(oldest)?;
        draws += 1;
        let mut failed = None;
        client.drain(|_, result| {
            in_flight.pop_front();
            match result {
                Ok(_outcome) => draws += 1,
                Err(e) => failed = Some(e),
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok((draws, full))
}

struct Phase {
    draws: u64,
    full: u64,
    groups: u64,
    elapsed: Duration,
}

impl Phase {
    fn print(&self, name: &str) {
        println!(
            "  {name:17} {:9.0} draws/s  ({} draws, {:.1} draws per group commit)",
            self.draws as f64 / self.elapsed.as_secs_f64(),
            self.draws,
            self.draws as f64 / self.groups.max(1) as f64,
        );
    }
}

/// Runs `work` on `THREADS` threads, one client each, for `PHASE`.
fn phase(
    engine: &Engine,
    work: fn(&mut Client, Instant) -> Result<Counts, DrawError>,
) -> Result<Phase, Box<dyn Error>> {
    let groups = || engine.stats().groups_committed.load(Ordering::Relaxed);
    let groups_before = groups();
    let started = Instant::now();
    let deadline = started + PHASE;
    let results: Vec<Result<Counts, Box<dyn Error + Send + Sync>>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(move || -> Result<Counts, Box<dyn Error + Send + Sync>> {
                    let mut client = engine.client()?;
                    Ok(work(&mut client, deadline)?)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a worker panicked")).collect()
    });
    let elapsed = started.elapsed();
    let (mut draws, mut full) = (0, 0);
    for result in results {
        let (d, f) = result.map_err(|e| e as Box<dyn Error>)?;
        draws += d;
        full += f;
    }
    Ok(Phase { draws, full, groups: groups() - groups_before, elapsed })
}

#[cfg(test)]
mod tests {
    /// `cargo test` runs the example: its `[[example]]` entry says `test = true`.
    #[test]
    fn runs_to_completion() {
        super::main().unwrap();
    }
}
