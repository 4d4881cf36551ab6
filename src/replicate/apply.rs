//! Applying shipped groups to a replica's own log: a follower keeps a normal data directory
//! (its own segments, snapshots and rotation), so `wal verify`, `state` and `wal stats` work
//! on it as on any log.
//!
//! [`Replica::apply`] takes one or more consecutive groups as [`super::LogTail`] handed them
//! out on the primary (their frames, byte for byte, one after the other: what a shipper
//! puts in one message) and the last request id before the first. It checks every frame's
//! CRC-32C and each group's shape (frames of draws or one update, then exactly one commit)
//! before it applies any, checks continuity (each group follows the replica's last request
//! id: anything else is a gap, or a group already applied), replays the outcomes into the
//! replica's pool (never drawing) and appends each group to its journal as one group.
//! [`Replica::sync`] waits until every applied group is durable under the replica's
//! durability mode.
//!
//! What differs from the primary's bytes: segment boundaries (the replica rotates on its
//! own), group numbers, and the wall-clock second a batch frame records.

#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::unwrap_used))]

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rkyv::util::AlignedVec;

use crate::config::Config;
use crate::host::{open_journal_seeded, OpenError};
use crate::journal::{GroupSeq, Journal, JournalError, Space};
use crate::pool::{Draw, ItemIndex, ItemState, Pool, PoolState, Quantity, RequestId};
use crate::storage::{OsStorage, Storage};
use crate::wal::frame::{self, Record, SeedFields};
use crate::wal::{SeedSource, WalJournal};

/// Longest wait for the replica's own log to make its groups durable.
const SYNC_DEADLINE: Duration = Duration::from_secs(30);

/// Why a group was refused, or the replica failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApplyError {
    /// A frame of the group does not decode (its CRC, its fields), or the group's shape is
    /// wrong (no commit, a commit before the end, a snapshot marker, draws and an update).
    BadGroup {
        /// Offset of the bad frame within the group's bytes.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// The group does not follow the replica's log: a group is missing between them.
    Gap {
        /// The replica's last request id.
        applied: u64,
        /// The last request id before the group, as the primary's log has it.
        prev: u64,
    },
    /// The pool refused an outcome (an unknown item, a request id out of order).
    Refused(String),
    /// The replica's journal failed.
    Journal(JournalError),
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::BadGroup { offset, reason } => {
                write!(f, "a bad group: at byte {offset} of the message: {reason}")
            }
            ApplyError::Gap { applied, prev } => write!(
                f,
                "a gap in the stream: the replica's log ends at request id {applied}, the next \
                 group follows request id {prev}"
            ),
            ApplyError::Refused(reason) => {
                write!(f, "the replica's pool refused a group: {reason}")
            }
            ApplyError::Journal(e) => write!(f, "the replica's log failed: {e}"),
        }
    }
}

impl std::error::Error for ApplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ApplyError::Journal(e) => Some(e),
            _ => None,
        }
    }
}

impl From<JournalError> for ApplyError {
    fn from(e: JournalError) -> ApplyError {
        ApplyError::Journal(e)
    }
}

/// What [`Replica::apply`] did with a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Appended to the replica's log (durable after [`Replica::sync`]).
    Appended {
        /// Draws in it.
        draws: u64,
    },
    /// Already in the replica's log (a redelivery): nothing done.
    Duplicate,
}

/// A group's records, checked.
struct Checked {
    /// Draw frames' and batch frames' records, or one update.
    records: Vec<Record>,
    draws: usize,
    update_id_len: Option<usize>,
    /// A seed frame's group (its only frame).
    seed: bool,
    last_request_id: u64,
}

/// Decodes and checks the frames of one or more whole groups (module docs): every group,
/// before any is applied.
fn check_all(frames: &[u8]) -> Result<Vec<Checked>, ApplyError> {
    let mut bytes: AlignedVec<16> = AlignedVec::with_capacity(frames.len());
    bytes.extend_from_slice(frames);
    let mut groups = Vec::new();
    let mut at = 0;
    while at < bytes.len() || groups.is_empty() {
        let (group, end) = check(&bytes, at)?;
        groups.push(group);
        at = end;
    }
    Ok(groups)
}

/// Decodes and checks the group whose first frame is at `start` of `bytes`; returns it and
/// where it ends (just past its commit frame).
fn check(bytes: &[u8], start: usize) -> Result<(Checked, usize), ApplyError> {
    let mut at = start;
    let mut records = Vec::new();
    let mut draws = 0;
    let mut update_id_len = None;
    let mut seed = false;
    let bad = |offset, reason: String| ApplyError::BadGroup { offset, reason };
    loop {
        let rest = bytes.get(at..).unwrap_or_default();
        let (record, len) = match frame::decode(rest) {
            Ok(Some(found)) => found,
            Ok(None) => return Err(bad(at, "the group ends without a commit frame".into())),
            Err(e) => return Err(bad(at, e.to_string())),
        };
        match record {
            Record::Commit { last_request_id, .. } => {
                if draws > 0 && update_id_len.is_some() {
                    return Err(bad(at, "a group holds draws and an update".into()));
                }
                if seed && (draws > 0 || update_id_len.is_some() || records.len() > 1) {
                    return Err(bad(at, "a seed frame shares its group".into()));
                }
                let checked = Checked { records, draws, update_id_len, seed, last_request_id };
                return Ok((checked, at + len));
            }
            Record::Batch(ref b) => draws += b.items.len(),
            Record::Draw { .. } => draws += 1,
            Record::Update { ref item_id, .. } => {
                if update_id_len.is_some() {
                    return Err(bad(at, "a group holds two updates".into()));
                }
                update_id_len = Some(item_id.len());
            }
            Record::Seed { .. } => seed = true,
            Record::Snapshot { .. } | Record::Key { .. } => {
                return Err(bad(at, "a snapshot marker in a group".into()));
            }
        }
        records.push(record);
        at += len;
    }
}

/// A replica's pool and log (module docs).
pub struct Replica {
    pool: Pool,
    journal: WalJournal,
    committed: GroupSeq,
}

impl fmt::Debug for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replica")
            .field("last_request_id", &self.pool.last_request_id())
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Opens (recovers, or creates from `config`'s catalog) the replica's data directory
    /// `config.working_dir`, with `config`'s `wal` and idempotency window.
    ///
    /// # Errors
    /// As [`crate::open`]: damage, a directory in use, a bad catalog.
    pub fn open(config: &Config) -> Result<Replica, OpenError> {
        let wal = config.wal_options();
        let storage: Arc<dyn Storage> = Arc::new(OsStorage::new(&wal.dir).map_err(|source| {
            OpenError::Io { context: format!("opening {}", wal.dir.display()), source }
        })?);
        let (mut pool, journal) =
            open_journal_seeded(storage, &config.catalog(), &wal, SeedSource::None)?;
        pool.set_key_window(config.idempotency);
        pool.allocate_keys();
        Ok(Replica { pool, journal, committed: GroupSeq(0) })
    }

    /// The last request id in the replica's log (applied; durable after [`Replica::sync`]).
    #[must_use]
    pub fn last_request_id(&self) -> u64 {
        self.pool.last_request_id().0
    }

    /// The replica's pool state (items, quantities, last request id).
    #[must_use]
    pub fn state(&self) -> PoolState {
        self.pool.state()
    }

    /// The replica's items (quantities and weights, in index order): [`Replica::state`]
    /// without the key window.
    #[must_use]
    pub fn items(&self) -> Vec<ItemState> {
        self.pool.items()
    }

    /// Checks and appends shipped groups: `frames` holds one or more whole consecutive
    /// groups of the primary's log, whose log had `prev` as the last request id before the
    /// first (module docs). A group already applied is skipped; the result is
    /// [`Applied::Duplicate`] when every group was.
    ///
    /// # Errors
    /// A bad frame or shape in any group (then none is applied), a gap, an outcome the pool
    /// refuses, a failed journal. The groups before a refused one stay applied; after a
    /// journal or pool failure the replica must be reopened (its log keeps only what was
    /// committed).
    pub fn apply(&mut self, prev: u64, frames: &[u8]) -> Result<Applied, ApplyError> {
        let mut prev = prev;
        let mut appended = None;
        for checked in check_all(frames)? {
            let last = checked.last_request_id;
            if let Applied::Appended { draws } = self.apply_group(prev, checked)? {
                appended = Some(appended.unwrap_or(0) + draws);
            }
            prev = last;
        }
        Ok(appended.map_or(Applied::Duplicate, |draws| Applied::Appended { draws }))
    }

    /// Appends one checked group (`apply`).
    fn apply_group(&mut self, prev: u64, checked: Checked) -> Result<Applied, ApplyError> {
        let applied = self.last_request_id();
        if checked.draws > 0 && checked.last_request_id <= applied {
            return Ok(Applied::Duplicate);
        }
        if prev != applied {
            if prev < applied && checked.last_request_id <= applied {
                // An update group already applied (updates carry no request id of their
                // own); applying it again would leave the same state, so skip it.
                return Ok(Applied::Duplicate);
            }
            return Err(ApplyError::Gap { applied, prev });
        }
        if checked.seed {
            // The primary's commitment or reveal, copied: the replica's log can be audited
            // as the primary's is (`inspect::fairness`).
            self.journal.reserve(Space::Seed, &mut self.pool)?;
            if let Some(Record::Seed {
                first_request_id,
                segment,
                generator,
                commitment,
                revealed,
            }) = checked.records.first()
            {
                let fields = SeedFields {
                    first_request_id: *first_request_id,
                    segment: *segment,
                    generator: *generator,
                    commitment: *commitment,
                    revealed: *revealed,
                };
                let last = RequestId(checked.last_request_id);
                self.committed = self.journal.append_shipped_seed(&fields, last)?;
            }
            return Ok(Applied::Appended { draws: 0 });
        }
        let space = match checked.update_id_len {
            Some(id_len) => Space::Update { id_len },
            None => Space::Draws(checked.draws.max(1)),
        };
        self.journal.reserve(space, &mut self.pool)?;
        for record in &checked.records {
            self.replay(record)?;
        }
        self.committed = self.journal.commit(RequestId(checked.last_request_id))?;
        Ok(Applied::Appended { draws: checked.draws as u64 })
    }

    fn refused(e: impl fmt::Display) -> ApplyError {
        ApplyError::Refused(e.to_string())
    }

    fn replay(&mut self, record: &Record) -> Result<(), ApplyError> {
        match record {
            Record::Draw { request_id, item } => self.draw(*request_id, *item),
            Record::Batch(batch) => {
                let mut keys = batch.keys.iter().peekable();
                for (i, item) in batch.items.iter().enumerate() {
                    let request_id = batch.first_request_id.saturating_add(i as u64);
                    if let Some(k) = keys.next_if(|k| k.offset as usize == i) {
                        self.pool
                            .replay_key(k.key, RequestId(request_id), k.count, batch.unix_s)
                            .map_err(Self::refused)?;
                        self.journal.append_key(k.key, k.count)?;
                    }
                    self.draw(request_id, *item)?;
                }
                Ok(())
            }
            Record::Update { index, item_id, quantity, weight } => {
                let quantity = Quantity::from_i64(*quantity)
                    .ok_or_else(|| Self::refused(format!("quantity {quantity} below -1")))?;
                let state = ItemState { id: item_id.clone(), quantity, weight: *weight };
                self.pool.replay_update(ItemIndex(*index), &state).map_err(Self::refused)?;
                self.journal.append_update(ItemIndex(*index), &state)?;
                Ok(())
            }
            Record::Commit { .. }
            | Record::Snapshot { .. }
            | Record::Key { .. }
            | Record::Seed { .. } => Err(Self::refused("an unexpected frame kind inside a group")),
        }
    }

    fn draw(&mut self, request_id: u64, item: Option<u32>) -> Result<(), ApplyError> {
        let draw = Draw { request_id: RequestId(request_id), item: item.map(ItemIndex) };
        self.pool.replay_draw(draw).map_err(Self::refused)?;
        self.journal.append_draw(draw)?;
        Ok(())
    }

    /// Waits until every applied group is durable in the replica's log.
    ///
    /// # Errors
    /// The journal failed, or did not make the groups durable within 30 seconds.
    pub fn sync(&mut self) -> Result<(), ApplyError> {
        let start = Instant::now();
        while self.journal.durable()? < self.committed {
            if start.elapsed() > SYNC_DEADLINE {
                return Err(ApplyError::Journal(JournalError::Other(format!(
                    "the replica's log made no group durable within {SYNC_DEADLINE:?}"
                ))));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        Ok(())
    }

    /// Makes everything durable, writes a final snapshot and closes the log.
    ///
    /// # Errors
    /// The journal failed.
    pub fn close(mut self) -> Result<PoolState, ApplyError> {
        self.sync()?;
        self.journal.close(&self.pool)?;
        Ok(self.pool.state())
    }
}
