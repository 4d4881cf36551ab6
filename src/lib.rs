//! # rewardpool
//!
//! A reward-pool engine: a pool of items with quantities (or unlimited) and integer weights,
//! drawn at random with probability weight / total available weight, every outcome recorded
//! in a write-ahead log **before** the caller sees it.
//!
//! Data flow: caller threads ([`Client`]) push fixed-size requests into SPSC rings
//! (`ingress`) → one pinned core thread (`engine`) owns the [`Pool`] and selects with a Fenwick tree →
//! it appends each outcome to the [`Journal`] and commits groups → outcomes are published
//! to per-client completion slots once their group is durable.
//!
//! The durable path, config to engine in one call ([`open`]); one client per caller thread:
//!
//! ```
//! use rewardpool::{Config, Durability};
//!
//! let dir = tempfile::tempdir()?;
//! let mut config = Config::from_yaml_str(
//!     r#"
//! pool:
//!   catalog:
//!     - { item_id: "gold", quantity: 10, probability: 20 }
//!     - { item_id: "mud",  quantity: -1, probability: 70 }
//! wal:
//!   durability: sync
//!   max_file_size_kb: 1024
//! "#,
//! )?;
//! config.working_dir = dir.path().join("data");
//! assert_eq!(config.wal.durability, Durability::Sync);
//!
//! let engine = rewardpool::open(&config)?; // recovers the directory, or starts from the catalog
//! let mut client = engine.client()?;
//! let outcome = client.draw()?; // durable (synced) before it returns
//! let item = outcome.item.and_then(|index| client.item_id(index)); // "gold" or "mud"
//! assert!(matches!(item, Some("gold" | "mud")));
//! drop(client);
//! let state = engine.shutdown()?; // answers everything in flight, writes a final snapshot
//! assert_eq!(state.last_request_id.0, 1);
//!
//! // Reopened, the same directory continues where it stopped.
//! let engine = rewardpool::open(&config)?;
//! assert_eq!(engine.state()?.last_request_id.0, 1);
//! # engine.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A blocking [`Client::draw`] waits for a whole group commit (under `sync`, a disk sync)
//! each time: for throughput keep many draws in flight with [`Client::try_draw`] and
//! [`Client::drain`] (see [`Client::draw`] and the crate's `examples/`).
//!
//! # Unsafe
//!
//! The crate denies `unsafe_code`; each exception is a single block with a `// SAFETY:`
//! comment, in these places only:
//! - `wal::segment`: writes frames into the memory-mapped segment (one writer per byte range;
//!   the module docs state the discipline);
//! - `wal::crc`: the SSE4.2 CRC-32C instruction, behind a runtime CPU check;
//! - `pool::keys`: a prefetch hint for the key window's index (x86-64 only), and
//!   `madvise(MADV_POPULATE_WRITE)` over the window (writes no byte); `engine::prefault`:
//!   `sched_setscheduler(SCHED_IDLE)` for that helper thread;
//! - `storage::os`: `fallocate` and `flock` system calls; `wal::preparer`: `setpriority`;
//! - `storage::faulty` (feature `testing`): the in-memory test storage's raw file buffers;
//! - `storage`: [`storage::SegmentMap`] is an `unsafe trait` (the log writes through its
//!   `as_ptr()` for `len()` bytes unchecked); each implementation in `storage::os` and
//!   `storage::faulty` states why it keeps that promise.
//!
//! Our own lock-free protocol (completion slots, the doorbell every wake-up goes through) uses
//! only atomics; `tests/loom_slots.rs` models the real types with loom (`tools/loom.sh`).
//!
//! # Panics
//! No public API panics on bad input; [`ItemSpec::new`] panics on a quantity below -1
//! (use config validation for untrusted input); [`Pool::key`] panics on a count of 0 or
//! above its window's per-request bound and [`Pool::set_key_window`] on a window of 0 or
//! more than `pool::KEYS_MAX` keys (the engine checks both before it calls them).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod engine;
pub mod host;
mod ingress;
pub mod inspect;
pub mod journal;
pub mod layout;
pub mod pool;
pub mod recovery;
pub mod replicate;
pub mod storage;
mod sync;

/// Opening a data directory: the functions now live in [`host`]; this path stays for the
/// callers that name it (the command line, the examples, the tests).
pub mod store {
    pub use crate::host::{
        open_engine, open_engine_on, open_journal, read_state, read_state_on, Durability,
        OpenError, WalOptions,
    };
}

pub mod snapshot;
pub mod wal;

pub use config::{Config, ConfigError};
pub use engine::{CorePin, Engine, EngineConfig, EngineError, Meter, Metrics};
pub use host::{open_engine, Durability, Host, OpenError, WalOptions};
pub use ingress::{Client, DrawError, ItemIds, Outcome, Pull, PullTicket, Ticket, PULL_LEN_MAX};
pub use journal::{FailureKind, Journal, JournalError, JournalStats, MemoryJournal};
pub use pool::{Draw, ItemIndex, ItemSpec, ItemState, Pool, PoolState, Quantity, RequestId, Rng};
pub use sync::Doorbell;

/// Opens the data directory `config.working_dir` and starts an engine on it: recovers the
/// pool from its log (or starts from `config`'s catalog when the directory holds no log),
/// with the durability, segment size, ring capacity and group bounds of `config`, and a
/// generator seeded by the operating system. The same as
/// [`open_engine`]`(&config.catalog(), &config.wal_options(), config.engine_config(), None)`;
/// call that to fix the seed or change other [`EngineConfig`] bounds.
///
/// Stop it with [`Engine::shutdown`]: every request in flight is answered and a final
/// snapshot is written.
///
/// # Errors
/// A damaged log ([`OpenError::is_damage`]), a data directory another process has open, an
/// invalid catalog, or an engine that cannot start.
pub fn open(config: &Config) -> Result<Engine, OpenError> {
    host::open_config(config)
}

/// The lock-free types that `tests/loom_slots.rs` models, opened to it under `--cfg loom`
/// only (their atomics, lock and park are loom's then: see `sync`).
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_api {
    pub use crate::ingress::slots::{Completion, SlotBlock};
    pub use crate::sync::Doorbell;
}

/// The README's Rust blocks run as doctests, so its library guide cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
