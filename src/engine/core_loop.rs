//! The core thread: drain rings in bounded batches, draw, append, commit, publish.
//!
//! One pass:
//! 1. accept new clients and serve one control command (after draining every ring);
//! 2. take up to `batch_len_max` requests from each ring, draw, append a frame for each draw
//!    and write its outcome into the client's slot (not yet visible); a pull of n draws is
//!    served whole inside one group (the group is reserved for it, or committed first and a
//!    new one reserved), its items written into the client's pull area;
//! 3. end the group when it holds `flush_after_n_draw` draws, when the rings were drained
//!    empty, or when `max_commit_delay` passed since its first draw;
//! 4. publish every group the journal reports durable: store each client's completion count.
//!
//! Nothing reaches a client before its group is durable, nothing allocates, and nothing
//! waits on the disk (the journal syncs elsewhere).

use std::collections::VecDeque;
use std::sync::atomic::{fence, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::metrics::{RemainingWriter, Tally};
use super::prefault::Prefault;
use super::{Clock, Control, EngineConfig, EngineError, Shared};
use crate::ingress::{Completion, Port, Request, RequestKind, SlotBlock};
use crate::journal::{GroupSeq, Journal, JournalError, Space};
use crate::pool::{ItemState, KeyLookup, Pool, PoolState, RequestId};
use crate::sync::Idle;

/// Committed groups waiting to become durable, with each port's `staged` count at commit.
struct PendingGroups {
    seqs: Box<[u64]>,
    /// Per group: draws beyond one per request (a pull of n adds n - 1), for the counter
    /// of draws acknowledged.
    extras: Box<[u64]>,
    /// How many ports each group recorded (the active prefix at its commit).
    lens: Box<[usize]>,
    /// When each group was opened (for the commit-latency histogram); `None` for the
    /// entries of refused batches, which are no group.
    started: Box<[Option<Instant>]>,
    marks: Box<[u64]>,
    /// Per group: the last request id it holds (the watermark a log shipper reads,
    /// `EngineStats::durable_request_id`).
    lasts: Box<[u64]>,
    ports_len: usize,
    head: usize,
    len: usize,
}

impl PendingGroups {
    fn new(groups_max: usize, ports_len: usize) -> PendingGroups {
        PendingGroups {
            seqs: vec![0; groups_max].into_boxed_slice(),
            extras: vec![0; groups_max].into_boxed_slice(),
            lens: vec![0; groups_max].into_boxed_slice(),
            started: vec![None; groups_max].into_boxed_slice(),
            marks: vec![0; groups_max * ports_len].into_boxed_slice(),
            lasts: vec![0; groups_max].into_boxed_slice(),
            ports_len,
            head: 0,
            len: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.len == self.seqs.len()
    }

    /// The sequence number of the oldest pending group.
    fn oldest(&self) -> Option<u64> {
        (self.len > 0).then(|| self.seqs[self.head])
    }

    /// Records `ports` (the active prefix of the port table) for `group`, which holds
    /// `extra` draws beyond one per request, ends at request id `last` and was opened at
    /// `started`.
    fn push(
        &mut self,
        group: GroupSeq,
        ports: &[Option<Port>],
        extra: u64,
        last: u64,
        started: Option<Instant>,
    ) {
        assert!(!self.is_full());
        assert!(ports.len() <= self.ports_len, "ports={} max={}", ports.len(), self.ports_len);
        let at = (self.head + self.len) % self.seqs.len();
        self.seqs[at] = group.0;
        self.extras[at] = extra;
        self.lens[at] = ports.len();
        self.started[at] = started;
        self.lasts[at] = last;
        let marks = &mut self.marks[at * self.ports_len..(at + 1) * self.ports_len];
        for (mark, port) in marks.iter_mut().zip(ports) {
            *mark = port.as_ref().map_or(0, |p| p.staged);
        }
        self.len += 1;
    }

    /// The oldest group if it is durable by `durable`: its sequence number, extra draws,
    /// last request id, opening time and marks.
    #[allow(clippy::type_complexity)]
    fn pop_durable(
        &mut self,
        durable: GroupSeq,
    ) -> Option<(u64, u64, u64, Option<Instant>, &[u64])> {
        if self.len == 0 || self.seqs[self.head] > durable.0 {
            return None;
        }
        let at = self.head;
        self.head = (self.head + 1) % self.seqs.len();
        self.len -= 1;
        let start = at * self.ports_len;
        let marks = &self.marks[start..start + self.lens[at]];
        Some((self.seqs[at], self.extras[at], self.lasts[at], self.started[at], marks))
    }
}

/// Draws a request's outcomes: one draw, or a pull's `len` into the client's pull area.
/// Always inlined: the unkeyed hot path must stay one loop, as before keys (measured: out of
/// line, single draws ran slower).
/// `KEYED`: the draws of a new key (`Pool::draw_keyed`, from `serve_keyed`). Counts pulls
/// in `tally` (a plain integer, stored for observers at commit; the pool counts empty
/// draws itself).
#[inline(always)]
fn draw<J: Journal, const KEYED: bool>(
    pool: &mut Pool,
    journal: &mut J,
    slots: &SlotBlock,
    request: &Request,
    tally: &mut Tally,
) -> Result<(), JournalError> {
    match request.kind {
        RequestKind::Draw => {
            let draw = if KEYED { pool.draw_keyed() } else { pool.draw() };
            journal.append_draw(draw)?;
            let completion = draw.item.map_or(Completion::Empty, Completion::Item);
            slots.write(request.seq, draw.request_id, completion);
        }
        RequestKind::Pull { len, at } => {
            let first = pool.last_request_id().0 + 1;
            tally.pulls += 1;
            for j in 0..u64::from(len) {
                let draw = if KEYED { pool.draw_keyed() } else { pool.draw() };
                debug_assert_eq!(draw.request_id.0, first + j, "a pull's ids follow");
                journal.append_draw(draw)?;
                slots.write_item(at + j, draw.item);
            }
            slots.write(request.seq, RequestId(first), Completion::Pulled(len));
        }
    }
    Ok(())
}

/// Serves a request carrying an idempotency key (`pool::KeyLookup`): a new key draws as
/// usual after `append_key` (the key and its draws in one group); a known key with the
/// same count writes the original outcomes (request ids and items) flagged replayed and
/// draws nothing; another count is a conflict. The outcome is published like any other,
/// with the client's later requests, so a retry is never acknowledged before its original
/// (groups become durable in order). Returns the draws made.
#[inline(never)]
fn serve_keyed<J: Journal>(
    pool: &mut Pool,
    journal: &mut J,
    slots: &SlotBlock,
    request: &Request,
    now_s: u32,
    tally: &mut Tally,
) -> Result<u32, JournalError> {
    let count = request.kind.draws();
    match pool.key(request.key, count, now_s) {
        KeyLookup::New => {
            journal.append_key(request.key, count)?;
            draw::<J, true>(pool, journal, slots, request, tally)?;
            Ok(count)
        }
        KeyLookup::Replay { first, at: from } => {
            tally.replayed += 1;
            let completion = match request.kind {
                RequestKind::Draw => {
                    pool.key_item(from).map_or(Completion::ReplayedEmpty, Completion::ReplayedItem)
                }
                RequestKind::Pull { len, at } => {
                    for j in 0..u64::from(len) {
                        slots.write_item(at + j, pool.key_item(from + j));
                    }
                    Completion::ReplayedPull(len)
                }
            };
            slots.write(request.seq, first, completion);
            Ok(0)
        }
        KeyLookup::Conflict { count } => {
            tally.key_conflicts += 1;
            slots.write(request.seq, RequestId(0), Completion::KeyConflict(count));
            Ok(0)
        }
    }
}

/// How often (in passes) a busy core looks for new and dropped clients; an idle one looks
/// at every pass.
const ACCEPT_EVERY: u64 = 16;

/// Where an update's outcome goes once its group is durable.
type UpdateReply = mpsc::Sender<Result<ItemState, EngineError>>;

/// Everything the core thread owns.
pub(crate) struct Core<J> {
    /// Makes the key window present once a key arrives; declared before `pool` so that
    /// it is dropped (its helper joined) before the window is.
    prefault: Option<Prefault>,
    pool: Pool,
    journal: J,
    shared: Arc<Shared>,
    ports: Vec<Option<Port>>,
    /// Per port index: the last group committed when its client was dropped.
    freed_at: Vec<u64>,
    /// One past the highest port index ever used: loops stop here, not at `clients_max`.
    active: usize,
    /// Passes since start; clients are accepted every `ACCEPT_EVERY` passes or when idle.
    passes: u64,
    pending: PendingGroups,
    /// Update replies waiting for their group to become durable.
    updates: VecDeque<(u64, UpdateReply, ItemState)>,
    group_draws: u32,
    /// Draws the journal reserved room for in the open group: a request that would go
    /// beyond waits for the next group.
    group_reserved: u32,
    /// Draws beyond one per request in the open group (see `PendingGroups::extras`).
    group_extra: u64,
    group_open: bool,
    group_started: Instant,
    last_group: GroupSeq,
    acknowledged: u64,
    flush_after_n_draw: u32,
    max_commit_delay: Duration,
    batch_len_max: usize,
    idle: Idle,
    /// The wall clock for idempotency keys, read at most once per group (the first keyed
    /// request of the group reads it; unkeyed groups never do).
    clock: Clock,
    /// An instant and the wall-clock time then (`Clock::base`), read at start.
    clock_base: (Instant, u32),
    /// This group's time in seconds since the Unix epoch, 0 until read.
    now_s: u32,
    /// Empty draws, pulls, replays and conflicts since start (stored at each commit).
    tally: Tally,
    /// The pool's empty draws when the engine started (a pool may have drawn before).
    empty_draws_base: u64,
    /// Requests taken from the rings (or refused) and requests published, since start:
    /// their difference is the in-flight gauge.
    requests_staged: u64,
    requests_published: u64,
    /// The core's end of the per-item remaining quantities (`metrics::Remaining`).
    remaining: RemainingWriter,
}

impl<J: Journal> Core<J> {
    pub(crate) fn new(
        pool: Pool,
        journal: J,
        shared: Arc<Shared>,
        remaining: RemainingWriter,
        c: &EngineConfig,
    ) -> Core<J> {
        let empty_draws_base = pool.empty_draws();
        Core {
            prefault: pool.key_pages().and_then(Prefault::spawn),
            pool,
            journal,
            shared,
            ports: (0..c.clients_max).map(|_| None).collect(),
            freed_at: vec![0; c.clients_max],
            active: 0,
            passes: 0,
            pending: PendingGroups::new(c.inflight_groups_max, c.clients_max),
            updates: VecDeque::new(),
            group_draws: 0,
            group_reserved: 0,
            group_extra: 0,
            group_open: false,
            group_started: Instant::now(),
            last_group: GroupSeq(0),
            acknowledged: 0,
            flush_after_n_draw: c.flush_after_n_draw,
            max_commit_delay: c.max_commit_delay,
            batch_len_max: c.batch_len_max,
            idle: Idle::new(c.idle),
            clock: c.clock.clone(),
            clock_base: c.clock.base(),
            now_s: 0,
            tally: Tally::default(),
            empty_draws_base,
            requests_staged: 0,
            requests_published: 0,
            remaining,
        }
    }

    /// The core thread is pinned to `core`: the journal's helper threads go to `helpers`
    /// (the host's core plan) or, without one, elsewhere (`affinity::helper_core`).
    pub(crate) fn core_pinned(&mut self, core: usize, helpers: Option<usize>) {
        if let Some(helper) = helpers.or_else(|| super::affinity::helper_core(core)) {
            self.journal.place_helpers(helper);
        }
    }

    /// The thread could not be pinned: stop without serving anything.
    pub(crate) fn abandon(self) -> Result<PoolState, JournalError> {
        self.shared.intake.set_stopped();
        Ok(self.pool.state())
    }

    /// Runs until shutdown or a journal failure.
    pub(crate) fn run(mut self) -> Result<PoolState, JournalError> {
        match self.serve() {
            Ok(()) => self.finish(),
            Err(e) => {
                self.fail(&e);
                Err(e)
            }
        }
    }

    fn serve(&mut self) -> Result<(), JournalError> {
        // The one endless loop of the engine: it ends on a Shutdown command or an error.
        loop {
            self.passes += 1;
            // Registration is rare: looking every 16 passes keeps the pass short and still
            // serves a new client within microseconds.
            let mut worked = self.passes.is_multiple_of(ACCEPT_EVERY) && self.accept_clients();
            if let Some(cmd) = self.shared.control.pop() {
                worked = true;
                if self.control(cmd)? {
                    return Ok(());
                }
            }
            let (served, drained) = self.drain_rings()?;
            worked |= served > 0;
            if self.group_open
                && (drained
                    || self.group_draws >= self.flush_after_n_draw
                    || self.group_started.elapsed() >= self.max_commit_delay)
            {
                self.commit()?;
            }
            worked |= self.publish()?;
            if worked {
                self.idle.reset();
            } else if self.remaining.is_stale() {
                // Idle: finish publishing remaining quantities, a slice per pass.
                self.remaining.sweep_idle(&self.pool);
            } else if !self.accept_clients() {
                self.idle_step();
            }
        }
    }

    fn accept_clients(&mut self) -> bool {
        // Free the ports of dropped clients at once; their index is reused only once no
        // pending group can hold a mark for the old client (`free_port`).
        for (i, port) in self.ports[..self.active].iter_mut().enumerate() {
            if let Some(p) = port.as_ref().filter(|p| p.slots.is_closed()) {
                // Its unpublished requests will never be: no longer in flight.
                self.requests_published += p.staged - p.published;
                *port = None;
                self.freed_at[i] = self.last_group.0;
                // Relaxed: a counter bounding registrations.
                self.shared.clients.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let mut accepted = false;
        while let Some(free) = self.free_port() {
            let Some(port) = self.shared.registrations.pop() else { break };
            self.ports[free] = Some(port);
            self.active = self.active.max(free + 1);
            accepted = true;
        }
        accepted
    }

    /// A port index that no pending group refers to: free, and freed before the oldest
    /// pending group was committed (groups committed since record 0 for it).
    fn free_port(&self) -> Option<usize> {
        let oldest = self.pending.oldest();
        self.ports
            .iter()
            .zip(self.freed_at.iter())
            .position(|(port, freed)| port.is_none() && oldest.is_none_or(|o| o > *freed))
    }

    /// Serves one control command; true on Shutdown.
    fn control(&mut self, cmd: Control) -> Result<bool, JournalError> {
        // Draws sent before the command are visible now, from clients registered before it
        // too: log them first.
        self.accept_clients();
        self.drain_all()?;
        match cmd {
            Control::Shutdown => return Ok(true),
            Control::State { reply } => {
                // A state read is a quiescent point: the published remaining quantities
                // equal the state it returns.
                self.remaining.sweep_all(&self.pool);
                let _ = reply.send(self.pool.state());
            }
            Control::Items { reply } => {
                self.remaining.sweep_all(&self.pool);
                let _ = reply.send(self.pool.items());
            }
            Control::Update { id, quantity, weight, reply } => {
                if let Err(e) = self.update(&id, quantity, weight, reply.clone()) {
                    let _ = reply.send(Err(EngineError::Failed(e.clone())));
                    return Err(e);
                }
            }
        }
        Ok(false)
    }

    fn update(
        &mut self,
        id: &str,
        quantity: Option<crate::pool::Quantity>,
        weight: Option<u32>,
        reply: UpdateReply,
    ) -> Result<(), JournalError> {
        // An update is a group of its own, so the journal may rotate before it.
        if self.group_open {
            self.commit()?;
        }
        if let Err(e) = self.journal.reserve(Space::Update { id_len: id.len() }, &mut self.pool) {
            if let JournalError::NoSpace { .. } = e {
                let _ = reply.send(Err(EngineError::NoSpace(e)));
                return Ok(());
            }
            return Err(e);
        }
        match self.pool.update(id, quantity, weight) {
            Err(e) => {
                let _ = reply.send(Err(EngineError::Update(e)));
            }
            Ok((index, state)) => {
                // Before any draw that could hand out a new item: see `ids`.
                self.shared.item_ids.added(index, &state.id);
                self.remaining.added(&self.pool, &self.shared.remaining);
                self.remaining.changed();
                self.open_group(0);
                self.journal.append_update(index, &state)?;
                self.commit()?;
                self.updates.push_back((self.last_group.0, reply, state));
            }
        }
        Ok(())
    }

    /// Drains every ring completely (bounded by their capacities).
    fn drain_all(&mut self) -> Result<(), JournalError> {
        loop {
            let (_, drained) = self.drain_rings()?;
            if drained {
                return Ok(());
            }
            if self.group_draws >= self.flush_after_n_draw {
                self.commit()?;
            }
        }
    }

    /// One pass over the rings. Returns (requests served, every ring left empty).
    #[inline]
    fn drain_rings(&mut self) -> Result<(usize, bool), JournalError> {
        let mut served = 0;
        let mut drained = true;
        let mut waiting = 0;
        for i in 0..self.active {
            let Some(port) = &self.ports[i] else { continue };
            let available = port.consumer.slots();
            if available == 0 {
                continue;
            }
            waiting += available;
            let room = self.flush_after_n_draw.saturating_sub(self.group_draws) as usize;
            let n = available.min(self.batch_len_max).min(room);
            if n < available {
                drained = false;
            }
            if !self.group_open {
                // Between groups: the journal may rotate before the batch (with the pool as
                // it is before these draws). The group has room for its usual draws, or for
                // the whole pull that opens it.
                let first = port.consumer.peek().map_or(1, |r| r.kind.draws());
                let draws = self.flush_after_n_draw.max(first);
                match self.journal.reserve(Space::Draws(draws as usize), &mut self.pool) {
                    Ok(()) => self.open_group(draws),
                    Err(JournalError::NoSpace { .. }) => {
                        // Disk full: refuse these draws without drawing; retry next pass.
                        served += n;
                        self.reject_batch(i, n)?;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let taken = self.serve_batch(i, n)?;
            served += taken;
            if taken < n {
                // A pull that the open group has no room for: it opens the next group, on
                // the next pass. A pull is never split across groups.
                drained = false;
                self.commit()?;
            } else if self.group_draws >= self.flush_after_n_draw {
                self.commit()?;
            }
        }
        self.shared.counters.set_ring_waiting(waiting as u64);
        Ok((served, drained))
    }

    /// Serves up to `n` requests of a port, in order, stopping before a request whose draws
    /// would not fit in the group's reserved room. Returns how many it served.
    #[inline]
    fn serve_batch(&mut self, port: usize, n: usize) -> Result<usize, JournalError> {
        let port = self.ports[port].as_mut().expect("caller checked the port");
        let chunk = port.consumer.read_chunk(n).expect("n <= slots()");
        let (head, tail) = chunk.as_slices();
        // Keyed requests: load the keys' index slots ahead, as independent loads the CPU
        // overlaps, rather than one cache miss after another while serving (a 1 M-key
        // window is far larger than the caches). Unkeyed batches skip it after one check.
        // It looks ahead over this group's room and the next group's, and touches each
        // key once (`Port::touched`): the chunk holds up to `batch_len_max` requests, most
        // of them served by later batches, and touching them all at every batch read the
        // same slots and victims ten times over with pulls of 10.
        if head.first().is_some_and(|r| r.key != 0) {
            let budget =
                self.group_reserved.saturating_sub(self.group_draws) + self.flush_after_n_draw;
            let (mut draws, mut keyed, mut seen) = (0_u32, 0_u64, port.staged);
            for request in head.iter().chain(tail) {
                draws = draws.saturating_add(request.kind.draws());
                if draws > budget {
                    break;
                }
                if request.key != 0 {
                    if request.seq >= port.touched {
                        self.pool.touch_key(request.key);
                    }
                    keyed += 1;
                }
                seen = request.seq + 1;
            }
            port.touched = port.touched.max(seen);
            // A full window evicts one key per new key: its slot is a miss of its own.
            self.pool.touch_key_victims(keyed);
        }
        let mut taken = 0;
        for request in head.iter().chain(tail) {
            debug_assert_eq!(request.seq, port.staged, "requests arrive in order");
            let cost = request.kind.draws();
            if self.group_draws + cost > self.group_reserved {
                break;
            }
            let drawn = if request.key == 0 {
                let (pool, journal, tally) = (&mut self.pool, &mut self.journal, &mut self.tally);
                draw::<J, false>(pool, journal, &port.slots, request, tally)?;
                cost
            } else {
                if self.now_s == 0 {
                    if let Some(p) = &mut self.prefault {
                        p.key_arrived();
                    }
                    let at = self.group_started;
                    self.now_s = self.clock.unix_s_at(self.clock_base, at).max(1);
                }
                let (pool, journal, tally) = (&mut self.pool, &mut self.journal, &mut self.tally);
                serve_keyed(pool, journal, &port.slots, request, self.now_s, tally)?
            };
            self.group_extra += u64::from(cost) - 1;
            self.group_draws += drawn;
            port.staged += 1;
            // Per request, with `staged`: a journal error may end the batch early.
            self.requests_staged += 1;
            taken += 1;
        }
        chunk.commit(taken);
        Ok(taken)
    }

    /// Answers `n` requests of a port with `Rejected`, in order with its earlier requests:
    /// they are published when the last committed group is durable.
    fn reject_batch(&mut self, port: usize, n: usize) -> Result<(), JournalError> {
        let p = self.ports[port].as_mut().expect("caller checked the port");
        let chunk = p.consumer.read_chunk(n).expect("n <= slots()");
        for request in chunk {
            p.slots.write(request.seq, crate::pool::RequestId(0), Completion::Rejected);
            p.staged += 1;
        }
        self.requests_staged += n as u64;
        while self.pending.is_full() {
            if !self.publish()? {
                std::thread::yield_now();
            }
        }
        let last = self.pool.last_request_id().0;
        self.pending.push(self.last_group, &self.ports[..self.active], 0, last, None);
        Ok(())
    }

    /// Opens a group with room for `reserved` draws (the journal's `reserve` made it).
    fn open_group(&mut self, reserved: u32) {
        if !self.group_open {
            self.group_open = true;
            self.group_draws = 0;
            self.group_reserved = reserved;
            self.group_extra = 0;
            self.group_started = Instant::now();
            self.now_s = 0;
        }
    }

    fn commit(&mut self) -> Result<(), JournalError> {
        debug_assert!(self.group_open);
        while self.pending.is_full() {
            // Back-pressure from the disk: wait for the oldest group.
            if !self.publish()? {
                std::thread::yield_now();
            }
        }
        let group = self.journal.commit(self.pool.last_request_id())?;
        assert!(group > self.last_group, "group={group:?} last={:?}", self.last_group);
        self.last_group = group;
        let started = Some(self.group_started);
        let last = self.pool.last_request_id().0;
        self.pending.push(group, &self.ports[..self.active], self.group_extra, last, started);
        let draws = self.group_draws;
        self.group_open = false;
        self.group_draws = 0;
        self.group_extra = 0;
        // Relaxed: observers' counters (`Meter::read`), once per group.
        self.shared.stats.groups_committed.fetch_add(1, Ordering::Relaxed);
        self.shared.stats.last_request_id.store(last, Ordering::Relaxed);
        let counters = &self.shared.counters;
        self.tally.empty_draws = self.pool.empty_draws() - self.empty_draws_base;
        counters.commit(draws, &self.tally);
        counters.set_in_flight(self.in_flight());
        if draws > 0 {
            self.remaining.changed();
        }
        if self.remaining.is_stale() {
            self.remaining.sweep_group(&self.pool);
        }
        Ok(())
    }

    /// Publishes every durable group; true if anything was published.
    fn publish(&mut self) -> Result<bool, JournalError> {
        if self.pending.len == 0 {
            return Ok(false);
        }
        let durable = self.journal.durable()?;
        let mut published = false;
        // Read once per publish that completes groups (a vDSO call, no syscall).
        let mut now = None;
        let mut durable_last = 0;
        while let Some((group, extra, last, started, marks)) = self.pending.pop_durable(durable) {
            self.acknowledged += extra;
            durable_last = last;
            if let Some(started) = started {
                let now = *now.get_or_insert_with(Instant::now);
                let ns = now.saturating_duration_since(started).as_nanos();
                self.shared.counters.durable(u64::try_from(ns).unwrap_or(u64::MAX));
            }
            for (port, mark) in self.ports[..self.active].iter_mut().zip(marks) {
                if let Some(port) = port {
                    if *mark > port.published {
                        self.acknowledged += *mark - port.published;
                        self.requests_published += *mark - port.published;
                        port.published = *mark;
                        port.slots.publish(*mark);
                    }
                }
            }
            while self.updates.front().is_some_and(|(g, _, _)| *g <= group) {
                let (_, reply, state) = self.updates.pop_front().expect("checked");
                let _ = reply.send(Ok(state));
            }
            published = true;
        }
        if published {
            // Relaxed: an observer's counter.
            self.shared.stats.draws_acknowledged.store(self.acknowledged, Ordering::Relaxed);
            // Relaxed: a watermark for the log shipper, which reads the log's files through
            // the kernel (their bytes are not published through this store) and checks each
            // frame's CRC; once per publish, never per draw.
            self.shared.stats.durable_request_id.store(durable_last, Ordering::Relaxed);
            self.shared.counters.set_in_flight(self.in_flight());
        }
        Ok(published)
    }

    /// Requests taken (or refused) and not yet answered.
    fn in_flight(&self) -> u64 {
        debug_assert!(
            self.requests_staged >= self.requests_published,
            "staged={} published={}",
            self.requests_staged,
            self.requests_published
        );
        // Saturating: an observer's gauge never stops the core.
        self.requests_staged.saturating_sub(self.requests_published)
    }

    fn idle_step(&mut self) {
        if let Some(timeout) = self.idle.pause(self.pending.len == 0) {
            self.park(timeout);
        }
    }

    fn park(&self, timeout: Duration) {
        // The re-check runs after the doorbell's fence, which pairs with the fence in the
        // `Intake::wake_core` that follows every push a caller waits for (a ring record, a
        // control command, a registration; Dekker): either it sees the push, or the caller
        // sees this thread sleeping and unparks it. Acquire loads inside (rtrb, crossbeam).
        let ports = &self.ports[..self.active];
        let shared = &self.shared;
        shared.intake.core.sleep(timeout, || {
            ports.iter().flatten().any(|p| p.consumer.slots() > 0 || p.slots.is_closed())
                || !shared.control.is_empty()
                || !shared.registrations.is_empty()
        });
    }

    /// Clean shutdown: serve what is in the rings, commit, wait until durable, publish,
    /// close the journal, then tell everyone the core has stopped.
    fn finish(mut self) -> Result<PoolState, JournalError> {
        let result = self.finish_journal();
        if let Err(e) = &result {
            self.fail(e);
            return Err(result.expect_err("checked"));
        }
        self.stop();
        Ok(self.pool.state())
    }

    fn finish_journal(&mut self) -> Result<(), JournalError> {
        self.accept_clients();
        self.drain_all()?;
        if self.group_open {
            self.commit()?;
        }
        while self.pending.len > 0 {
            if !self.publish()? {
                std::thread::yield_now();
            }
        }
        self.journal.close(&self.pool)
    }

    /// The journal failed: every request staged but not durable gets an error, and the
    /// engine stops (SPEC §2.9).
    fn fail(&mut self, error: &JournalError) {
        self.shared.intake.fail(error.clone());
        for port in self.ports.iter_mut().flatten() {
            for seq in port.published..port.staged {
                port.slots.write(seq, crate::pool::RequestId(0), Completion::Failed);
            }
            self.requests_published += port.staged - port.published;
            port.published = port.staged;
            port.slots.publish(port.staged);
        }
        for (_, reply, _) in self.updates.drain(..) {
            let _ = reply.send(Err(EngineError::Failed(error.clone())));
        }
        self.stop();
    }

    fn stop(&mut self) {
        // The final numbers for observers, before `stopped` says there are no more.
        self.remaining.sweep_all(&self.pool);
        self.shared.counters.set_in_flight(self.in_flight());
        // Every publish above happens-before a client's Acquire of `stopped`.
        self.shared.intake.set_stopped();
        // SeqCst: pairs with the fence in `Intake::wake_core` after a control push (see
        // `Shared::push_control`): a command pushed from now on is dropped by its sender.
        fence(Ordering::SeqCst);
        for port in self.ports.iter().flatten() {
            // Wake parked waiters so they see `stopped` now, not at their park timeout.
            port.slots.publish(port.published);
        }
        while let Some(cmd) = self.shared.control.pop() {
            match cmd {
                Control::Update { reply, .. } => {
                    let _ = reply.send(Err(EngineError::ShuttingDown));
                }
                Control::State { reply } => {
                    let _ = reply.send(self.pool.state());
                }
                Control::Items { reply } => {
                    let _ = reply.send(self.pool.items());
                }
                Control::Shutdown => {}
            }
        }
    }
}
