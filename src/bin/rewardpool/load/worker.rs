//! One Draw stream: sends requests on its pacing (closed or open loop), matches the answers
//! to them in order, and records each request's latency and outcome.
//!
//! The server answers a stream's requests in order, `count` responses each, so the
//! outstanding requests are a queue: a response belongs to the front one. A request's
//! latency runs from its send (closed loop) or its due time (open loop: a request sent late
//! is charged the delay, so a stalled server cannot hide behind the requests it delayed) to
//! its last response.
//!
//! A stream that fails (cannot open, or ends with an error status) counts the error by code,
//! charges that code to every request it left unanswered, waits [`RETRY`] and opens again,
//! until the run ends. At the end, a stream stops sending and waits up to [`DRAIN`] for its
//! outstanding answers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_xoshiro::rand_core::{Rng as _, SeedableRng as _};
use rand_xoshiro::Xoshiro256PlusPlus;
use tokio::sync::{mpsc, watch};
use tokio::time::sleep_until;
use tokio_stream::wrappers::ReceiverStream;
use tonic::client::Grpc;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use super::plan::{Mode, Plan};
use super::tally::{self, UNANSWERED};
use super::wire::{self, Answer};
use crate::service::proto::DrawRequest;

/// How long a stream waits, after the run's end, for its outstanding answers.
pub(crate) const DRAIN: Duration = Duration::from_secs(10);
/// How long a finished stream waits for the server to end the call after its half-close.
const CLOSE: Duration = Duration::from_secs(1);
/// Pause before a failed stream opens again.
pub(crate) const RETRY: Duration = Duration::from_millis(100);

/// What every stream of a run shares.
#[derive(Debug)]
pub(crate) struct Run {
    pub plan: Plan,
    pub start: Instant,
    pub end: Instant,
}

/// What the control loop tells every stream (a `watch` channel: a stream waiting on it
/// misses no change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Control {
    /// Closed loop: streams with an index below this are active.
    pub level: u32,
    /// The run was asked to stop early (SIGINT) at this time.
    pub stop: Option<Instant>,
}

impl Run {
    /// When sending ends: the plan's end, or an earlier stop.
    fn end(&self, control: &watch::Receiver<Control>) -> Instant {
        control.borrow().stop.map_or(self.end, |s| s.min(self.end))
    }
}

/// A request sent and not yet answered in full.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Latency runs from here: the send (closed loop) or the due time (open loop).
    at: Instant,
    left: u32,
    responses: u32,
    empty: u32,
}

/// When this stream's next request may go.
#[derive(Debug)]
enum Pacer {
    /// The free slots of the window, by the time each may send again (sorted: slots free up
    /// in answer order, each after the same pause).
    Closed { ready: VecDeque<Instant>, pause: Duration },
    /// This stream is `k` of `of`: its `j`-th request is the run's request `j·of + k`.
    Open { k: u64, of: u64, j: u64, due: Option<Instant> },
}

impl Pacer {
    fn new(run: &Run, index: u32) -> Pacer {
        match run.plan.mode {
            Mode::Closed { pause } => Pacer::Closed {
                ready: std::iter::repeat_n(run.start, run.plan.in_flight as usize).collect(),
                pause,
            },
            Mode::Open => {
                let (k, of) = (u64::from(index), u64::from(run.plan.streams_total()));
                Pacer::Open { k, of, j: 0, due: due(run, k, of, 0) }
            }
        }
    }

    /// The time the next request may go, if this stream is to send more.
    fn next(&self) -> Option<Instant> {
        match self {
            Pacer::Closed { ready, .. } => ready.front().copied(),
            Pacer::Open { due, .. } => *due,
        }
    }

    /// The request [`Pacer::next`] named went: (latency start, lag behind its due time).
    fn take(&mut self, run: &Run, now: Instant) -> (Instant, Option<u64>) {
        match self {
            Pacer::Closed { ready, .. } => {
                ready.pop_front();
                (now, None)
            }
            Pacer::Open { k, of, j, due: d } => {
                let at = d.unwrap_or(now);
                *j += 1;
                *d = due(run, *k, *of, *j);
                (at, Some(nanos(now.saturating_duration_since(at))))
            }
        }
    }

    /// A request was answered in full (or failed) at `now`: its slot frees up.
    fn free(&mut self, now: Instant) {
        if let Pacer::Closed { ready, pause } = self {
            ready.push_back(now + *pause);
        }
    }

    /// Open loop: the requests due before `end` that this stream did not send.
    fn unsent(&self, run: &Run, end: Instant) -> u64 {
        match self {
            Pacer::Closed { .. } => 0,
            Pacer::Open { k, of, j, .. } => scheduled(run, end, *k, *of).saturating_sub(*j),
        }
    }
}

/// Open loop: how many requests stream `k` of `of` has due before `end`. The run's
/// request n (from 1) is due when the rate's integral reaches n − ½ (mid-interval, so no
/// two streams start together), so stream k's j-th is due at (j·of + k + ½).
fn scheduled(run: &Run, end: Instant, k: u64, of: u64) -> u64 {
    let total = run.plan.ramp.cumulative(end.saturating_duration_since(run.start));
    let room = total - k as f64 - 0.5;
    if room <= 0.0 {
        0
    } else {
        // A non-negative, finite quotient.
        (room / of as f64).ceil() as u64
    }
}

/// Open loop: when stream `k`'s `j`-th request is due (see [`scheduled`]), if before the end.
fn due(run: &Run, k: u64, of: u64, j: u64) -> Option<Instant> {
    let n = j.saturating_mul(of).saturating_add(k) as f64 + 0.5;
    let t = run.start + run.plan.ramp.time_of(n)?;
    (t < run.end).then_some(t)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Idempotency keys: fresh and random per request with `--keys`, else none.
#[derive(Debug)]
struct Keys(Option<Xoshiro256PlusPlus>);

impl Keys {
    fn new(on: bool) -> Keys {
        // Seeded once per stream from the OS (a fallback seed still gives distinct keys
        // per stream: the clock's nanoseconds).
        let seed = getrandom::u64().unwrap_or_else(|_| nanos(Instant::now().elapsed()));
        Keys(on.then(|| Xoshiro256PlusPlus::seed_from_u64(seed)))
    }

    fn next(&mut self) -> Vec<u8> {
        match &mut self.0 {
            None => Vec::new(),
            Some(rng) => {
                let mut key = Vec::with_capacity(16);
                key.extend_from_slice(&rng.next_u64().to_le_bytes());
                // Never all zeros (a zero key means none).
                key.extend_from_slice(&(rng.next_u64() | 1).to_le_bytes());
                key
            }
        }
    }
}

/// How a stream's session ended.
enum Ended {
    /// The run is over for this stream.
    Done,
    /// The stream failed: open another after [`RETRY`].
    Failed,
}

/// Stream `index` of the run: sessions until the run's end.
pub(crate) async fn stream(
    index: u32,
    mut client: Grpc<Channel>,
    run: Arc<Run>,
    mut control: watch::Receiver<Control>,
) {
    let mut pacer = Pacer::new(&run, index);
    let mut keys = Keys::new(run.plan.keys);
    let cap = run.plan.in_flight as usize;
    let mut pending = VecDeque::with_capacity(cap.min(1024));
    while Instant::now() < run.end(&control) {
        let mut s = Session {
            run: &run,
            index,
            pacer: &mut pacer,
            keys: &mut keys,
            pending: &mut pending,
            control: &mut control,
        };
        match s.run(&mut client).await {
            Ended::Done => break,
            Ended::Failed => {
                sleep_until((Instant::now() + RETRY).min(run.end(&control)).into()).await;
            }
        }
    }
    tally::record_unsent(pacer.unsent(&run, run.end(&control)));
}

/// One Draw call of a stream.
struct Session<'a> {
    run: &'a Run,
    index: u32,
    pacer: &'a mut Pacer,
    keys: &'a mut Keys,
    pending: &'a mut VecDeque<Pending>,
    control: &'a mut watch::Receiver<Control>,
}

impl Session<'_> {
    async fn run(&mut self, client: &mut Grpc<Channel>) -> Ended {
        let cap = self.run.plan.in_flight as usize;
        let closed = matches!(self.pacer, Pacer::Closed { .. });
        let mut control_open = true;
        let (tx, rx) = mpsc::channel(cap);
        // The call resolves on the server's response headers, which a server may send only
        // with its first answer: requests go out while it is pending.
        let mut call = std::pin::pin!(wire::draw(client, ReceiverStream::new(rx)));
        let mut inbound: Option<Streaming<Answer>> = None;
        loop {
            let now = Instant::now();
            let end = self.run.end(self.control);
            let drain_end = end + DRAIN;
            let sending = now < end;
            let active = !closed || self.index < self.control.borrow().level;
            // The open loop owes every request due before the end, also one whose timer
            // fired after it (or that waited for the window): it goes out late.
            let may_send = (sending && active) || !closed;
            if may_send {
                self.send_due(&tx, now, end);
            }
            if !sending && self.pending.is_empty() {
                // Half-close: the server ends the call with OK (no cancellation to log).
                drop(tx);
                if let Some(s) = inbound.as_mut() {
                    let rest = async { while let Ok(Some(_)) = s.message().await {} };
                    let _ = tokio::time::timeout(CLOSE, rest).await;
                }
                return Ended::Done;
            } else if now >= drain_end {
                self.fail_all(UNANSWERED);
                return Ended::Done;
            }
            let wake =
                self.pacer.next().filter(|&t| may_send && t < end && self.pending.len() < cap);
            tokio::select! {
                biased;
                r = &mut call, if inbound.is_none() => match r {
                    Ok(answers) => inbound = Some(answers),
                    Err(status) => return self.failed(&status),
                },
                m = message(&mut inbound), if inbound.is_some() => match m {
                    Ok(Some(r)) => self.answer(r),
                    Ok(None) => {
                        // The server ended the stream without an error, before answering all.
                        self.fail_all(UNANSWERED);
                        return if sending { Ended::Failed } else { Ended::Done };
                    }
                    Err(status) => return self.failed(&status),
                },
                () = sleep_until(wake.unwrap_or(now).into()), if wake.is_some() => {}
                r = self.control.changed(), if sending && control_open => {
                    control_open = r.is_ok();
                }
                () = sleep_until(end.into()), if sending => {}
                () = sleep_until(drain_end.into()), if !sending => {}
            }
        }
    }

    /// Sends every request that is due by `now` (and before `end`) and fits the window.
    fn send_due(&mut self, tx: &mpsc::Sender<DrawRequest>, now: Instant, end: Instant) {
        let plan = &self.run.plan;
        let count = plan.count.unsigned_abs();
        while self.pending.len() < plan.in_flight as usize
            && self.pacer.next().is_some_and(|t| t <= now && t < end)
        {
            let request = DrawRequest {
                count: plan.count,
                pool: plan.pool.clone(),
                idempotency_key: self.keys.next(),
            };
            // The channel holds at most the window, which `pending` bounds: never full.
            // Closed means the call is over; its status arrives on the inbound side.
            if tx.try_send(request).is_err() {
                return;
            }
            let (at, lag) = self.pacer.take(self.run, now);
            self.pending.push_back(Pending { at, left: count, responses: 0, empty: 0 });
            tally::record_sent(u64::from(count), lag);
        }
    }

    /// One response: it belongs to the oldest outstanding request.
    fn answer(&mut self, r: Answer) {
        let Some(front) = self.pending.front_mut() else {
            // More answers than asked for: counted, not matched.
            tally::record_failed(usize::MAX, 1, u64::from(r.empty));
            return;
        };
        front.responses += 1;
        front.empty += u32::from(r.empty);
        front.left = front.left.saturating_sub(1);
        if front.left == 0 {
            let done = *front;
            self.pending.pop_front();
            let now = Instant::now();
            let latency = nanos(now.saturating_duration_since(done.at));
            tally::record_ok(now, latency, u64::from(done.responses), u64::from(done.empty));
            self.pacer.free(now);
        }
    }

    /// The stream ended with `status`: count it, charge it to every outstanding request.
    fn failed(&mut self, status: &Status) -> Ended {
        tally::record_error(status.code());
        self.fail_all(status.code() as usize);
        Ended::Failed
    }

    fn fail_all(&mut self, outcome: usize) {
        let now = Instant::now();
        for p in self.pending.drain(..) {
            tally::record_failed(outcome, u64::from(p.responses), u64::from(p.empty));
            self.pacer.free(now);
        }
    }
}

/// The next message of an open stream (pending forever without one).
async fn message(inbound: &mut Option<Streaming<Answer>>) -> Result<Option<Answer>, Status> {
    match inbound {
        Some(s) => s.message().await,
        None => std::future::pending().await,
    }
}
