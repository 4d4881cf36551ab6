//! What every client sees of the core thread: its doorbell, whether intake is closed,
//! whether it has stopped, and why it failed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use crate::journal::{FailureKind, JournalError};
use crate::sync::Doorbell;

/// Shared by the engine handle, its clients and the core thread.
#[derive(Debug, Default)]
pub(crate) struct Intake {
    /// Rung by callers after pushing work they will wait for (a ring record, a control
    /// command, a registration); the core thread sleeps on it when idle.
    pub(crate) core: Doorbell,
    /// Intake is closed: new draws are refused.
    closing: AtomicBool,
    /// The core thread has published its last completion and will publish no more.
    stopped: AtomicBool,
    /// The journal's error that stopped the core; set once, before `stopped`.
    failure: OnceLock<JournalError>,
}

impl Intake {
    /// Wakes the core thread if it sleeps. Called after pushing work that the caller then
    /// waits for, not after every push (a fence costs ~20–40 ns). Begins with a SeqCst
    /// fence (`Doorbell::ring`), which `Shared::push_control` relies on too.
    #[inline]
    pub(crate) fn wake_core(&self) {
        self.core.ring();
    }

    /// Refuses new draws from now on.
    pub(crate) fn close(&self) {
        // Release: pairs with the Acquire in `is_closing` (clients' `try_draw`).
        self.closing.store(true, Ordering::Release);
    }

    #[inline]
    pub(crate) fn is_closing(&self) -> bool {
        // Acquire: pairs with the Release store in `close`.
        self.closing.load(Ordering::Acquire)
    }

    /// Core side, after its last publish: the core will publish nothing more.
    pub(crate) fn set_stopped(&self) {
        // Release: every publish before it happens-before a caller's Acquire in `is_stopped`.
        self.stopped.store(true, Ordering::Release);
    }

    #[inline]
    pub(crate) fn is_stopped(&self) -> bool {
        // Acquire: pairs with the core's Release store in `set_stopped`, after its last
        // publish, so a caller that sees `stopped` also sees every completion.
        self.stopped.load(Ordering::Acquire)
    }

    /// Records why the engine failed (before the core stops); the first error stays.
    pub(crate) fn fail(&self, error: JournalError) {
        let _ = self.failure.set(error);
    }

    /// Why the engine failed, if it did.
    pub(crate) fn failure(&self) -> Option<&JournalError> {
        self.failure.get()
    }

    /// The kind of the failure, if the engine failed (no lock, no allocation).
    pub(crate) fn failure_kind(&self) -> Option<FailureKind> {
        self.failure.get().map(JournalError::kind)
    }
}
