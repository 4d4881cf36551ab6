//! Completion slots: where the core thread publishes outcomes to one client.
//!
//! # Protocol
//!
//! Each client owns one `SlotBlock` with `capacity` slots; its request number `seq` (0, 1, 2,
//! ... in push order) uses slot `seq % capacity`. The core thread serves one client's requests
//! in ring order, so it completes them in `seq` order too.
//!
//! 1. The core pops request `seq` and writes its outcome into the slot with `Relaxed` stores
//!    (it may do so long before the outcome is durable).
//! 2. Once the group holding the request is durable, the core stores `completed = seq + 1`
//!    with `Release`, then rings the block's [`Doorbell`].
//! 3. The client loads `completed` with `Acquire`; every slot below it holds a final outcome
//!    (the `Release`/`Acquire` pair orders the slot stores of step 1 before the loads). A
//!    client that waits long sleeps on the doorbell until `completed` passes its request.
//! 4. The client never has more than `capacity` requests that it has not read yet
//!    (`Client` checks `sent - released < capacity` before pushing), so the core never
//!    overwrites a slot the client has not read: the core writes slot `seq` only after popping
//!    request `seq`, which the client pushed only after reading request `seq - capacity`.
//!
//! Everything is an atomic, so the protocol needs no `unsafe`; its ordering is exercised by
//! the stress tests in `tests/it/engine.rs`, and `tests/loom_slots.rs` models this very type
//! (its atomics and doorbell are loom's under `--cfg loom`).
#![cfg_attr(
    not(loom),
    allow(unreachable_pub, reason = "public only for the loom models under `--cfg loom`")
)]

use crossbeam_utils::CachePadded;

use crate::pool::{ItemIndex, RequestId};
use crate::sync::{AtomicBool, AtomicU64, Doorbell, Ordering};

/// What a completed request produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// A draw that handed out this item.
    Item(ItemIndex),
    /// A draw that found nothing available.
    Empty,
    /// The engine stopped before the request was durable (shutdown or I/O failure).
    Stopped,
    /// The engine failed (journal error) before the request was durable.
    Failed,
    /// Not served: the log had no space for a new segment (the engine goes on).
    Rejected,
}

const STATUS_ITEM: u64 = 1;
const STATUS_EMPTY: u64 = 2;
const STATUS_STOPPED: u64 = 3;
const STATUS_FAILED: u64 = 4;
const STATUS_REJECTED: u64 = 5;

impl Completion {
    fn encode(self) -> u64 {
        match self {
            Completion::Item(ItemIndex(i)) => (STATUS_ITEM << 32) | u64::from(i),
            Completion::Empty => STATUS_EMPTY << 32,
            Completion::Stopped => STATUS_STOPPED << 32,
            Completion::Failed => STATUS_FAILED << 32,
            Completion::Rejected => STATUS_REJECTED << 32,
        }
    }

    fn decode(word: u64) -> Completion {
        match word >> 32 {
            STATUS_ITEM => Completion::Item(ItemIndex(word as u32)),
            STATUS_EMPTY => Completion::Empty,
            STATUS_STOPPED => Completion::Stopped,
            STATUS_REJECTED => Completion::Rejected,
            _ => Completion::Failed,
        }
    }
}

struct Slot {
    request_id: AtomicU64,
    completion: AtomicU64,
}

/// One client's completion slots and its wake-up state.
pub struct SlotBlock {
    /// Number of requests whose outcome is final. Written by the core only.
    completed: CachePadded<AtomicU64>,
    /// The client sleeps on it; the core rings it after publishing. Its lock is taken only
    /// by a client about to sleep (it has given up on low latency already) and by the core
    /// when the client sleeps.
    bell: Doorbell,
    /// Set when the client is dropped; the core then releases its port.
    closed: AtomicBool,
    slots: Box<[Slot]>,
    mask: u64,
}

impl std::fmt::Debug for SlotBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotBlock")
            .field("completed", &self.completed.load(Ordering::Relaxed))
            .field("capacity", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl SlotBlock {
    /// `capacity` slots, rounded up to a power of two.
    #[must_use]
    pub fn new(capacity: usize) -> SlotBlock {
        let capacity = capacity.max(1).next_power_of_two();
        let slots = (0..capacity)
            .map(|_| Slot { request_id: AtomicU64::new(0), completion: AtomicU64::new(0) })
            .collect();
        SlotBlock {
            completed: CachePadded::new(AtomicU64::new(0)),
            bell: Doorbell::new(),
            closed: AtomicBool::new(false),
            slots,
            mask: capacity as u64 - 1,
        }
    }

    /// Slots in the block (a power of two).
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Core side: records the outcome of request `seq` (not yet visible to the client).
    #[inline]
    pub fn write(&self, seq: u64, request_id: RequestId, completion: Completion) {
        let slot = &self.slots[(seq & self.mask) as usize];
        // Relaxed: made visible by the Release store of `completed` in `publish`.
        slot.request_id.store(request_id.0, Ordering::Relaxed);
        slot.completion.store(completion.encode(), Ordering::Relaxed);
    }

    /// Core side: makes every request below `completed` visible to the client, and wakes
    /// the client if it sleeps.
    #[inline]
    pub fn publish(&self, completed: u64) {
        debug_assert!(completed >= self.completed.load(Ordering::Relaxed));
        // Release: publishes the slot stores of `write` to the client's Acquire in `completed`.
        self.completed.store(completed, Ordering::Release);
        // Its SeqCst fence orders the store above before the load of the sleeping flag;
        // pairs with the fence in `park_until`'s `Doorbell::sleep`, before its `completed`
        // check (Dekker): no lost wake-up.
        self.bell.ring();
    }

    /// Client side: how many requests are complete.
    #[inline]
    #[must_use]
    pub fn completed(&self) -> u64 {
        // Acquire: pairs with the Release store in `publish`.
        self.completed.load(Ordering::Acquire)
    }

    /// Client side: the outcome of request `seq`; only valid when `seq < completed()`.
    #[inline]
    #[must_use]
    pub fn read(&self, seq: u64) -> (RequestId, Completion) {
        let slot = &self.slots[(seq & self.mask) as usize];
        // Relaxed: ordered after the core's stores by the Acquire load in `completed`.
        let request_id = RequestId(slot.request_id.load(Ordering::Relaxed));
        let completion = Completion::decode(slot.completion.load(Ordering::Relaxed));
        (request_id, completion)
    }

    /// Client side: parks the calling thread until `completed() > seq` or `timeout` passes
    /// (it may return earlier: callers re-check `completed`).
    pub fn park_until(&self, seq: u64, timeout: std::time::Duration) {
        // Acquire: pairs with the Release store in `publish`; read after the doorbell's
        // fence, which pairs with the fence of `publish`'s ring.
        self.bell.sleep(timeout, || self.completed.load(Ordering::Acquire) > seq);
    }

    /// Client side: the client is gone; the core then releases its port.
    pub fn close(&self) {
        // Release: the core's Acquire load in `is_closed` sees every push made before.
        self.closed.store(true, Ordering::Release);
    }

    /// Core side: true once the client is gone.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with `close`.
        self.closed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_round_trips() {
        for c in [
            Completion::Item(ItemIndex(0)),
            Completion::Item(ItemIndex(u32::MAX)),
            Completion::Empty,
            Completion::Stopped,
            Completion::Failed,
            Completion::Rejected,
        ] {
            assert_eq!(Completion::decode(c.encode()), c);
        }
    }

    #[test]
    fn slots_wrap_at_capacity() {
        let block = SlotBlock::new(3);
        assert_eq!(block.capacity(), 4);
        block.write(5, RequestId(9), Completion::Empty);
        block.publish(6);
        assert_eq!(block.read(1 + 4), (RequestId(9), Completion::Empty));
    }
}
