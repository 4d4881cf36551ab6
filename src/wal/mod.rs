//! The write-ahead log: rkyv frames in preallocated segments (`wal.NNNNNN`) that the core
//! writes through a memory mapping (of the file, or of a staging buffer under `sync`: see
//! `storage::SegmentWrites`), group commit made durable by a flusher thread, rotation ahead
//! of time.
//!
//! Files: `durability` (the modes and what each asks of the log, in one table), `frame` (frame layout, encode/decode), `header` (segment header), `reader`
//! (walking frames), `segment` (the mapped segment the core appends to: raw writes into the
//! mapping; installing and closing a segment), `state` (what the core, the flusher and the
//! preparer share: the job queue, progress, failure, helper placement), `flusher` (syncs or
//! writes groups, installs segments off the core thread), `preparer` (closes retired
//! segments, creates the next, applies retention), `journal` ([`WalJournal`], the durable
//! [`crate::Journal`]). Arrows: `journal` → `flusher` → `preparer`; all three → `state`,
//! `segment`; never back.

pub mod batch;
pub mod crc;
pub mod durability;
pub mod frame;
pub mod header;
pub mod reader;

mod flusher;
mod journal;
mod preparer;
pub(crate) mod segment;
mod state;

pub use durability::{Durability, LogPlan, WalOptions};
pub use journal::{SeedSource, WalJournal, WalResume, WalStart};
