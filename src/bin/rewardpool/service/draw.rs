//! One `Draw` stream: requests read ahead, handed to the pools' gateways, answered in order.
//!
//! The response stream *is* the request pump — no task, no channel of responses: each poll
//! (tonic polls while it can write)
//! 1. takes the gateways' replies (any order) into the window's slots;
//! 2. emits the head slot once resolved: one `DrawResponse` per draw, in order, or the
//!    stream's end status;
//! 3. reads further requests while fewer than `stream_window` are unanswered, validates each
//!    and hands it to its pool's lane (a full lane queue is retried every millisecond until
//!    `queue_timeout`, then that request ends the stream with `RESOURCE_EXHAUSTED`);
//!
//! A stream with a full window stops reading: HTTP/2 flow control then holds its client back.
//!
//! How a stream ends:
//! - the client half-closes: once every request is answered, with `OK`;
//! - a request is invalid (count, pool, key): the requests before it are answered, then the
//!   stream ends with `INVALID_ARGUMENT`; a malformed frame likewise;
//! - the engine refuses a request (a key reused with another count, the pool failed or
//!   stopped, the disk full): the requests before it are answered, then the stream ends with
//!   that status (`status.rs`); later requests already in flight are not reported (their
//!   draws may be durable: a client that must know retries them with idempotency keys);
//! - the server stops: no more requests are read; those in flight are answered, then the
//!   stream ends with `UNAVAILABLE`;
//! - the client goes away: tonic drops the stream; replies still in flight find the channel
//!   closed and are dropped by the gateway. Nothing waits on a vanished client.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rewardpool::ItemIds;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tonic::{Status, Streaming};

use super::gateway::{Drawn, Job, Lane, Reply};
use super::metrics::Method;
use super::pools::{Call, Pools};
use super::proto::{DrawRequest, DrawResponse};
use super::{status, validate};

/// The `error` text of a draw that found nothing available (the Go service's behaviour: a
/// response, not a stream error).
pub(crate) const EMPTY_TEXT: &str = "the pool is empty: no item available";

/// How often a request refused by a full gateway queue is offered again.
const RETRY_EVERY: Duration = Duration::from_millis(1);

/// One request in the window: its pool and, once the gateway answered, its result.
struct Slot {
    pool: usize,
    result: Option<Result<Drawn, Status>>,
}

/// A job a full lane queue refused, waiting to be offered again.
struct Blocked {
    job: Job,
    lane: Arc<Lane>,
    deadline: Instant,
}

/// The response stream of one `Draw` call (see the module docs).
pub(crate) struct DrawStream {
    pools: Arc<Pools>,
    inbound: Streaming<DrawRequest>,
    /// Still reading requests.
    reading: bool,
    /// The status to end with once the window is answered (`None`: `OK`).
    end: Option<Status>,
    /// Ended: nothing more is yielded.
    done: bool,
    replies_tx: UnboundedSender<Reply>,
    replies: UnboundedReceiver<Reply>,
    /// Unanswered requests in order; the front's number is `head`.
    window: VecDeque<Slot>,
    head: u64,
    window_max: usize,
    /// Responses of the answered head, not yet yielded.
    out: VecDeque<DrawResponse>,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    blocked: Option<Blocked>,
    retry: Pin<Box<Sleep>>,
    /// Per pool: this stream's lane (chosen on first use) and item-id table.
    lanes: Vec<Option<Arc<Lane>>>,
    ids: Vec<Option<ItemIds>>,
    /// Counts this stream as a call in progress (the shutdown waits for it).
    _call: Call,
    /// The stream's end was counted in the gRPC call metrics (else, when dropped: the
    /// client went away, `Canceled`).
    counted: bool,
}

impl DrawStream {
    /// A stream answering `inbound`'s requests.
    pub(crate) fn new(pools: Arc<Pools>, inbound: Streaming<DrawRequest>) -> DrawStream {
        let stop = Box::pin(Pools::stopping(pools.stop_signal()));
        let call = Pools::call(&pools);
        let (replies_tx, replies) = mpsc::unbounded_channel();
        let count = pools.slots();
        let window_max = pools.settings().stream_window;
        DrawStream {
            pools,
            inbound,
            reading: true,
            end: None,
            done: false,
            replies_tx,
            replies,
            // Grows with use: an idle stream costs a few hundred bytes, not a full window.
            window: VecDeque::new(),
            head: 0,
            window_max,
            out: VecDeque::new(),
            stop,
            blocked: None,
            retry: Box::pin(tokio::time::sleep(RETRY_EVERY)),
            lanes: vec![None; count],
            ids: vec![None; count],
            _call: call,
            counted: false,
        }
    }

    /// Counts the stream's end with `code` in the gRPC call metrics (once).
    fn count_end(&mut self, code: tonic::Code) {
        if !self.counted {
            self.counted = true;
            self.pools.grpc_calls().record(Method::Draw, code);
        }
    }

    /// Stores a gateway's reply in its slot (a reply for a slot already given up is dropped).
    fn store(&mut self, reply: Reply) {
        let Some(at) = reply.seq.checked_sub(self.head) else { return };
        let Some(slot) = usize::try_from(at).ok().and_then(|at| self.window.get_mut(at)) else {
            return;
        };
        if slot.result.is_some() {
            return;
        }
        let name = self.pools.entry(slot.pool).map_or("?", |e| e.name.as_str());
        slot.result = Some(reply.result.map_err(|e| status::draw_error(name, e)));
    }

    /// The head slot's responses, once it is answered; `Some(status)` when it failed.
    fn emit_head(&mut self) -> Option<Option<Status>> {
        self.window.front()?.result.as_ref()?;
        let slot = self.window.pop_front()?;
        self.head += 1;
        match slot.result? {
            Ok(drawn) => {
                self.respond(slot.pool, &drawn);
                Some(None)
            }
            Err(status) => Some(Some(status)),
        }
    }

    /// One `DrawResponse` per draw of `drawn`, in request-id order.
    fn respond(&mut self, pool: usize, drawn: &Drawn) {
        let Some(entry) = self.pools.entry(pool) else { return };
        let ids = self.ids[pool].get_or_insert_with(|| entry.ids.clone());
        for (j, item) in (0u64..).zip(&drawn.items) {
            let (item_id, error) = match item {
                Some(index) => (ids.get(*index).unwrap_or_default().to_owned(), String::new()),
                None => (String::new(), EMPTY_TEXT.to_owned()),
            };
            self.out.push_back(DrawResponse {
                request_id: drawn.first_request_id + j,
                item_id,
                error,
                replayed: drawn.replayed,
            });
        }
    }

    /// Validates `request` and hands it to its pool's lane; an invalid one stops reading and
    /// becomes the stream's end status.
    fn accept(&mut self, request: &DrawRequest) {
        let (pool, len, key) = match validate(&self.pools, request) {
            Ok(job) => job,
            Err(status) => {
                self.reading = false;
                self.end = Some(status);
                return;
            }
        };
        if self.lanes[pool].is_none() {
            // `validate` found the pool; a primary stays one.
            self.lanes[pool] = self.pools.entry(pool).map(|e| e.gateway.lane());
        }
        let Some(lane) = self.lanes[pool].as_mut() else {
            self.reading = false;
            self.end = Some(Status::internal(format!("no pool at {pool}")));
            return;
        };
        let seq = self.head + self.window.len() as u64;
        self.window.push_back(Slot { pool, result: None });
        let job = Job::new(len, key, seq, self.replies_tx.clone());
        if let Err(job) = lane.submit(job) {
            let deadline = Instant::now() + self.pools.settings().queue_timeout;
            self.blocked = Some(Blocked { job, lane: Arc::clone(lane), deadline });
            self.retry.as_mut().reset(Instant::now() + RETRY_EVERY);
        }
    }

    /// Offers the blocked job again when its retry timer fired; past its deadline, its slot
    /// fails with `RESOURCE_EXHAUSTED`. Returns whether anything changed.
    fn poll_blocked(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(blocked) = self.blocked.take() else { return false };
        if self.retry.as_mut().poll(cx).is_pending() {
            self.blocked = Some(blocked);
            return false;
        }
        let Blocked { job, lane, deadline } = blocked;
        let seq = job.seq;
        match lane.submit(job) {
            Ok(()) => true,
            Err(job) if Instant::now() >= deadline => {
                let pool = self.window.back().map_or(0, |slot| slot.pool);
                let name = self.pools.entry(pool).map_or("?", |e| e.name.as_str());
                if let Some(slot) = self.window.back_mut() {
                    slot.result = Some(Err(Status::resource_exhausted(format!(
                        "pool {name:?}: its gateway queue stayed full for {:?}: the server is \
                         overloaded, retry later",
                        self.pools.settings().queue_timeout
                    ))));
                }
                // Its reply (`Job`'s drop) finds the slot resolved and is ignored.
                drop(job);
                debug_assert_eq!(seq + 1, self.head + self.window.len() as u64);
                self.reading = false;
                true
            }
            Err(job) => {
                self.blocked = Some(Blocked { job, lane, deadline });
                self.retry.as_mut().reset(Instant::now() + RETRY_EVERY);
                // Registers the waker on the new deadline.
                let _ = self.retry.as_mut().poll(cx);
                false
            }
        }
    }

    /// Reads one request if the window has room; returns whether anything changed.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.reading || self.blocked.is_some() || self.window.len() >= self.window_max {
            return false;
        }
        match Pin::new(&mut self.inbound).poll_next(cx) {
            Poll::Ready(Some(Ok(request))) => self.accept(&request),
            Poll::Ready(Some(Err(e))) => {
                self.reading = false;
                self.end = Some(status::inbound(e));
            }
            Poll::Ready(None) => self.reading = false,
            Poll::Pending => return false,
        }
        true
    }
}

/// The pool, draws and key of a request, or why it is refused (`INVALID_ARGUMENT`).
fn validate(pools: &Pools, request: &DrawRequest) -> Result<(usize, u32, u128), Status> {
    let pool = pools.resolve_index(&request.pool)?;
    let max = pools
        .entry(pool)
        .map(|e| e.pull_max)
        .ok_or_else(|| Status::internal(format!("no pool at {pool}")))?;
    let (len, key) = validate::draw(request, max).map_err(|e| status::invalid(e.0))?;
    Ok((pool, len, key))
}

impl Drop for DrawStream {
    fn drop(&mut self) {
        // Dropped before its end: the client cancelled or its connection went away.
        self.count_end(tonic::Code::Cancelled);
    }
}

impl Stream for DrawStream {
    type Item = Result<DrawResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(response) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(response)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            while let Poll::Ready(Some(reply)) = this.replies.poll_recv(cx) {
                this.store(reply);
            }
            match this.emit_head() {
                Some(None) => continue,
                Some(Some(status)) => {
                    this.done = true;
                    this.count_end(status.code());
                    return Poll::Ready(Some(Err(status)));
                }
                None => {}
            }
            if this.reading && this.stop.as_mut().poll(cx).is_ready() {
                this.reading = false;
                this.end = Some(status::stopping());
            }
            if this.poll_blocked(cx) || this.poll_read(cx) {
                continue;
            }
            if !this.reading && this.window.is_empty() && this.blocked.is_none() {
                this.done = true;
                this.count_end(this.end.as_ref().map_or(tonic::Code::Ok, Status::code));
                return Poll::Ready(this.end.take().map(Err));
            }
            return Poll::Pending;
        }
    }
}
