//! The bridge from the async service to the lock-free engine.
//!
//! ```text
//!  Draw stream task ──Job──▶ Lane queue (ArrayQueue, bounded) ──▶ gateway thread
//!        ▲                    + Doorbell ring                        │ owns one engine Client
//!        │                                                           │ try_pull_keyed ──▶ ring ──▶ core
//!        └──── Reply (per-stream channel) ◀── completions, in order ◀┘ (is_pull_ready, wait_pull)
//! ```
//!
//! Each pool has a few *lanes*; a lane is one gateway thread that owns one engine
//! [`Client`] and a bounded lock-free job queue. A Draw stream picks one lane per pool when it
//! first draws from it (round robin) and keeps it, so its requests reach the engine in the
//! order they were read, through one ring. The gateway submits jobs with
//! [`Client::try_pull_keyed`] (a pull of `count` draws, keyed or not: one request, one group),
//! takes completions in submission order, and sends each result to the stream that asked.
//!
//! Why threads that own clients rather than a waker inside `ingress`: a [`Client`] is one
//! thread's handle by design (`Send`, not `Sync`; its ring is single-producer), and the
//! engine's completion publishing wakes a *thread* through its doorbell. A gateway keeps both
//! as they are — nothing changes on the core side: no lock, no allocation, no new atomics
//! per draw. What the bridge costs is on this side: one queue push and one channel send per
//! request (not per draw), and the outcomes copied out of the pull area into the reply.
//!
//! Idling: a gateway with nothing to do sleeps on its lane's [`Doorbell`] (rung by a stream
//! after each push); one with requests in flight sleeps on the client's completion doorbell
//! as well (`Client::park_until_ready`, inside the lane bell's sleep, so both bells are
//! armed at once: a new job or a completion wakes it). It never busy-spins: on this 2-core
//! machine the engine's core thread already spins while loaded, and under `sync` the flush
//! worker needs the other CPU.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use rewardpool::{Client, Doorbell, DrawError, Engine, EngineError, ItemIndex, PullTicket};
use tokio::sync::mpsc::UnboundedSender;

/// Longest single sleep of an idle gateway (a wake-up is never missed: this only bounds
/// the cost of a bug).
const IDLE_SLEEP: Duration = Duration::from_millis(50);

/// One request for the engine: a pull of `len` draws (1 = a single draw).
#[derive(Debug)]
pub(crate) struct Job {
    /// Draws asked for (1 to the client's `pull_max`, checked by the stream).
    pub(crate) len: u32,
    /// Idempotency key (0 = none).
    pub(crate) key: u128,
    /// The stream's number for this request (its position in the stream's window).
    pub(crate) seq: u64,
    /// Where the result goes; `None` once answered.
    reply: Option<UnboundedSender<Reply>>,
}

impl Job {
    /// A job whose result goes to `reply`.
    pub(crate) fn new(len: u32, key: u128, seq: u64, reply: UnboundedSender<Reply>) -> Job {
        Job { len, key, seq, reply: Some(reply) }
    }

    /// Sends the result (a stream that went away is ignored: nothing waits for it).
    fn answer(mut self, result: Result<Drawn, DrawError>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(Reply { seq: self.seq, result });
        }
    }
}

impl Drop for Job {
    /// A job dropped unanswered (a queue dropped at shutdown) still answers: the stream
    /// never waits for a reply that cannot come.
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(Reply { seq: self.seq, result: Err(DrawError::ShuttingDown) });
        }
    }
}

/// A job's result, for the stream that sent it.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The job's `seq`.
    pub(crate) seq: u64,
    /// The outcomes, or why there are none.
    pub(crate) result: Result<Drawn, DrawError>,
}

/// An acknowledged pull (durable under the pool's mode), copied out of the pull area.
#[derive(Debug)]
pub(crate) struct Drawn {
    /// The request id of the first draw; the others follow it.
    pub(crate) first_request_id: u64,
    /// The original outcomes of a key seen before.
    pub(crate) replayed: bool,
    /// Each draw's item (`None`: nothing was available).
    pub(crate) items: Vec<Option<ItemIndex>>,
}

/// One gateway thread's queue and doorbell, shared with the streams that use it.
#[derive(Debug)]
pub(crate) struct Lane {
    queue: ArrayQueue<Job>,
    bell: Doorbell,
    stop: AtomicBool,
}

impl Lane {
    /// Hands `job` to the gateway and rings it; gives the job back when the queue is full
    /// (the caller waits and retries, or gives up).
    pub(crate) fn submit(&self, job: Job) -> Result<(), Job> {
        self.queue.push(job)?;
        self.bell.ring();
        Ok(())
    }
}

/// One pool's gateway threads.
#[derive(Debug)]
pub(crate) struct Gateway {
    lanes: Vec<Arc<Lane>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next: AtomicUsize,
    /// The longest pull the clients accept.
    pull_max: u32,
}

impl Gateway {
    /// Starts `lanes` gateway threads on `engine`, each with its own client and a queue of
    /// `queue_len` jobs.
    ///
    /// # Errors
    /// The engine refuses a client (too many, or it stopped), or a thread cannot start.
    pub(crate) fn start(
        pool: &str,
        engine: &Engine,
        lanes: usize,
        queue_len: usize,
    ) -> Result<Gateway, EngineError> {
        assert!(lanes > 0 && queue_len > 0, "lanes={lanes} queue_len={queue_len}");
        // Built up in place: on an error, its `Drop` stops the threads already started.
        let mut gateway = Gateway {
            lanes: Vec::with_capacity(lanes),
            threads: Mutex::new(Vec::with_capacity(lanes)),
            next: AtomicUsize::new(0),
            pull_max: rewardpool::PULL_LEN_MAX,
        };
        for i in 0..lanes {
            let lane = Arc::new(Lane {
                queue: ArrayQueue::new(queue_len),
                bell: Doorbell::new(),
                stop: AtomicBool::new(false),
            });
            let client = engine.client()?;
            gateway.pull_max = gateway.pull_max.min(client.pull_max());
            let shared = Arc::clone(&lane);
            let thread = std::thread::Builder::new()
                .name(format!("gateway-{pool}-{i}"))
                .spawn(move || run(&shared, client))
                .map_err(EngineError::Spawn)?;
            lock(&gateway.threads).push(thread);
            gateway.lanes.push(lane);
        }
        Ok(gateway)
    }

    /// The longest pull the engine accepts: the most draws one request may ask for.
    pub(crate) fn pull_max(&self) -> u32 {
        self.pull_max
    }

    /// The lane a new stream uses (round robin).
    pub(crate) fn lane(&self) -> Arc<Lane> {
        // Relaxed: only spreads streams; no data is published through it.
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        Arc::clone(&self.lanes[i])
    }

    /// Stops the gateway threads once each has answered every job it holds (queued or in
    /// flight) and joins them; their clients are then dropped. Jobs pushed later are
    /// answered `ShuttingDown` when their lane is dropped (`Job`'s `Drop`). Idempotent.
    pub(crate) fn stop(&self) {
        for lane in &self.lanes {
            // Release: the gateway's Acquire load sees it after its wake-up.
            lane.stop.store(true, Ordering::Release);
            lane.bell.ring();
        }
        for thread in lock(&self.threads).drain(..) {
            let _ = thread.join();
        }
        for lane in &self.lanes {
            while let Some(job) = lane.queue.pop() {
                job.answer(Err(DrawError::ShuttingDown));
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A request submitted to the engine, waiting for its outcomes.
struct InFlight {
    ticket: PullTicket,
    job: Job,
}

/// The gateway thread: submit what the streams queued, answer what completed, in order;
/// sleep when there is neither. Ends once stopped with nothing queued or in flight.
fn run(lane: &Lane, mut client: Client) {
    let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(client.capacity());
    // A job the client refused for lack of room (its ring or pull area): retried first.
    let mut held: Option<Job> = None;
    loop {
        let mut progress = complete(&mut client, &mut in_flight);
        progress |= submit(lane, &mut client, &mut in_flight, &mut held);
        if progress {
            continue;
        }
        // Acquire: pairs with the Release store in `Gateway::stop`.
        let stop = lane.stop.load(Ordering::Acquire);
        if stop && in_flight.is_empty() && held.is_none() && lane.queue.is_empty() {
            return;
        }
        let wants_jobs = held.is_none();
        if in_flight.is_empty() {
            lane.bell.sleep(IDLE_SLEEP, || (wants_jobs && !lane.queue.is_empty()) || stop);
        } else {
            // Both bells armed: the lane's (set by this sleep) and the client's completion
            // bell (set by `park_until_ready`, which parks this same thread).
            lane.bell.sleep(IDLE_SLEEP, || {
                if !wants_jobs || lane.queue.is_empty() {
                    client.park_until_ready(IDLE_SLEEP);
                }
                true
            });
        }
    }
}

/// Answers every request at the head of `in_flight` whose outcomes are ready, in order.
/// Returns whether it answered any.
fn complete(client: &mut Client, in_flight: &mut VecDeque<InFlight>) -> bool {
    let mut answered = false;
    while let Some(head) = in_flight.front() {
        if !client.is_pull_ready(&head.ticket) {
            break;
        }
        let Some(InFlight { ticket, job }) = in_flight.pop_front() else { break };
        let result = client.wait_pull(ticket).map(|pull| Drawn {
            first_request_id: pull.first_request_id().0,
            replayed: pull.replayed(),
            items: pull.map(|outcome| outcome.item).collect(),
        });
        job.answer(result);
        answered = true;
    }
    answered
}

/// Submits queued jobs until the client has no room; wakes the core once after. Returns
/// whether it took any job.
fn submit(
    lane: &Lane,
    client: &mut Client,
    in_flight: &mut VecDeque<InFlight>,
    held: &mut Option<Job>,
) -> bool {
    let mut taken = false;
    let mut pushed = false;
    while let Some(job) = held.take().or_else(|| lane.queue.pop()) {
        match client.try_pull_keyed(job.len, job.key) {
            Ok(ticket) => {
                in_flight.push_back(InFlight { ticket, job });
                pushed = true;
            }
            Err(DrawError::Full) => {
                *held = Some(job);
                break;
            }
            Err(e) => job.answer(Err(e)),
        }
        taken = true;
    }
    if pushed {
        client.flush();
    }
    taken
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rewardpool::journal::testing::FailingJournal;
    use rewardpool::{
        CorePin, EngineConfig, ItemSpec, Journal, MemoryJournal, Pool, Quantity, Rng,
    };
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(20);

    fn engine(journal: impl Journal, ring_capacity: usize) -> Engine {
        let catalog = [
            ItemSpec { id: "gold".into(), quantity: Quantity::Unlimited, weight: 1 },
            ItemSpec { id: "mud".into(), quantity: Quantity::Unlimited, weight: 3 },
        ];
        let pool = Pool::new(&catalog, Rng::from_seed(7)).unwrap();
        let config =
            EngineConfig { ring_capacity, core: CorePin::Unpinned, ..EngineConfig::default() };
        Engine::start(pool, journal, config).unwrap()
    }

    /// Hands `job` to `lane`, waiting while its queue is full (a test's flow control).
    fn submit(lane: &Lane, mut job: Job) {
        let start = Instant::now();
        while let Err(back) = lane.submit(job) {
            assert!(start.elapsed() < DEADLINE, "the lane's queue stayed full");
            job = back;
            std::thread::yield_now();
        }
    }

    /// The next `n` replies, within the deadline.
    fn replies(rx: &mut UnboundedReceiver<Reply>, n: usize) -> Vec<Reply> {
        let start = Instant::now();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match rx.try_recv() {
                Ok(reply) => out.push(reply),
                Err(_) => {
                    assert!(start.elapsed() < DEADLINE, "{} of {n} replies", out.len());
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        out
    }

    /// More jobs than the client's ring and the lane's queue hold: every one is answered,
    /// in order, with consecutive request ids.
    #[test]
    fn answers_in_order_past_full_rings_and_queues() {
        let engine = engine(MemoryJournal::new(), 4);
        let gateway = Gateway::start("p", &engine, 1, 8).unwrap();
        let lane = gateway.lane();
        let (tx, mut rx) = unbounded_channel();
        for seq in 0..200 {
            submit(&lane, Job::new(3, 0, seq, tx.clone()));
        }
        let replies = replies(&mut rx, 200);
        for (seq, reply) in (0u64..).zip(&replies) {
            assert_eq!(reply.seq, seq);
            let drawn = reply.result.as_ref().unwrap();
            assert_eq!(drawn.first_request_id, 1 + 3 * seq);
            assert_eq!(drawn.items.len(), 3);
            assert!(drawn.items.iter().all(Option::is_some) && !drawn.replayed);
        }
        gateway.stop();
        engine.shutdown().unwrap();
    }

    /// A keyed job sent again gets the original outcomes, marked replayed; with another
    /// count, a key conflict.
    #[test]
    fn keyed_jobs_replay_and_conflict() {
        let engine = engine(MemoryJournal::new(), 16);
        let gateway = Gateway::start("p", &engine, 2, 8).unwrap();
        let (tx, mut rx) = unbounded_channel();
        let key = 0xfeed_u128;
        submit(&gateway.lane(), Job::new(2, key, 0, tx.clone()));
        let first = replies(&mut rx, 1).remove(0).result.unwrap();
        // Through the other lane (another client): the key is the pool's.
        submit(&gateway.lane(), Job::new(2, key, 1, tx.clone()));
        let again = replies(&mut rx, 1).remove(0).result.unwrap();
        assert!(again.replayed && !first.replayed);
        assert_eq!((again.first_request_id, &again.items), (first.first_request_id, &first.items));
        submit(&gateway.lane(), Job::new(3, key, 2, tx));
        let conflict = replies(&mut rx, 1).remove(0).result.unwrap_err();
        assert!(
            matches!(conflict, DrawError::KeyConflict { len: 3, original: 2, .. }),
            "{conflict:?}"
        );
        gateway.stop();
        engine.shutdown().unwrap();
    }

    /// The journal fails mid-way: every job is answered, the late ones with the failure.
    #[test]
    fn a_failed_journal_answers_every_job_with_its_kind() {
        let (journal, switch) = FailingJournal::new();
        switch.fail_after_draws(10);
        let engine = engine(journal, 4);
        let gateway = Gateway::start("p", &engine, 1, 8).unwrap();
        let lane = gateway.lane();
        let (tx, mut rx) = unbounded_channel();
        for seq in 0..40 {
            submit(&lane, Job::new(1, 0, seq, tx.clone()));
        }
        let replies = replies(&mut rx, 40);
        let ok = replies.iter().take_while(|r| r.result.is_ok()).count();
        assert!(ok <= 10, "{ok} acknowledged past the failure");
        for reply in &replies[ok..] {
            assert!(matches!(reply.result, Err(DrawError::Failed(_))), "{:?}", reply.result);
        }
        gateway.stop();
        assert!(engine.shutdown().is_err());
    }

    /// Stopping answers what is queued; a job that reaches a stopped lane is answered
    /// `ShuttingDown` when the lane goes (nothing waits forever).
    #[test]
    fn stop_answers_everything() {
        let engine = engine(MemoryJournal::new(), 4);
        let gateway = Gateway::start("p", &engine, 1, 64).unwrap();
        let lane = gateway.lane();
        let (tx, mut rx) = unbounded_channel();
        for seq in 0..50 {
            submit(&lane, Job::new(2, 0, seq, tx.clone()));
        }
        gateway.stop();
        assert_eq!(replies(&mut rx, 50).len(), 50);
        submit(&lane, Job::new(1, 0, 50, tx));
        drop((gateway, lane));
        let late = replies(&mut rx, 1).remove(0);
        assert_eq!((late.seq, late.result.unwrap_err()), (50, DrawError::ShuttingDown));
        engine.shutdown().unwrap();
    }
}
