//! A head start on the key window's memory: a helper thread makes the window's pages
//! present (`KeyPages::populate`) once the first key arrives, so that the core thread finds
//! them mapped instead of paying the kernel's first-touch zeroing on its own time (see
//! `pool::keys`, "Cost").
//!
//! Who pays: nothing happens until a key arrives, so a pool that never sees one keeps its
//! window unbacked (no resident memory, no zeroing); one that does gets the whole window
//! resident (~120 bytes a key: ~120 MB at the default 1 M keys) within a fraction of a
//! second, which it would reach anyway as the window fills. The helper runs at idle
//! priority: on a busy machine the core thread faults pages in itself, as without it. The
//! helper waits parked (a small stack) and is woken once; it stops between stretches when
//! the core thread ends, and the core thread joins it before its pool (and the window) is
//! dropped.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::pool::KeyPages;

/// Populated per call: small enough to stop promptly, large enough for huge pages.
const STRETCH: usize = 2 << 20;
/// The helper's stack: it only loops over `madvise`.
const STACK: usize = 64 << 10;

const WAIT: u8 = 0;
const GO: u8 = 1;
const STOP: u8 = 2;

/// The helper thread of one engine, owned by the core thread.
pub(crate) struct Prefault {
    state: Arc<AtomicU8>,
    thread: Option<JoinHandle<usize>>,
    woken: bool,
}

impl Prefault {
    /// Spawns the helper, parked, for the window `pages`. `None` if the thread cannot be
    /// spawned: the window then simply faults in as keys arrive.
    pub(crate) fn spawn(pages: KeyPages) -> Option<Prefault> {
        let state = Arc::new(AtomicU8::new(WAIT));
        let theirs = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("rewardpool-keys".into())
            .stack_size(STACK)
            .spawn(move || {
                loop {
                    // Acquire: pairs with the Release of `wake`/`drop`.
                    match theirs.load(Ordering::Acquire) {
                        GO => break,
                        STOP => return 0,
                        _ => std::thread::park(),
                    }
                }
                idle_priority();
                pages.populate(STRETCH, || theirs.load(Ordering::Relaxed) != STOP)
            })
            .ok()?;
        Some(Prefault { state, thread: Some(thread), woken: false })
    }

    /// A key arrived: wakes the helper the first time (one futex call), nothing after.
    #[inline]
    pub(crate) fn key_arrived(&mut self) {
        if !self.woken {
            self.wake();
        }
    }

    #[cold]
    fn wake(&mut self) {
        self.woken = true;
        self.state.store(GO, Ordering::Release);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

impl Drop for Prefault {
    /// Stops the helper (between two stretches) and waits for it, so that the window
    /// outlives every `madvise` on it.
    fn drop(&mut self) {
        self.state.store(STOP, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Runs the calling thread only when a CPU would otherwise idle (Linux `SCHED_IDLE`): the
/// head start is opportunistic and never takes a core from the engine or its callers. On the
/// 2-core machine, 12 interleaved runs of `bench --pull 10 --keys` each: keyed/keyless median
/// 0.80 either way, worst run 0.69 at idle priority against 0.51 at normal priority (when the
/// machine runs fast, a normal-priority helper competed with the producer for a core).
fn idle_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: FFI call with a valid pointer to a local `sched_param`; pid 0 = this thread.
        #[allow(unsafe_code)]
        let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    }
}
