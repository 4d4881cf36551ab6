//! The durability modes and what each one means for the log, decided in one table
//! ([`Durability::plan`]): how segments are written, when a group may be acknowledged,
//! and whether the flusher syncs.
//!
//! | mode | segment writes | a group is acknowledged | the flusher's Sync jobs |
//! |------|----------------|-------------------------|-------------------------|
//! | `memory` | no log | at once | none |
//! | `buffered` | mapped (a shared mapping of the file) | once in the page cache: when committed on a map that writes through; after the flusher wrote it on a staged one | write (staged segments) |
//! | `sync` | staged (a private buffer; the flusher writes and syncs ranges) | after the flusher synced it | write and sync |
//!
//! [`WalOptions`]: where and how a pool's log is kept (the configuration's `wal` section).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::storage::SegmentWrites;

/// When an outcome is acknowledged (SPEC §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// After selection only; no log (a benchmark baseline).
    Memory,
    /// After its frame is written into the mapped segment: survives a process crash.
    Buffered,
    /// After its group is synced to the device: survives power loss.
    #[default]
    Sync,
}

/// What a durability mode asks of the log ([`Durability::plan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogPlan {
    /// How segment files are written. `sync` acknowledges only synced groups, so frames
    /// may wait in a staging buffer until their sync (no page-table write-protect per
    /// sync); `buffered` acknowledges frames in the page cache, so it writes through a
    /// shared mapping.
    pub segment_writes: SegmentWrites,
    /// The flusher makes each group durable on the device (fdatasync or msync); else it
    /// only puts a staged segment's groups into the file, and they are synced when the
    /// segment closes.
    pub sync_data: bool,
}

impl LogPlan {
    /// True when groups are acknowledged only once the flusher reports them: always when
    /// syncing; in buffered mode when the segment is staged (its bytes reach the page cache
    /// only through the flusher's write). A segment that writes through is in the page
    /// cache, and so acknowledged, as soon as it is committed.
    #[must_use]
    pub fn acknowledge_via_flusher(&self, writes_through: bool) -> bool {
        self.sync_data || !writes_through
    }
}

impl Durability {
    /// What this mode asks of the log; `None` for [`Durability::Memory`], which keeps none.
    #[must_use]
    pub fn plan(self) -> Option<LogPlan> {
        match self {
            Durability::Memory => None,
            Durability::Buffered => {
                Some(LogPlan { segment_writes: SegmentWrites::Mapped, sync_data: false })
            }
            Durability::Sync => {
                Some(LogPlan { segment_writes: SegmentWrites::Staged, sync_data: true })
            }
        }
    }
}

impl FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Durability, String> {
        match s {
            "memory" => Ok(Durability::Memory),
            "buffered" => Ok(Durability::Buffered),
            "sync" => Ok(Durability::Sync),
            other => {
                Err(format!("unknown durability {other:?}: expected memory, buffered or sync"))
            }
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Durability::Memory => "memory",
            Durability::Buffered => "buffered",
            Durability::Sync => "sync",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        assert_eq!(Durability::Memory.plan(), None);
        let buffered = Durability::Buffered.plan().unwrap();
        assert_eq!(buffered.segment_writes, SegmentWrites::Mapped);
        assert!(!buffered.sync_data);
        assert!(!buffered.acknowledge_via_flusher(true));
        assert!(buffered.acknowledge_via_flusher(false));
        let sync = Durability::Sync.plan().unwrap();
        assert_eq!(sync.segment_writes, SegmentWrites::Staged);
        assert!(sync.sync_data);
        assert!(sync.acknowledge_via_flusher(true));
        assert!(sync.acknowledge_via_flusher(false));
    }

    #[test]
    fn names_round_trip() {
        for d in [Durability::Memory, Durability::Buffered, Durability::Sync] {
            assert_eq!(d.to_string().parse::<Durability>(), Ok(d));
        }
        assert!("fsync".parse::<Durability>().is_err());
    }
}

/// Where and how the log is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// The data directory (`working_dir`).
    pub dir: PathBuf,
    /// When outcomes are acknowledged.
    pub durability: Durability,
    /// Size of each segment file (`wal.max_file_size_kb` × 1024).
    pub segment_size_bytes: u64,
    /// Segments (and their snapshots) kept; older ones are deleted.
    pub retention_segments: usize,
    /// Segments kept beyond `retention_segments` at most while a log reader holds them
    /// (`JournalStats::retain_from`): the bound on what an unshipped log may take on disk.
    pub held_segments_max: usize,
    /// The pool's name: each segment's commitment to its draw seed names it
    /// (`pool::DrawSeed::commitment`).
    pub pool: String,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            dir: PathBuf::from("data"),
            durability: Durability::Sync,
            segment_size_bytes: 64 << 20,
            retention_segments: 4,
            held_segments_max: 64,
            pool: "default".to_owned(),
        }
    }
}
