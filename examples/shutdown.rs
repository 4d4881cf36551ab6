//! A clean shutdown with draws in flight, and a reopen that finds the state intact.
//!
//! `cargo run --example shutdown`: opens a durable engine (`examples/config.yaml`, data in a
//! temporary directory), submits a client's whole capacity of draws without waiting, and
//! shuts the engine down while they are in flight. `Engine::shutdown` stops intake, serves
//! and answers every request already submitted, syncs, writes a final snapshot and returns
//! the final state; the client then collects every outcome with `drain`. Reopening the same
//! directory recovers exactly that state, and the next request id continues after the last.

use std::error::Error;
use std::path::Path;

use rewardpool::{Config, DrawError};

fn main() -> Result<(), Box<dyn Error>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.yaml");
    let mut config = Config::load(&path)?;
    let dir = tempfile::tempdir()?;
    config.working_dir = dir.path().join("data");

    let engine = rewardpool::open(&config)?;
    let mut client = engine.client()?;
    let mut ids = client.item_ids();
    let mut submitted = 0_u64;
    loop {
        match client.try_draw() {
            // `drain` reports outcomes by ticket id: the tickets themselves are not needed.
            Ok(_ticket) => submitted += 1,
            Err(DrawError::Full) => break,
            Err(e) => return Err(e.into()),
        }
    }

    // Every submitted draw is served, durable and answered before `shutdown` returns.
    let last = engine.shutdown()?;
    let mut diamonds = 0;
    let mut answered = 0;
    let mut failed = None;
    client.drain(|_, result| match result {
        Ok(outcome) => {
            answered += 1;
            if outcome.item_id(&mut ids) == Some("diamond") {
                diamonds += 1;
            }
        }
        Err(e) => failed = Some(e),
    });
    if let Some(e) = failed {
        return Err(format!("a draw in flight at shutdown was not served: {e}").into());
    }
    // The engine is gone: the client refuses new draws.
    assert_eq!(client.try_draw(), Err(DrawError::ShuttingDown));
    drop(client);
    println!(
        "shut down with {submitted} draws in flight: {answered} answered, last request id {}, \
         {diamonds} diamond(s) won",
        last.last_request_id
    );
    assert_eq!(answered, submitted);
    assert_eq!(last.last_request_id.0, submitted);

    // Reopen: recovery starts from the final snapshot.
    let engine = rewardpool::open(&config)?;
    let recovered = engine.state()?;
    assert_eq!(recovered, last, "the reopened pool is the one that was shut down");
    let mut client = engine.client()?;
    let next = client.draw()?;
    println!(
        "reopened: same state ({} items, last request id {}); the next draw got request id {}",
        recovered.items.len(),
        recovered.last_request_id,
        next.request_id
    );
    assert_eq!(next.request_id.0, submitted + 1);
    drop(client);
    engine.shutdown()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// `cargo test` runs the example: its `[[example]]` entry says `test = true`.
    #[test]
    fn runs_to_completion() {
        super::main().unwrap();
    }
}
