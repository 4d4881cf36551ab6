//! The doorbell: one thread sleeps until another has published something it waits for,
//! without a lost wake-up and without a lock or a system call on the publishing side while
//! nobody sleeps.
//!
//! # Protocol (Dekker)
//!
//! ```text
//!  sleeper (`sleep`)                          ringer (`ring`, after publishing)
//!  register the thread (lock, cold)           publish: ring push, queue push, Release store
//!  sleeping := true        (Relaxed)          fence(SeqCst)                       ─┐ pair
//!  fence(SeqCst)                          ◀───────────────────────────────────────┘
//!  if !ready(): park (with a timeout)         if sleeping (Relaxed): unpark the thread (cold)
//!  sleeping := false       (Relaxed)
//! ```
//!
//! The two SeqCst fences are ordered one way or the other. If the ringer's comes first, the
//! sleeper's `ready()` (after its own fence) sees what was published before the ringer's
//! fence, and does not park. If the sleeper's comes first, the ringer's load (after its own
//! fence) sees `sleeping == true` and unparks it; an unpark that lands before the park leaves
//! a token, so the park returns at once. Either way a published event is never slept through.
//! A stale `sleeping` seen by a ringer costs one spurious unpark, which every caller absorbs
//! (it re-checks and, at worst, sleeps again). The flag is a plain store: the fence after it
//! carries the ordering (loom models fences fully, SeqCst stores only as AcqRel).
//!
//! Used three times: the core thread sleeps on its `ingress::Intake`'s bell
//! (rung by clients after a push), a client sleeps on its completion slots' bell (rung by the
//! core after a publish), and the flusher sleeps on its job queue's bell (rung by the core
//! after a push). `tests/loom_slots.rs` models this type itself under `--cfg loom`.
//!
//! Public (`rewardpool::Doorbell`) for callers that bridge other runtimes to the engine: the
//! service's gateway threads sleep on one, rung by the async tasks that hand them jobs, so
//! there is one handshake in the code base, not a copy per user.

use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::{current, fence, park_timeout, AtomicBool, Mutex, Ordering, Thread};

/// A wake-up handshake between one sleeping thread (one at a time) and any number of
/// ringers. See the module docs for the protocol.
pub struct Doorbell {
    /// True while the sleeper is between its fence and the end of its park. Its own cache
    /// line: every `ring` reads it, and it changes only when the sleeper sleeps.
    sleeping: CachePadded<AtomicBool>,
    /// The thread to unpark, registered by each `sleep` (a client may move between threads).
    /// Locked only on the cold paths: by a sleeper about to park, by a ringer that saw
    /// `sleeping`.
    sleeper: Mutex<Option<Thread>>,
}

impl std::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doorbell").finish_non_exhaustive()
    }
}

impl Default for Doorbell {
    fn default() -> Doorbell {
        Doorbell::new()
    }
}

impl Doorbell {
    /// A bell nobody sleeps on yet.
    #[must_use]
    pub fn new() -> Doorbell {
        Doorbell { sleeping: CachePadded::new(AtomicBool::new(false)), sleeper: Mutex::new(None) }
    }

    /// Ringer side, after publishing: wakes the sleeper if it sleeps or is about to. A fence
    /// and a load while nobody sleeps (~20–40 ns): call it after pushing work that someone
    /// waits for, not after every push.
    #[inline]
    pub fn ring(&self) {
        // SeqCst fence: orders the caller's publish (before this call) before the load of
        // `sleeping`; pairs with the fence in `sleep` between its store of `sleeping` and its
        // `ready()` check (Dekker, module docs).
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fences above and in `sleep`; it publishes nothing itself.
        if self.sleeping.load(Ordering::Relaxed) {
            self.wake();
        }
    }

    #[cold]
    fn wake(&self) {
        if let Some(thread) = self.sleeper.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            thread.unpark();
        }
    }

    /// Sleeper side: parks the calling thread for at most `timeout` unless `ready()` says
    /// what it waits for is published. `ready` runs after the fence, so it sees any publish
    /// whose `ring` did not see this sleep; it should read with Acquire what the ringer
    /// published with Release. May return early (a stale ring, the timeout): callers re-check.
    pub fn sleep(&self, timeout: Duration, ready: impl FnOnce() -> bool) {
        *self.sleeper.lock().unwrap_or_else(|e| e.into_inner()) = Some(current());
        // Relaxed: the fence below orders it before `ready()`; pairs with the fence in `ring`.
        self.sleeping.store(true, Ordering::Relaxed);
        // SeqCst fence: pairs with the fence in `ring` (Dekker, module docs).
        fence(Ordering::SeqCst);
        if !ready() {
            park_timeout(timeout);
        }
        // Relaxed: a ringer that still sees `true` unparks once more, which is harmless.
        self.sleeping.store(false, Ordering::Relaxed);
    }
}
