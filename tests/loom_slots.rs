//! Loom model of the completion-slot protocol and the wake-up handshakes of the engine.
//!
//! Run with `tools/loom.sh` (`RUSTFLAGS="--cfg loom" cargo test --test loom_slots --release`).
//!
//! **This mirrors `src/engine/slots.rs` (`SlotBlock::{write, publish, completed, read,
//! park_until}`), `Client::{try_draw, wait}` and `Shared::notify` / `Core::park`, and must be
//! kept in sync with them**: the engine uses std atomics directly, so the model re-implements
//! the same protocol here with loom's atomics, with the same orderings:
//!
//! - the core writes a slot with `Relaxed` stores, then stores `completed` with `Release`;
//!   the client loads `completed` with `Acquire`, then reads the slot with `Relaxed` loads;
//! - the client never has more than `capacity` unread requests, so the core never
//!   overwrites a slot the client has not read;
//! - `waiting` / `completed` form a Dekker handshake (client: store `waiting`,
//!   `fence(SeqCst)`, load `completed`, park; core: store `completed`, `fence(SeqCst)`,
//!   load `waiting`, unpark): the client cannot park forever once the core has published;
//! - `core_sleeping` / ring: client pushes, `fence(SeqCst)`, loads `core_sleeping`; core
//!   stores `core_sleeping` SeqCst, `fence(SeqCst)`, re-checks the ring, parks.
//!
//! Parks here have no timeout (the engine's do), so a lost wake-up is a deadlock that loom
//! reports. Every handshake uses `fence(SeqCst)`, which loom 0.7 models fully (it treats
//! SeqCst loads and stores as AcqRel), so the model is literal: the same orderings as the
//! engine.
#![cfg(loom)]

use loom::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread::{self, Thread};

/// One completion slot (`slots.rs::Slot`).
struct Slot {
    request_id: AtomicU64,
    completion: AtomicU64,
}

/// `slots.rs::SlotBlock`, reduced to what the protocol needs.
struct SlotBlock {
    completed: AtomicU64,
    waiting: AtomicBool,
    waiter: Mutex<Option<Thread>>,
    slots: Vec<Slot>,
    mask: u64,
}

impl SlotBlock {
    fn new(capacity: usize) -> SlotBlock {
        SlotBlock {
            completed: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            waiter: Mutex::new(None),
            slots: (0..capacity)
                .map(|_| Slot { request_id: AtomicU64::new(0), completion: AtomicU64::new(0) })
                .collect(),
            mask: capacity as u64 - 1,
        }
    }

    /// `SlotBlock::write`: Relaxed stores.
    fn write(&self, seq: u64, request_id: u64, completion: u64) {
        let slot = &self.slots[(seq & self.mask) as usize];
        slot.request_id.store(request_id, Ordering::Relaxed);
        slot.completion.store(completion, Ordering::Relaxed);
    }

    /// `SlotBlock::publish`: Release store of `completed`, fence, Relaxed load of `waiting`.
    fn publish(&self, completed: u64) {
        self.completed.store(completed, Ordering::Release);
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) {
            if let Some(t) = self.waiter.lock().unwrap().as_ref() {
                t.unpark();
            }
        }
    }

    /// `SlotBlock::completed`: Acquire.
    fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// `SlotBlock::read`: Relaxed loads.
    fn read(&self, seq: u64) -> (u64, u64) {
        let slot = &self.slots[(seq & self.mask) as usize];
        (slot.request_id.load(Ordering::Relaxed), slot.completion.load(Ordering::Relaxed))
    }

    /// `SlotBlock::park_until`, without the timeout.
    fn park_until(&self, seq: u64) {
        *self.waiter.lock().unwrap() = Some(thread::current());
        self.waiting.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.completed.load(Ordering::Acquire) <= seq {
            thread::park();
        }
        self.waiting.store(false, Ordering::Relaxed);
    }

    /// `Client::wait`'s loop, with the spin and yield phases folded into the park.
    fn wait(&self, seq: u64) -> (u64, u64) {
        while self.completed() <= seq {
            self.park_until(seq);
        }
        self.read(seq)
    }
}

/// Waits for a model thread to end without `JoinHandle::join`: loom 0.7 aborts when a thread
/// blocked in `join` is unparked (tokio-rs/loom#249), and the core may unpark the client
/// after the client has stopped waiting (a stale `waiting` seen just before it was cleared),
/// which std allows (the token is left for a later park).
fn join_by_flag(done: &AtomicBool) {
    while !done.load(Ordering::Acquire) {
        thread::yield_now();
    }
}

/// The outcome the core writes for request `seq` (any value the client can check).
fn outcome(seq: u64) -> (u64, u64) {
    (100 + seq, 1 << 32 | seq)
}

/// One request: the core writes and publishes; the client parks until it sees the outcome.
/// Checks publication (Release/Acquire) and the `waiting`/`completed` handshake.
#[test]
fn publish_is_visible_and_wakes_the_client() {
    loom::model(|| {
        let block = Arc::new(SlotBlock::new(2));
        let done = Arc::new(AtomicBool::new(false));
        {
            let block = Arc::clone(&block);
            let done = Arc::clone(&done);
            thread::spawn(move || {
                let (id, c) = outcome(0);
                block.write(0, id, c);
                block.publish(1);
                done.store(true, Ordering::Release);
            });
        }
        assert_eq!(block.wait(0), outcome(0));
        join_by_flag(&done);
    });
}

/// `Ring` stands for the rtrb ring: the client's Release store of its tail, the core's
/// Acquire load of it (rtrb's own orderings).
struct Ring {
    tail: AtomicU64,
}

/// Slot reuse: capacity 2, three requests, the client reads each outcome and releases its
/// slot before pushing request `seq + capacity` (`Client::try_draw`'s bound). Every outcome
/// read must be the one written for that request: a slot overwritten early would show the
/// wrong request id.
#[test]
fn slots_are_reused_only_after_read() {
    const CAPACITY: u64 = 2;
    const REQUESTS: u64 = 3;
    loom::model(|| {
        let block = Arc::new(SlotBlock::new(CAPACITY as usize));
        let ring = Arc::new(Ring { tail: AtomicU64::new(0) });
        let done = Arc::new(AtomicBool::new(false));
        {
            let block = Arc::clone(&block);
            let ring = Arc::clone(&ring);
            let done = Arc::clone(&done);
            thread::spawn(move || {
                for seq in 0..REQUESTS {
                    // Pop request `seq` (spin on the ring; rtrb's Acquire).
                    while ring.tail.load(Ordering::Acquire) <= seq {
                        thread::yield_now();
                    }
                    let (id, c) = outcome(seq);
                    block.write(seq, id, c);
                    block.publish(seq + 1);
                }
                done.store(true, Ordering::Release);
            });
        }
        let mut sent = 0;
        let mut released = 0;
        while released < REQUESTS {
            // `try_draw`: push while fewer than `capacity` outcomes are unread.
            while sent < REQUESTS && sent - released < CAPACITY {
                sent += 1;
                ring.tail.store(sent, Ordering::Release);
            }
            assert_eq!(block.wait(released), outcome(released));
            released += 1;
        }
        join_by_flag(&done);
    });
}

/// `Shared::notify` / `Core::park`: a client that pushes and notifies cannot leave the core
/// parked with work in its ring.
#[test]
fn notify_never_loses_the_core_wakeup() {
    loom::model(|| {
        let ring = Arc::new(Ring { tail: AtomicU64::new(0) });
        let sleeping = Arc::new(AtomicBool::new(false));
        let core_thread: Arc<Mutex<Option<Thread>>> = Arc::new(Mutex::new(None));
        let core = {
            let ring = Arc::clone(&ring);
            let sleeping = Arc::clone(&sleeping);
            let core_thread = Arc::clone(&core_thread);
            thread::spawn(move || {
                *core_thread.lock().unwrap() = Some(thread::current());
                // `Core::park` until the ring has the request (no timeout here).
                loop {
                    if ring.tail.load(Ordering::Acquire) > 0 {
                        return;
                    }
                    sleeping.store(true, Ordering::SeqCst);
                    fence(Ordering::SeqCst);
                    if ring.tail.load(Ordering::Acquire) == 0 {
                        thread::park();
                    }
                    sleeping.store(false, Ordering::Relaxed);
                }
            })
        };
        // Client: push, then `notify`.
        ring.tail.store(1, Ordering::Release);
        fence(Ordering::SeqCst);
        if sleeping.load(Ordering::Relaxed) {
            // The engine's `core_thread` is set before any client exists; here the core
            // registers itself first, so the handle is there whenever `sleeping` is true.
            if let Some(t) = core_thread.lock().unwrap().as_ref() {
                t.unpark();
            }
        }
        core.join().unwrap();
    });
}
