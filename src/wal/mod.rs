//! The write-ahead log: rkyv frames in preallocated segments (`wal.NNNNNN`) that the core
//! writes through a memory mapping (of the file, or of a staging buffer under `sync`: see
//! `storage::SegmentWrites`), group commit made durable by a flusher thread, rotation ahead
//! of time.
//!
//! Files: `frame` (frame layout, encode/decode), `header` (segment header), `reader`
//! (walking frames), `segment` (the mapped segment the core appends to: raw writes into the mapping),
//! `flusher` (syncs or writes groups, installs segments off the core thread), `preparer`
//! (closes retired segments, creates the next, applies retention), `journal`
//! ([`WalJournal`], the durable [`crate::Journal`]).

pub mod crc;
pub mod frame;
pub mod header;
pub mod reader;

mod flusher;
mod journal;
mod preparer;
pub(crate) mod segment;

pub use journal::{WalJournal, WalResume, WalStart};
