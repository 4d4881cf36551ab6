//! The write-ahead log: rkyv frames in preallocated, memory-mapped segments
//! (`wal.NNNNNN`), group commit made durable by a flusher thread, rotation ahead of time.
//!
//! Files: `frame` (frame layout, encode/decode), `header` (segment header), `reader`
//! (walking frames), `segment` (the mapped segment the core appends to: raw writes into the mapping),
//! `flusher` (syncs, installs and closes segments off the core thread), `journal`
//! ([`WalJournal`], the durable [`crate::Journal`]).

pub mod crc;
pub mod frame;
pub mod header;
pub mod reader;

mod flusher;
mod journal;
mod preparer;
pub(crate) mod segment;

pub use journal::{WalJournal, WalStart};
