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
//! 5. A pull's items go to the block's *pull area*, a second ring of item words sized at
//!    client creation: the request names where its first item goes (`at`), the core stores
//!    item `j` at `at + j` with `Relaxed` stores before it writes the request's slot, and the
//!    same `completed` store publishes both. The client hands out area positions in request
//!    order and takes them back when it releases the request, never handing out more than
//!    the area holds (`Client::try_pull` answers `Full` instead), so the core never
//!    overwrites an item the client has not read.
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
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, Doorbell, Ordering};

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
    /// A pull of this many draws; its items are in the pull area, its request id is the
    /// first of the pull's consecutive ids.
    Pulled(u32),
    /// A keyed draw's retry: the original draw handed out this item (its request id is the
    /// original's).
    ReplayedItem(ItemIndex),
    /// A keyed draw's retry: the original draw found nothing.
    ReplayedEmpty,
    /// A keyed pull's retry: the original's outcomes are in the pull area, its first
    /// request id in the slot.
    ReplayedPull(u32),
    /// The request's key is known with another count (this many draws): nothing was done.
    KeyConflict(u32),
}

const STATUS_ITEM: u64 = 1;
const STATUS_EMPTY: u64 = 2;
const STATUS_STOPPED: u64 = 3;
const STATUS_FAILED: u64 = 4;
const STATUS_REJECTED: u64 = 5;
const STATUS_PULLED: u64 = 6;
const STATUS_REPLAYED_ITEM: u64 = 7;
const STATUS_REPLAYED_EMPTY: u64 = 8;
const STATUS_REPLAYED_PULL: u64 = 9;
const STATUS_KEY_CONFLICT: u64 = 10;

/// A pull-area word for a draw that found nothing (item indices stay below
/// `pool::ITEM_COUNT_MAX`, far from it).
const AREA_EMPTY: u32 = u32::MAX;

impl Completion {
    fn encode(self) -> u64 {
        match self {
            Completion::Item(ItemIndex(i)) => (STATUS_ITEM << 32) | u64::from(i),
            Completion::Empty => STATUS_EMPTY << 32,
            Completion::Stopped => STATUS_STOPPED << 32,
            Completion::Failed => STATUS_FAILED << 32,
            Completion::Rejected => STATUS_REJECTED << 32,
            Completion::Pulled(len) => (STATUS_PULLED << 32) | u64::from(len),
            Completion::ReplayedItem(ItemIndex(i)) => (STATUS_REPLAYED_ITEM << 32) | u64::from(i),
            Completion::ReplayedEmpty => STATUS_REPLAYED_EMPTY << 32,
            Completion::ReplayedPull(len) => (STATUS_REPLAYED_PULL << 32) | u64::from(len),
            Completion::KeyConflict(count) => (STATUS_KEY_CONFLICT << 32) | u64::from(count),
        }
    }

    fn decode(word: u64) -> Completion {
        match word >> 32 {
            STATUS_ITEM => Completion::Item(ItemIndex(word as u32)),
            STATUS_EMPTY => Completion::Empty,
            STATUS_STOPPED => Completion::Stopped,
            STATUS_REJECTED => Completion::Rejected,
            STATUS_PULLED => Completion::Pulled(word as u32),
            STATUS_REPLAYED_ITEM => Completion::ReplayedItem(ItemIndex(word as u32)),
            STATUS_REPLAYED_EMPTY => Completion::ReplayedEmpty,
            STATUS_REPLAYED_PULL => Completion::ReplayedPull(word as u32),
            STATUS_KEY_CONFLICT => Completion::KeyConflict(word as u32),
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
    /// The pull area: one item word per draw of a pull in flight (`AREA_EMPTY` for none).
    area: Box<[AtomicU32]>,
    area_mask: u64,
}

impl std::fmt::Debug for SlotBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotBlock")
            .field("completed", &self.completed.load(Ordering::Relaxed))
            .field("capacity", &self.slots.len())
            .field("area_len", &self.area.len())
            .finish_non_exhaustive()
    }
}

impl SlotBlock {
    /// `capacity` slots, rounded up to a power of two, and a pull area of one word (the
    /// loom models and unit tests; clients are made with [`SlotBlock::with_area`]).
    #[cfg(any(test, loom))]
    #[must_use]
    pub fn new(capacity: usize) -> SlotBlock {
        SlotBlock::with_area(capacity, 1)
    }

    /// `capacity` slots and a pull area of `area_len` item words, both rounded up to a
    /// power of two.
    #[must_use]
    pub fn with_area(capacity: usize, area_len: usize) -> SlotBlock {
        let capacity = capacity.max(1).next_power_of_two();
        let area_len = area_len.max(1).next_power_of_two();
        let slots = (0..capacity)
            .map(|_| Slot { request_id: AtomicU64::new(0), completion: AtomicU64::new(0) })
            .collect();
        SlotBlock {
            completed: CachePadded::new(AtomicU64::new(0)),
            bell: Doorbell::new(),
            closed: AtomicBool::new(false),
            slots,
            mask: capacity as u64 - 1,
            area: (0..area_len).map(|_| AtomicU32::new(AREA_EMPTY)).collect(),
            area_mask: area_len as u64 - 1,
        }
    }

    /// Item words in the pull area (a power of two).
    #[must_use]
    pub fn area_len(&self) -> usize {
        self.area.len()
    }

    /// Core side: records the item of a pull's draw at area position `at` (not yet
    /// visible; the request's slot is written after its last item).
    #[inline]
    pub fn write_item(&self, at: u64, item: Option<ItemIndex>) {
        let word = item.map_or(AREA_EMPTY, |ItemIndex(i)| i);
        debug_assert_ne!(item.map(|ItemIndex(i)| i), Some(AREA_EMPTY));
        // Relaxed: made visible by the Release store of `completed` in `publish`.
        self.area[(at & self.area_mask) as usize].store(word, Ordering::Relaxed);
    }

    /// Client side: the item at area position `at`; only valid for a pull whose request
    /// is below `completed()`.
    #[inline]
    #[must_use]
    pub fn read_item(&self, at: u64) -> Option<ItemIndex> {
        // Relaxed: ordered after the core's stores by the Acquire load in `completed`.
        let word = self.area[(at & self.area_mask) as usize].load(Ordering::Relaxed);
        (word != AREA_EMPTY).then_some(ItemIndex(word))
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
            Completion::Pulled(1),
            Completion::Pulled(u32::MAX),
            Completion::ReplayedItem(ItemIndex(3)),
            Completion::ReplayedEmpty,
            Completion::ReplayedPull(10),
            Completion::KeyConflict(7),
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

    #[test]
    fn the_pull_area_wraps_at_its_length() {
        let block = SlotBlock::with_area(2, 5);
        assert_eq!(block.area_len(), 8);
        block.write_item(9, Some(ItemIndex(4)));
        block.write_item(10, None);
        block.publish(1);
        assert_eq!(block.read_item(1), Some(ItemIndex(4)));
        assert_eq!(block.read_item(2), None);
    }
}
