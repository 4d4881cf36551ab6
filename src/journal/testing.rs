//! A journal that fails on demand, for tests of the engine's failure path (SPEC §2.9).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{GroupSeq, Journal, JournalError, MemoryJournal, Space};
use crate::pool::{Draw, ItemIndex, ItemState, Pool, RequestId};

/// Behaves like [`MemoryJournal`] until told to fail, then returns [`JournalError::Injected`]
/// (or the I/O error given to [`FailSwitch::fail_with`]) from every call. It can also hold groups back ("not yet durable") to test that nothing is
/// acknowledged early.
#[derive(Debug)]
pub struct FailingJournal {
    inner: MemoryJournal,
    control: Arc<FailSwitch>,
    /// The newest group reported durable: groups committed while held are not.
    reported: GroupSeq,
    /// The last request id of the newest group committed (the memory journal makes a group
    /// durable at its commit).
    committed_request_id: u64,
}

/// The test's handle on a [`FailingJournal`].
#[derive(Debug, Default)]
pub struct FailSwitch {
    fail: AtomicBool,
    fail_after_draws: AtomicU64,
    hold: AtomicBool,
    /// The last request id of the newest group reported durable (what may be acknowledged).
    durable_request_id: AtomicU64,
    /// What the journal fails with; `Injected` when `None`.
    error: Mutex<Option<JournalError>>,
}

impl FailSwitch {
    /// Makes every later journal call fail.
    pub fn fail_now(&self) {
        self.fail.store(true, Ordering::SeqCst);
    }

    /// Makes every later journal call fail with `e`, as if doing `context` had failed: the
    /// engine's callers then see its kind (e.g. ENOSPC as `StorageFull`).
    pub fn fail_with(&self, context: &str, e: io::Error) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(JournalError::io(context, e));
        self.fail_now();
    }

    fn error(&self) -> JournalError {
        let error = self.error.lock().unwrap_or_else(|p| p.into_inner());
        error.clone().unwrap_or(JournalError::Injected)
    }

    /// Fails once this many draws have been appended (0 = never).
    pub fn fail_after_draws(&self, draws: u64) {
        self.fail_after_draws.store(draws, Ordering::SeqCst);
    }

    /// While held, no group becomes durable.
    pub fn hold(&self, hold: bool) {
        self.hold.store(hold, Ordering::SeqCst);
    }

    /// The last request id of the newest group the journal reported durable: no draw above
    /// it may have been acknowledged.
    #[must_use]
    pub fn durable_request_id(&self) -> u64 {
        self.durable_request_id.load(Ordering::SeqCst)
    }
}

impl FailingJournal {
    /// A journal and the switch that makes it fail.
    #[must_use]
    pub fn new() -> (FailingJournal, Arc<FailSwitch>) {
        let control = Arc::new(FailSwitch::default());
        (
            FailingJournal {
                inner: MemoryJournal::new(),
                control: Arc::clone(&control),
                reported: GroupSeq(0),
                committed_request_id: 0,
            },
            control,
        )
    }

    fn check(&self) -> Result<(), JournalError> {
        let limit = self.control.fail_after_draws.load(Ordering::SeqCst);
        if self.control.fail.load(Ordering::SeqCst) || (limit > 0 && self.inner.draws() >= limit) {
            return Err(self.control.error());
        }
        Ok(())
    }
}

impl Journal for FailingJournal {
    fn reserve(&mut self, space: Space, pool: &mut Pool) -> Result<(), JournalError> {
        self.check()?;
        self.inner.reserve(space, pool)
    }

    fn append_draw(&mut self, draw: Draw) -> Result<(), JournalError> {
        self.check()?;
        self.inner.append_draw(draw)
    }

    fn append_update(&mut self, index: ItemIndex, item: &ItemState) -> Result<(), JournalError> {
        self.check()?;
        self.inner.append_update(index, item)
    }

    fn commit(&mut self, last: RequestId) -> Result<GroupSeq, JournalError> {
        self.check()?;
        let group = self.inner.commit(last)?;
        self.committed_request_id = last.0;
        if !self.control.hold.load(Ordering::SeqCst) {
            self.reported = group;
            self.control.durable_request_id.store(last.0, Ordering::SeqCst);
        }
        Ok(group)
    }

    fn durable(&mut self) -> Result<GroupSeq, JournalError> {
        self.check()?;
        if !self.control.hold.load(Ordering::SeqCst) {
            self.reported = self.inner.durable()?;
            self.control.durable_request_id.store(self.committed_request_id, Ordering::SeqCst);
        }
        Ok(self.reported)
    }

    fn close(&mut self, pool: &Pool) -> Result<(), JournalError> {
        self.check()?;
        self.inner.close(pool)
    }
}
