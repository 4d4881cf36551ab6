//! # rewardpool
//!
//! A reward-pool engine: a pool of items with quantities (or unlimited) and integer weights,
//! drawn at random with probability weight / total available weight, every outcome recorded
//! in a write-ahead log **before** the caller sees it.
//!
//! Data flow: caller threads ([`Client`]) push fixed-size requests into SPSC rings
//! (`engine`) → one pinned core thread owns the [`Pool`] and selects with a Fenwick tree →
//! it appends each outcome to the [`Journal`] and commits groups → outcomes are published
//! to per-client completion slots once their group is durable.
//!
//! ```
//! use rewardpool::{Engine, EngineConfig, ItemSpec, MemoryJournal, Pool, Rng};
//!
//! let items = [ItemSpec::new("gold", 10, 20), ItemSpec::new("mud", -1, 70)];
//! let pool = Pool::new(&items, Rng::from_seed(7))?;
//! let engine = Engine::start(pool, MemoryJournal::new(), EngineConfig::default())?;
//! let mut client = engine.client()?;
//! let outcome = client.draw()?;
//! assert_eq!(outcome.request_id.0, 1);
//! let state = engine.shutdown()?;
//! assert_eq!(state.last_request_id.0, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Unsafe
//!
//! The crate denies `unsafe_code`; each exception is a single block with a `// SAFETY:`
//! comment, in these places only:
//! - `wal::segment`: writes frames into the memory-mapped segment (one writer per byte range;
//!   the module docs state the discipline);
//! - `wal::crc`: the SSE4.2 CRC-32C instruction, behind a runtime CPU check;
//! - `storage::os`: `fallocate` and `flock` system calls; `wal::preparer`: `setpriority`;
//! - `storage::faulty`: the in-memory test storage's raw file buffers.
//!
//! Our own lock-free protocol (completion slots, wake-ups) uses only atomics; it is modelled
//! with loom in `tests/loom_slots.rs` (`tools/loom.sh`).
//!
//! # Panics
//! No public API panics on bad input; [`ItemSpec::new`] panics on a quantity below -1
//! (use config validation for untrusted input).

#![deny(unsafe_code)]
#![warn(missing_docs)]

#[doc(hidden)]
pub mod cli;
pub mod config;
pub mod engine;
pub mod inspect;
pub mod journal;
pub mod pool;
pub mod recovery;
pub mod storage;
pub mod store;

pub use engine::{Client, DrawError, Engine, EngineConfig, EngineError, Outcome, Ticket};
pub use journal::{Journal, JournalError, JournalStats, MemoryJournal};
pub use pool::{Draw, ItemIndex, ItemSpec, ItemState, Pool, PoolState, Quantity, RequestId, Rng};
pub mod snapshot;
pub mod wal;
