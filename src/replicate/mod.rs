//! Replication without a network: what a log shipper and a follower need from the engine,
//! so that the NATS client stays on the binary side (`src/bin/rewardpool/replica/`).
//!
//! - [`LogTail`] reads a live log's committed groups from its files, up to the durable
//!   watermark ([`crate::Metrics::durable_request_id`]), never touching the core thread. A
//!   shipper holds the segments it has not read yet from retention through
//!   [`crate::journal::JournalStats::retain_from`] (bounded by
//!   [`crate::WalOptions::held_segments_max`]).
//! - [`Replica`] checks a shipped group (CRC of every frame, shape, continuity) and appends
//!   it to a replica's own log.
//!
//! Arrows: `replicate` reads `wal` and `host`; nothing below imports it.

mod apply;
mod tail;

pub use apply::{Applied, ApplyError, Replica};
pub use tail::{Group, LogTail, TailError, TailStart};
