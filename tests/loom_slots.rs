//! Loom models of the completion slots and the doorbell, driving the engine's own types.
//!
//! Run with `tools/loom.sh` (`RUSTFLAGS="--cfg loom" cargo test --test loom_slots`, in its own
//! target directory). Under `--cfg loom` the crate builds its `sync` shim on loom's atomics,
//! lock and park, and opens `rewardpool::loom_api`: these models call the real
//! `SlotBlock::{write, publish, completed, read, park_until}` and `Doorbell::{ring, sleep}`,
//! so they cannot drift from the code they check. What they check:
//!
//! - the core writes a slot with `Relaxed` stores, then stores `completed` with `Release`;
//!   the client loads `completed` with `Acquire`, then reads the slot with `Relaxed` loads;
//! - the client never has more than `capacity` unread requests, so the core never
//!   overwrites a slot the client has not read;
//! - the doorbell's Dekker handshake (sleeper: flag, `fence(SeqCst)`, re-check, park; ringer:
//!   publish, `fence(SeqCst)`, load the flag, unpark) never loses a wake-up, for the client
//!   sleeping on its slots and for the core (or the flusher) sleeping on its queue.
//!
//! Loom's park has no timeout (the shim maps `park_timeout` to `park`), so a lost wake-up is a
//! deadlock that loom reports. Loom 0.7 models `fence(SeqCst)` fully (SeqCst loads and stores
//! only as AcqRel), which is why the doorbell's ordering is carried by its fences.
//!
//! The ring stands in for rtrb (its Release store of the tail, Acquire load), and the
//! client's loop is `Client::wait`'s without its spin and yield phases (the `Idle` policy,
//! which only delays the park).
#![cfg(loom)]

use std::time::Duration;

use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use rewardpool::loom_api::{Completion, Doorbell, SlotBlock};
use rewardpool::{ItemIndex, RequestId};

/// Never reached under loom (its park has no timeout); the engine's parks have one.
const TIMEOUT: Duration = Duration::from_secs(1);

/// `Client::wait`'s loop, with the spin and yield phases folded into the park.
fn wait(block: &SlotBlock, seq: u64) -> (RequestId, Completion) {
    while block.completed() <= seq {
        block.park_until(seq, TIMEOUT);
    }
    block.read(seq)
}

/// Waits for a model thread to end without `JoinHandle::join`: loom 0.7 aborts when a thread
/// blocked in `join` is unparked (tokio-rs/loom#249), and the core may unpark the client
/// after the client has stopped waiting (a stale sleeping flag seen just before it was
/// cleared), which std allows (the token is left for a later park).
fn join_by_flag(done: &AtomicBool) {
    while !done.load(Ordering::Acquire) {
        thread::yield_now();
    }
}

/// The outcome the core writes for request `seq` (any value the client can check).
fn outcome(seq: u64) -> (RequestId, Completion) {
    (RequestId(100 + seq), Completion::Item(ItemIndex(seq as u32)))
}

/// One request: the core writes and publishes; the client parks until it sees the outcome.
/// Checks publication (Release/Acquire) and the doorbell between core and client.
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
        assert_eq!(wait(&block, 0), outcome(0));
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
        assert_eq!(block.capacity() as u64, CAPACITY);
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
            assert_eq!(wait(&block, released), outcome(released));
            released += 1;
        }
        join_by_flag(&done);
    });
}

/// The core's (and the flusher's) doorbell: a caller that pushes and rings cannot leave the
/// sleeper parked with work in its queue. The sleeper is `Core::park` / `Flusher::idle`: sleep
/// unless the queue has work, re-check, repeat.
#[test]
fn ring_never_loses_the_sleepers_wakeup() {
    loom::model(|| {
        let ring = Arc::new(Ring { tail: AtomicU64::new(0) });
        let bell = Arc::new(Doorbell::new());
        let done = Arc::new(AtomicBool::new(false));
        {
            let ring = Arc::clone(&ring);
            let bell = Arc::clone(&bell);
            let done = Arc::clone(&done);
            thread::spawn(move || {
                while ring.tail.load(Ordering::Acquire) == 0 {
                    bell.sleep(TIMEOUT, || ring.tail.load(Ordering::Acquire) > 0);
                }
                done.store(true, Ordering::Release);
            });
        }
        // A caller: push, then ring (`Intake::wake_core`, `FlushState::push`).
        ring.tail.store(1, Ordering::Release);
        bell.ring();
        join_by_flag(&done);
    });
}

/// Two ringers, one sleeper waiting for both pushes (two clients and the core): every push
/// is seen, whichever ring the sleeper's registration races with.
#[test]
fn two_ringers_wake_one_sleeper() {
    loom::model(|| {
        let ring = Arc::new(Ring { tail: AtomicU64::new(0) });
        let bell = Arc::new(Doorbell::new());
        let done = Arc::new(AtomicBool::new(false));
        {
            let ring = Arc::clone(&ring);
            let bell = Arc::clone(&bell);
            let done = Arc::clone(&done);
            thread::spawn(move || {
                while ring.tail.load(Ordering::Acquire) < 2 {
                    bell.sleep(TIMEOUT, || ring.tail.load(Ordering::Acquire) >= 2);
                }
                done.store(true, Ordering::Release);
            });
        }
        {
            let ring = Arc::clone(&ring);
            let bell = Arc::clone(&bell);
            thread::spawn(move || {
                ring.tail.fetch_add(1, Ordering::Release);
                bell.ring();
            });
        }
        ring.tail.fetch_add(1, Ordering::Release);
        bell.ring();
        join_by_flag(&done);
    });
}
