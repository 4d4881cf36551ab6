//! A durable engine from a YAML config, with one client per thread.
//!
//! `cargo run --example durable`: loads `examples/config.yaml` (durability `sync`), puts its
//! data directory in a temporary directory, and has four threads draw 2,000 times each, every
//! thread through its own [`Client`]. Each thread keeps its client's ring full and collects
//! outcomes as they complete (see `examples/pipelined.rs` for why not a blocking `draw()`).

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::path::Path;

use rewardpool::{Client, Config, DrawError, Quantity};

const THREADS: usize = 4;
const DRAWS_PER_THREAD: u64 = 2_000;

fn main() -> Result<(), Box<dyn Error>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.yaml");
    let mut config = Config::load(&path)?;
    let dir = tempfile::tempdir()?;
    config.working_dir = dir.path().join("data");

    // Recovers the directory (here: empty, so the catalog is the starting state).
    let engine = rewardpool::open(&config)?;

    // The engine is shared by reference; each thread registers its own client (a client is
    // `Send`, not `Sync`: one thread drives it).
    let tallies = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| -> Result<HashMap<String, u64>, Box<dyn Error + Send + Sync>> {
                    let mut client = engine.client()?;
                    draw_n(&mut client, DRAWS_PER_THREAD)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a worker panicked")).collect::<Vec<_>>()
    });

    let mut won: HashMap<String, u64> = HashMap::new();
    for tally in tallies {
        for (id, n) in tally.map_err(|e| e as Box<dyn Error>)? {
            *won.entry(id).or_default() += n;
        }
    }
    let state = engine.shutdown()?;

    let total = THREADS as u64 * DRAWS_PER_THREAD;
    println!("{total} draws by {THREADS} threads, each acknowledged after its group was synced:");
    for item in &state.items {
        let n = won.get(item.id.as_str()).copied().unwrap_or(0);
        let left = match item.quantity {
            Quantity::Finite(q) => q.to_string(),
            Quantity::Unlimited => "unlimited".to_owned(),
        };
        println!("  {:8} won {n:5} times, {left} left", item.id);
    }
    assert_eq!(state.last_request_id.0, total, "every draw got a request id");
    assert_eq!(won.values().sum::<u64>(), total, "mud is unlimited: every draw won something");
    Ok(())
}

/// `n` draws, up to the client's capacity in flight: submit until the ring is full
/// (back-pressure), wait for the oldest, take everything else that completed. Returns how
/// often each item was won.
fn draw_n(
    client: &mut Client,
    n: u64,
) -> Result<HashMap<String, u64>, Box<dyn Error + Send + Sync>> {
    // Item ids by index, shared with the engine: naming an outcome needs no state read.
    let mut ids = client.item_ids();
    let mut won = HashMap::new();
    let mut in_flight = VecDeque::with_capacity(client.capacity());
    let (mut sent, mut done) = (0, 0);
    while done < n {
        while sent < n {
            match client.try_draw() {
                Ok(ticket) => {
                    in_flight.push_back(ticket);
                    sent += 1;
                }
                Err(DrawError::Full) => break,
                Err(e) => return Err(e.into()),
            }
        }
        let Some(oldest) = in_flight.pop_front() else { break };
        record(&mut won, client.wait(oldest)?.item_id(&mut ids));
        done += 1;
        let mut failed = None;
        client.drain(|_, result| {
            in_flight.pop_front();
            match result {
                Ok(outcome) => {
                    record(&mut won, outcome.item_id(&mut ids));
                    done += 1;
                }
                Err(e) => failed = Some(e),
            }
        });
        if let Some(e) = failed {
            return Err(e.into());
        }
    }
    Ok(won)
}

fn record(won: &mut HashMap<String, u64>, item: Option<&str>) {
    let Some(id) = item else { return };
    match won.get_mut(id) {
        Some(n) => *n += 1,
        None => {
            won.insert(id.to_owned(), 1);
        }
    }
}

#[cfg(test)]
mod tests {
    /// `cargo test` runs the example: its `[[example]]` entry says `test = true`.
    #[test]
    fn runs_to_completion() {
        super::main().unwrap();
    }
}
