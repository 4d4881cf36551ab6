//! Snapshots: the full pool state in one file, so each segment can be replayed on its own
//! (SPEC §4). The byte format lives in [`format`](mod@format); writing and loading files is the I/O
//! layer's job.

pub mod format;

pub use format::{
    catalog_fingerprint, parse_snapshot_name, snapshot_name, SnapshotFormatError, SnapshotItem,
    SnapshotState, SNAPSHOT_HEADER_SIZE,
};
