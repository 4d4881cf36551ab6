//! How threads wait for each other: the [`Doorbell`] wake-up handshake and the [`Idle`]
//! policy (spin, then yield, then sleep), shared by the core thread, the completion slots and
//! the flusher. Low in the tree so that `ingress`, `engine` and `wal` all use it without an
//! arrow running up.
//!
//! The handshakes build on the atomics, the lock and the park/unpark re-exported here: std's
//! in a normal build, loom's under `--cfg loom`, so `tests/loom_slots.rs` models the real
//! [`Doorbell`] and completion slots, not a copy of them (the `primitive` shim of crossbeam).

mod doorbell;
mod idle;

pub use doorbell::Doorbell;
pub(crate) use idle::Idle;
pub use idle::IdleConfig;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Mutex;
#[cfg(not(loom))]
pub(crate) use std::thread::{current, park_timeout, Thread};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(loom)]
pub(crate) use loom::thread::{current, Thread};

/// Loom has no timed park: a model parks until it is unparked, so a lost wake-up is a
/// deadlock that loom reports rather than a delay the timeout hides.
#[cfg(loom)]
pub(crate) fn park_timeout(_timeout: std::time::Duration) {
    loom::thread::park();
}
