//! The caller's side: a ring toward the core thread, completion slots back, and tickets.
//!
//! # Pulls
//! A pull ([`Client::try_pull`], [`Client::pull`]) is one ring record asking for n draws.
//! Its outcomes come back without allocating: the core writes the n items into the client's
//! *pull area*, a fixed ring of item words allocated with the client
//! (`EngineConfig::pull_area_len` words), and the request's slot carries the first request
//! id (the others follow it). The client hands out area positions in request order and
//! takes them back as it releases requests; a pull that does not fit in what is free is
//! refused with [`DrawError::Full`] (back-pressure, like a full ring), and one larger than
//! [`Client::pull_max`] with [`DrawError::PullLen`]. [`Client::wait_pull`] returns a
//! [`Pull`] that reads the items in place; [`Client::drain`] delivers a pull's n outcomes
//! one by one under its ticket id.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::ids::ItemIds;
use super::intake::Intake;
use super::port::Port;
use super::request::{Request, RequestKind, PULL_LEN_MAX};
use super::slots::{Completion, SlotBlock};
use crate::journal::FailureKind;
use crate::pool::{ItemIndex, RequestId};
use crate::sync::{Idle, IdleConfig};

/// How `wait` idles: 4,000 spins (each reads one cache line: ~10–50 ns), 64 yields, then
/// parks of at most 2 ms (the core unparks a waiting client as soon as it publishes).
const WAIT_IDLE: IdleConfig =
    IdleConfig { spin_passes: 4_000, yield_passes: 64, park_max: Duration::from_millis(2) };

/// An acknowledged draw: its frame is in the log and its group is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Assigned by the core in log order.
    pub request_id: RequestId,
    /// The item handed out, or `None` when nothing was available. Its id:
    /// [`Outcome::item_id`].
    pub item: Option<ItemIndex>,
    /// True when this is a keyed retry's answer: the original request's outcome (same
    /// request id, same item), nothing drawn again. Always false for unkeyed requests.
    pub replayed: bool,
}

impl Outcome {
    /// The id of the item handed out, or `None` when nothing was available. Looks the index
    /// up in `ids` (no allocation, no call to the core thread; see [`ItemIds`]).
    #[inline]
    pub fn item_id<'a>(&self, ids: &'a mut ItemIds) -> Option<&'a str> {
        ids.get(self.item?)
    }
}

/// Why a draw was not served. Plain values: the hot path never allocates an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrawError {
    /// The client has `ring_capacity` requests it has not read yet (back-pressure).
    Full,
    /// The engine is shutting down or has stopped; the request was not served.
    ShuttingDown,
    /// The journal failed; the request was not acknowledged. The failure's kind (e.g. an
    /// I/O error of kind `StorageFull`) is here; the whole error is `Engine::failure`.
    Failed(FailureKind),
    /// This ticket's outcome was already taken (by `drain`).
    AlreadyTaken,
    /// Not served: the disk is full and the log cannot open its next segment. The engine
    /// goes on and serves draws again once space returns.
    NoSpace,
    /// A pull asked for 0 draws or more than [`Client::pull_max`]; nothing was sent.
    PullLen {
        /// Draws asked for.
        len: u32,
        /// The most this client accepts.
        max: u32,
    },
    /// The request's idempotency key is known with another count: nothing was drawn.
    KeyConflict {
        /// The key.
        key: u128,
        /// Draws this request asked for.
        len: u32,
        /// Draws of the key's original request.
        original: u32,
    },
}

impl fmt::Display for DrawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let DrawError::PullLen { len, max } = self {
            return write!(f, "a pull of {len} draws: a pull asks for 1 to {max} draws");
        }
        if let DrawError::KeyConflict { key, len, original } = self {
            return write!(
                f,
                "idempotency key {key:032x} was used for a request of {original} draws; this \
                 request asks for {len}: nothing was drawn"
            );
        }
        f.write_str(match self {
            DrawError::Full => "too many draws in flight on this client",
            DrawError::ShuttingDown => "the engine is shutting down",
            DrawError::Failed(_) => "the engine failed; the draw was not acknowledged",
            DrawError::AlreadyTaken => "this ticket's outcome was already taken",
            DrawError::NoSpace => "the log's disk is full; the draw was not served",
            DrawError::PullLen { .. } | DrawError::KeyConflict { .. } => {
                unreachable!("written above")
            }
        })
    }
}

impl std::error::Error for DrawError {}

/// A draw in flight. Wait on it with [`Client::wait`], or let [`Client::drain`] deliver it.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a ticket's outcome is read with Client::wait or Client::drain"]
pub struct Ticket {
    seq: u64,
}

impl Ticket {
    /// The client-local number of this request (0, 1, 2, ...), as `drain` reports it.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.seq
    }
}

/// A pull in flight. Wait on it with [`Client::wait_pull`], or let [`Client::drain`]
/// deliver its outcomes (one per draw, each under this ticket's id).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a pull's outcomes are read with Client::wait_pull or Client::drain"]
pub struct PullTicket {
    seq: u64,
    at: u64,
    len: u32,
}

impl PullTicket {
    /// The client-local number of this request (0, 1, 2, ...), as `drain` reports it.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.seq
    }

    /// Draws asked for.
    #[must_use]
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Never true: a pull asks for at least one draw.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// An acknowledged pull: its n outcomes, read in place from the client's pull area (no
/// copy, no allocation). An iterator of [`Outcome`]s with consecutive request ids; a draw
/// that found nothing has `item: None`. It borrows the client, so the area cannot be reused
/// while it is read.
#[derive(Debug)]
pub struct Pull<'a> {
    slots: &'a SlotBlock,
    first: RequestId,
    at: u64,
    len: u32,
    next: u32,
    replayed: bool,
}

impl Pull<'_> {
    /// The request id of the pull's first draw (the others follow it).
    #[must_use]
    pub fn first_request_id(&self) -> RequestId {
        self.first
    }

    /// True when this is a keyed retry's answer: the original pull's outcomes, nothing
    /// drawn again (every [`Outcome`] says so too).
    #[must_use]
    pub fn replayed(&self) -> bool {
        self.replayed
    }
}

impl Iterator for Pull<'_> {
    type Item = Outcome;

    #[inline]
    fn next(&mut self) -> Option<Outcome> {
        if self.next == self.len {
            return None;
        }
        let j = self.next;
        self.next += 1;
        Some(Outcome {
            request_id: RequestId(self.first.0 + u64::from(j)),
            item: self.slots.read_item(self.at + u64::from(j)),
            replayed: self.replayed,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.len - self.next) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Pull<'_> {}

/// One caller thread's connection to an engine: an SPSC ring of fixed-size requests toward
/// the core thread and a block of completion slots back. `Send`, not `Sync`: one thread at a
/// time drives it. Never allocates after creation.
pub struct Client {
    producer: rtrb::Producer<Request>,
    slots: Arc<SlotBlock>,
    intake: Arc<Intake>,
    /// Requests pushed.
    sent: u64,
    /// Requests whose outcome the caller has taken, in order (slots below are reusable).
    released: u64,
    /// Out-of-order `wait`s: slots read but not yet released.
    taken: Box<[bool]>,
    /// Per slot: the draws of the pull in it (0 for a single draw), given back to the pull
    /// area when the request is released.
    pull_lens: Box<[u32]>,
    /// Per slot: the idempotency key of a keyed request (written only by keyed pushes, read
    /// only for a conflict), to name it in [`DrawError::KeyConflict`].
    keys: Box<[u128]>,
    mask: u64,
    /// Pull-area positions handed out, and given back (in request order).
    area_sent: u64,
    area_released: u64,
    /// Pull-area words.
    area_len: u64,
    /// The longest pull accepted.
    pull_max: u32,
    /// For [`Client::item_id`].
    ids: ItemIds,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("sent", &self.sent)
            .field("released", &self.released)
            .finish_non_exhaustive()
    }
}

/// The shape of a new client: its ring, its pull area, its longest pull.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientShape {
    /// Requests in flight (ring and slots; rounded up to a power of two).
    pub(crate) capacity: usize,
    /// Pull-area words (rounded up to a power of two).
    pub(crate) area_len: usize,
    /// The longest pull the engine's log can hold in one group; the client accepts at most
    /// this, [`PULL_LEN_MAX`] and its area.
    pub(crate) group_draws_max: usize,
}

/// A new client and the core's end of it, its [`Port`]: a ring of `shape.capacity`
/// requests (rounded up to a power of two), as many completion slots, and a pull area.
pub(crate) fn pair(intake: Arc<Intake>, ids: ItemIds, shape: ClientShape) -> (Client, Port) {
    let slots = Arc::new(SlotBlock::with_area(shape.capacity, shape.area_len));
    let capacity = slots.capacity();
    let area_len = slots.area_len();
    let pull_max = u32::try_from(area_len.min(shape.group_draws_max))
        .unwrap_or(PULL_LEN_MAX)
        .min(PULL_LEN_MAX);
    let (producer, consumer) = rtrb::RingBuffer::new(capacity);
    let client = Client {
        producer,
        slots: Arc::clone(&slots),
        intake,
        sent: 0,
        released: 0,
        taken: vec![false; capacity].into_boxed_slice(),
        pull_lens: vec![0; capacity].into_boxed_slice(),
        keys: vec![0; capacity].into_boxed_slice(),
        mask: capacity as u64 - 1,
        area_sent: 0,
        area_released: 0,
        area_len: area_len as u64,
        pull_max,
        ids,
    };
    (client, Port::new(consumer, slots))
}

impl Client {
    /// Submits a draw without waiting. The core thread picks it up on its next pass; wake a
    /// parked core with `wait`, `is_ready`, `drain` or `flush`.
    ///
    /// # Errors
    /// [`DrawError::Full`] when `ring_capacity` outcomes are unread (back-pressure),
    /// [`DrawError::ShuttingDown`] / [`DrawError::Failed`] when the engine stopped.
    #[inline]
    pub fn try_draw(&mut self) -> Result<Ticket, DrawError> {
        self.push_draw(0)
    }

    /// [`Client::try_draw`] carrying an idempotency key (0 = none): if the engine knows
    /// `key` from an earlier request of one draw (a draw or a pull of 1, within the window
    /// of config `idempotency`), the outcome is that request's (same request id, same item,
    /// [`Outcome::replayed`] set) and nothing is drawn; a retry that arrives while its
    /// original is still in flight gets the original's outcome once it is durable.
    ///
    /// # Errors
    /// As [`Client::try_draw`]; the outcome is [`DrawError::KeyConflict`] when `key` was
    /// used for a request of another count.
    #[inline]
    pub fn try_draw_keyed(&mut self, key: u128) -> Result<Ticket, DrawError> {
        let ticket = self.push_draw(key)?;
        if key != 0 {
            self.keys[(ticket.seq & self.mask) as usize] = key;
        }
        Ok(ticket)
    }

    /// [`Client::try_draw_keyed`], then waits (see [`Client::draw`]).
    ///
    /// # Errors
    /// As [`Client::try_draw_keyed`] and [`Client::wait`].
    pub fn draw_keyed(&mut self, key: u128) -> Result<Outcome, DrawError> {
        let ticket = self.try_draw_keyed(key)?;
        self.wait(ticket)
    }

    #[inline]
    fn push_draw(&mut self, key: u128) -> Result<Ticket, DrawError> {
        // Acquire loads: pair with `Intake::close` (from `Engine::join`) and the core's
        // `Intake::set_stopped`.
        if self.intake.is_closing() || self.intake.is_stopped() {
            return Err(self.stopped_error());
        }
        if self.sent - self.released > self.mask {
            return Err(DrawError::Full);
        }
        let request = Request { seq: self.sent, key, kind: RequestKind::Draw };
        // The ring holds as many records as there are slots, so it cannot be full here.
        if self.producer.push(request).is_err() {
            return Err(DrawError::Full);
        }
        self.pull_lens[(request.seq & self.mask) as usize] = 0;
        self.sent += 1;
        Ok(Ticket { seq: request.seq })
    }

    /// Submits a pull of `len` draws without waiting: one request, `len` outcomes with
    /// consecutive request ids, committed in one group (after a crash, all of them are in
    /// the log or none). An item that runs out mid-pull gives empty outcomes for the rest,
    /// as single draws would. Wake a parked core as for [`Client::try_draw`].
    ///
    /// # Errors
    /// [`DrawError::PullLen`] when `len` is 0 or above [`Client::pull_max`] (nothing is
    /// sent); [`DrawError::Full`] when `ring_capacity` outcomes are unread or the pull area
    /// has fewer than `len` free words (back-pressure: take outcomes, then retry);
    /// [`DrawError::ShuttingDown`] / [`DrawError::Failed`] when the engine stopped.
    #[inline]
    pub fn try_pull(&mut self, len: u32) -> Result<PullTicket, DrawError> {
        self.push_pull(len, 0)
    }

    /// [`Client::try_pull`] carrying an idempotency key (0 = none): if the engine knows
    /// `key` from an earlier pull of `len` draws (within the window of config
    /// `idempotency`), the outcomes are that pull's (same request ids, same items,
    /// [`Pull::replayed`] set) and nothing is drawn; a retry that arrives while its
    /// original is still in flight gets the original's outcomes once they are durable.
    ///
    /// # Errors
    /// As [`Client::try_pull`]; the outcome is [`DrawError::KeyConflict`] when `key` was
    /// used for a request of another count.
    #[inline]
    pub fn try_pull_keyed(&mut self, len: u32, key: u128) -> Result<PullTicket, DrawError> {
        let ticket = self.push_pull(len, key)?;
        if key != 0 {
            self.keys[(ticket.seq & self.mask) as usize] = key;
        }
        Ok(ticket)
    }

    /// [`Client::try_pull_keyed`], then waits (see [`Client::pull`]).
    ///
    /// # Errors
    /// As [`Client::try_pull_keyed`] and [`Client::wait_pull`].
    pub fn pull_keyed(&mut self, len: u32, key: u128) -> Result<Pull<'_>, DrawError> {
        let ticket = self.try_pull_keyed(len, key)?;
        self.wait_pull(ticket)
    }

    #[inline]
    fn push_pull(&mut self, len: u32, key: u128) -> Result<PullTicket, DrawError> {
        if len == 0 || len > self.pull_max {
            return Err(DrawError::PullLen { len, max: self.pull_max });
        }
        // Acquire loads: as in `try_draw`.
        if self.intake.is_closing() || self.intake.is_stopped() {
            return Err(self.stopped_error());
        }
        if self.sent - self.released > self.mask
            || self.area_sent + u64::from(len) - self.area_released > self.area_len
        {
            return Err(DrawError::Full);
        }
        let at = self.area_sent;
        let request = Request { seq: self.sent, key, kind: RequestKind::Pull { len, at } };
        if self.producer.push(request).is_err() {
            return Err(DrawError::Full);
        }
        self.pull_lens[(request.seq & self.mask) as usize] = len;
        self.area_sent += u64::from(len);
        self.sent += 1;
        Ok(PullTicket { seq: request.seq, at, len })
    }

    /// Submits a pull of `len` draws and waits for its acknowledgement (see
    /// [`Client::try_pull`]; the same advice as for [`Client::draw`] applies: pipeline for
    /// throughput).
    ///
    /// # Errors
    /// As [`Client::try_pull`] and [`Client::wait_pull`].
    pub fn pull(&mut self, len: u32) -> Result<Pull<'_>, DrawError> {
        let ticket = self.try_pull(len)?;
        self.wait_pull(ticket)
    }

    /// The longest pull this client accepts: [`PULL_LEN_MAX`], or less when the engine's
    /// log segment cannot hold that many draws in one group, or the client's pull area
    /// (`EngineConfig::pull_area_len`) is smaller.
    #[must_use]
    pub fn pull_max(&self) -> u32 {
        self.pull_max
    }

    /// Submits a draw and waits for its acknowledgement: one request in flight at a time.
    ///
    /// # When it is the wrong tool
    /// A draw is acknowledged once its *group* is durable, so a blocking `draw()` waits for
    /// a whole group commit — under `sync`, an `fdatasync` — every time, and a group never
    /// holds more than one draw per blocked thread. Four threads calling `draw()` in a loop
    /// under `sync` ran at about 9 K draws/s, where the same four threads pipelining with
    /// [`Client::try_draw`] + [`Client::drain`] ran at 256 K draws/s (a 2-vCPU KVM guest; in
    /// five runs of `examples/pipelined.rs` there, a group commit held 1.0–2.4 draws blocking
    /// and 94–176 pipelined). Use `draw()` for an occasional draw, or where each caller
    /// really must wait for its own outcome; for throughput, pipeline:
    /// - keep a window of requests in flight: [`Client::try_draw`] while
    ///   [`Client::outstanding`] is below the window (at most [`Client::capacity`]);
    /// - collect what completed with [`Client::drain`] (or [`Client::wait`] on the oldest
    ///   ticket when you need to block for progress);
    /// - on [`DrawError::Full`] (back-pressure: `capacity` outcomes unread), stop submitting,
    ///   `drain` or `wait`, then go on — never spin on `try_draw` alone.
    ///
    /// `examples/pipelined.rs` does this and measures both ways.
    ///
    /// # Errors
    /// As [`Client::try_draw`] and [`Client::wait`].
    pub fn draw(&mut self) -> Result<Outcome, DrawError> {
        let ticket = self.try_draw()?;
        self.wait(ticket)
    }

    /// Wakes the core thread if it is parked.
    #[inline]
    pub fn flush(&self) {
        self.intake.wake_core();
    }

    /// True when `ticket`'s outcome is ready (then `wait` returns at once).
    pub fn is_ready(&self, ticket: &Ticket) -> bool {
        if self.slots.completed() > ticket.seq || self.intake.is_stopped() {
            return true;
        }
        self.intake.wake_core();
        false
    }

    /// Waits for `ticket`'s outcome: spins briefly, then yields, then parks (the core unparks
    /// it). Never hangs: a shutdown or failure completes it with an error.
    ///
    /// # Errors
    /// [`DrawError::ShuttingDown`] or [`DrawError::Failed`] when the engine stopped before the
    /// draw was durable; [`DrawError::AlreadyTaken`] when `drain` delivered it already.
    pub fn wait(&mut self, ticket: Ticket) -> Result<Outcome, DrawError> {
        let (request_id, completion) = self.wait_seq(ticket.seq)?;
        self.to_result(ticket.seq, request_id, completion)
    }

    /// Waits for a pull's outcomes, as [`Client::wait`] does for a draw; the returned
    /// [`Pull`] reads them in place.
    ///
    /// # Errors
    /// As [`Client::wait`].
    pub fn wait_pull(&mut self, ticket: PullTicket) -> Result<Pull<'_>, DrawError> {
        let (first, completion) = self.wait_seq(ticket.seq)?;
        let (len, replayed) = match completion {
            Completion::Pulled(len) => (len, false),
            Completion::ReplayedPull(len) => (len, true),
            other => {
                return self
                    .to_result(ticket.seq, first, other)
                    .map(|_| unreachable!("a pull completes as Pulled"));
            }
        };
        debug_assert_eq!(len, ticket.len);
        Ok(Pull { slots: &self.slots, first, at: ticket.at, len, next: 0, replayed })
    }

    /// True when a pull's outcomes are ready (then `wait_pull` returns at once).
    pub fn is_pull_ready(&self, ticket: &PullTicket) -> bool {
        self.is_ready(&Ticket { seq: ticket.seq })
    }

    /// Waits until request `seq` is complete and takes it: its slot.
    fn wait_seq(&mut self, seq: u64) -> Result<(RequestId, Completion), DrawError> {
        if seq < self.released || self.taken[(seq & self.mask) as usize] {
            return Err(DrawError::AlreadyTaken);
        }
        self.intake.wake_core();
        let mut idle = Idle::new(WAIT_IDLE);
        while self.slots.completed() <= seq {
            if self.intake.is_stopped() {
                // The core published everything before `stopped`: one last look.
                if self.slots.completed() <= seq {
                    self.take(seq);
                    return Err(self.stopped_error());
                }
                break;
            }
            if let Some(timeout) = idle.pause(true) {
                // A parked core would not publish what this thread waits for.
                self.intake.wake_core();
                self.slots.park_until(seq, timeout);
            }
        }
        let slot = self.slots.read(seq);
        self.take(seq);
        Ok(slot)
    }

    /// Delivers every completed outcome not yet taken, in request order, as
    /// `(ticket id, result)`; after a stop, also every request that will never complete.
    /// A pull of n delivers n results under its ticket id (its outcomes in request-id order,
    /// or n errors). Returns how many results it delivered.
    pub fn drain(&mut self, mut each: impl FnMut(u64, Result<Outcome, DrawError>)) -> usize {
        self.intake.wake_core();
        let stopped = self.intake.is_stopped();
        let completed = self.slots.completed();
        let mut delivered = 0;
        while self.released < completed {
            let seq = self.released;
            let i = (seq & self.mask) as usize;
            if self.taken[i] {
                self.taken[i] = false;
            } else {
                let (request_id, completion) = self.slots.read(seq);
                delivered += self.deliver(seq, request_id, completion, &mut each);
            }
            self.release_next();
        }
        if stopped {
            let error = self.stopped_error();
            while self.released < self.sent {
                let i = (self.released & self.mask) as usize;
                if !std::mem::take(&mut self.taken[i]) {
                    for _ in 0..self.pull_lens[i].max(1) {
                        each(self.released, Err(error));
                        delivered += 1;
                    }
                }
                self.release_next();
            }
        }
        delivered
    }

    /// Hands request `seq`'s outcomes to `each` (one, or a pull's n); returns how many.
    #[inline]
    fn deliver(
        &self,
        seq: u64,
        request_id: RequestId,
        completion: Completion,
        each: &mut impl FnMut(u64, Result<Outcome, DrawError>),
    ) -> usize {
        let (len, replayed) = match completion {
            Completion::Pulled(len) => (len, false),
            Completion::ReplayedPull(len) => (len, true),
            _ => {
                let lens = self.pull_lens[(seq & self.mask) as usize].max(1);
                for _ in 0..lens {
                    each(seq, self.to_result(seq, request_id, completion));
                }
                return lens as usize;
            }
        };
        // The released request's area starts where the released ones before it ended.
        let at = self.area_released;
        let pull = Pull { slots: &self.slots, first: request_id, at, len, next: 0, replayed };
        for outcome in pull {
            each(seq, Ok(outcome));
        }
        len as usize
    }

    /// Releases the oldest unreleased request: its slot and its pull-area words are free.
    #[inline]
    fn release_next(&mut self) {
        let i = (self.released & self.mask) as usize;
        self.area_released += u64::from(self.pull_lens[i]);
        self.released += 1;
    }

    /// The id of the item at `index` (an [`Outcome::item`]); `None` only for an index this
    /// engine never handed out. No allocation, no call to the core thread: see [`ItemIds`].
    /// Inside a [`Client::drain`] callback the client is borrowed: use a separate handle from
    /// [`Client::item_ids`] there.
    #[inline]
    pub fn item_id(&mut self, index: ItemIndex) -> Option<&str> {
        self.ids.get(index)
    }

    /// A handle that resolves item indices to ids (see [`ItemIds`]); cheap (`Arc` clones, no allocation).
    #[must_use]
    pub fn item_ids(&self) -> ItemIds {
        self.ids.clone()
    }

    /// Sleeps until an outcome is ready for [`Client::drain`], the engine stopped, or
    /// `timeout` passed (the core wakes the thread when it publishes); returns at once when
    /// nothing is outstanding or an outcome is already ready.
    ///
    /// For pipelined callers (`try_draw` + `drain`) with nothing else to do: spinning or
    /// yielding instead keeps the CPU busy, and under `sync` durability that CPU may be the
    /// one where the kernel must run the worker that issues the log's disk flush; a thread
    /// that is always runnable there delayed each flush by a whole scheduler slice (~5 ms
    /// on our 2-core machine), so every acknowledgement waited ~10 ms. Spin briefly (an
    /// outcome often comes within microseconds), then sleep here.
    pub fn park_until_ready(&self, timeout: Duration) {
        if self.released < self.sent && !self.intake.is_stopped() {
            // A parked core would not publish anything this thread waits for.
            self.intake.wake_core();
            self.slots.park_until(self.released, timeout);
        }
    }

    /// Requests submitted whose outcome has not been taken.
    #[must_use]
    pub fn outstanding(&self) -> u64 {
        self.sent - self.released
    }

    /// Most requests this client may have in flight.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.taken.len()
    }

    fn take(&mut self, seq: u64) {
        self.taken[(seq & self.mask) as usize] = true;
        while self.released < self.sent && self.taken[(self.released & self.mask) as usize] {
            self.taken[(self.released & self.mask) as usize] = false;
            self.release_next();
        }
    }

    fn stopped_error(&self) -> DrawError {
        match self.intake.failure_kind() {
            Some(kind) => DrawError::Failed(kind),
            None => DrawError::ShuttingDown,
        }
    }

    /// Request `seq`'s slot as a result.
    fn to_result(
        &self,
        seq: u64,
        request_id: RequestId,
        completion: Completion,
    ) -> Result<Outcome, DrawError> {
        let outcome = |item, replayed| Ok(Outcome { request_id, item, replayed });
        match completion {
            Completion::Item(index) => outcome(Some(index), false),
            Completion::Empty => outcome(None, false),
            Completion::ReplayedItem(index) => outcome(Some(index), true),
            Completion::ReplayedEmpty => outcome(None, true),
            Completion::KeyConflict(original) => {
                let i = (seq & self.mask) as usize;
                Err(DrawError::KeyConflict {
                    key: self.keys[i],
                    len: self.pull_lens[i].max(1),
                    original,
                })
            }
            Completion::Stopped => Err(DrawError::ShuttingDown),
            // The core records the failure before it writes `Failed` into any slot.
            Completion::Failed => {
                Err(DrawError::Failed(self.intake.failure_kind().unwrap_or(FailureKind::Other)))
            }
            Completion::Rejected => Err(DrawError::NoSpace),
            Completion::Pulled(_) | Completion::ReplayedPull(_) => {
                unreachable!("only a pull completes as Pulled")
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.slots.close();
        self.intake.wake_core();
    }
}
