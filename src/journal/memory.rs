//! The `memory` durability mode: no log, every group durable as soon as it is committed.

use super::{GroupSeq, Journal, JournalError, Space};
use crate::pool::{Draw, ItemIndex, ItemState, Pool, RequestId};

/// Keeps nothing: the benchmark baseline (SPEC §5, `memory`). Counts what it was given.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    group: GroupSeq,
    draws: u64,
    updates: u64,
}

impl MemoryJournal {
    /// A journal that keeps nothing.
    #[must_use]
    pub fn new() -> MemoryJournal {
        MemoryJournal::default()
    }

    /// Draw frames appended so far.
    #[must_use]
    pub fn draws(&self) -> u64 {
        self.draws
    }

    /// Update frames appended so far.
    #[must_use]
    pub fn updates(&self) -> u64 {
        self.updates
    }
}

impl Journal for MemoryJournal {
    fn reserve(&mut self, _space: Space, _pool: &mut Pool) -> Result<(), JournalError> {
        Ok(())
    }

    #[inline]
    fn append_draw(&mut self, _draw: Draw) -> Result<(), JournalError> {
        self.draws += 1;
        Ok(())
    }

    fn append_update(&mut self, _index: ItemIndex, _item: &ItemState) -> Result<(), JournalError> {
        self.updates += 1;
        Ok(())
    }

    #[inline]
    fn commit(&mut self, _last: RequestId) -> Result<GroupSeq, JournalError> {
        self.group.0 += 1;
        Ok(self.group)
    }

    #[inline]
    fn durable(&mut self) -> Result<GroupSeq, JournalError> {
        Ok(self.group)
    }

    fn close(&mut self, _pool: &Pool) -> Result<(), JournalError> {
        Ok(())
    }
}
