//! The shipper: one per replicated pool, on its own thread with its own single-threaded
//! async runtime. It reads the pool's committed groups from its log files
//! (`rewardpool::replicate::LogTail`, up to the engine's durable watermark) and publishes
//! them, many messages in flight at once; the core thread never waits for it. A message
//! holds one group, or every group that is ready up to `wire::BATCH_BYTES` when the shipper
//! is behind (`wire::Batch`): under load the servers store a few large messages instead of
//! one per group.
//!
//! `ack: local`: it reads up to what the engine acknowledged. `ack: replica`: it turns the
//! journal's replication gate on before any draw (`JournalStats::gated`); the journal then
//! reports a group durable only once it is durable locally and this shipper released it
//! (`released_group`, after JetStream's ack); it reads up to what is durable locally
//! (`local_durable_request_id`). Fenced, it sets `fenced`: the pool fails, so nothing more
//! is acknowledged by an old primary.
//!
//! A session: connect, open (or create) the stream, read its last message to learn where the
//! stream ends (its `Rewardpool-Segment`/`-End`/`-Last` headers: the tail continues after
//! that group; an empty stream starts at the log's beginning), then publish with
//! `Nats-Expected-Last-Sequence` counting up from the stream's last sequence. A timeout or a
//! lost connection ends the session: the next one starts from the stream's last message
//! again (a group published twice is stored once: `Nats-Msg-Id`). A publish refused for a
//! wrong last sequence means another writer (a promoted standby) owns the stream: the
//! shipper stops for good and says so. So does damage or a missing segment in the log.
//!
//! Epochs: the shipper publishes with the epoch in `<pool dir>/replica.epoch` (1 without
//! it; `rewardpool promote` writes it). A session that finds the stream's last message from
//! a later epoch (a promoted standby's fence or groups) is fenced at once: an old primary
//! restarted after a take-over ships nothing and its pool stops. A promoted pool's first
//! session continues after the promotion's fence (`wire` module docs).
//!
//! The shipper holds the segments it has not shipped from retention
//! (`JournalStats::retain_from`); the log bounds that hold (`WalOptions::held_segments_max`).
//! Past `max_lag_groups` groups unshipped the alarm gauge rises; the pool keeps serving.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use rewardpool::config::{ReplicaAck, ReplicationConfig};
use rewardpool::replicate::{Group, LogTail, TailStart};
use rewardpool::storage::{OsStorage, Storage};
use rewardpool::Meter;

use super::wire;

/// Publishes in flight at most (each a whole group).
const WINDOW: usize = 256;
/// How often an idle shipper looks for an update group (see `Job::session`).
const IDLE_LOOK: Duration = Duration::from_millis(100);
/// How long a session waits before reconnecting after a failure.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// `Shipper::mode`: serving; draining (ship up to the final watermark, then end); abandon.
const RUN: u8 = 0;
const DRAIN: u8 = 1;
const ABANDON: u8 = 2;

/// What a shipper reports (`Relaxed` atomics, read by the metrics exporter).
#[derive(Debug, Default)]
pub(crate) struct ShipStats {
    /// The stream sequence of the last message JetStream acknowledged.
    pub(crate) shipped_sequence: AtomicU64,
    /// The last request id in an acknowledged message.
    pub(crate) shipped_request_id: AtomicU64,
    /// Acknowledged draws not yet acknowledged by JetStream (durable watermark minus
    /// `shipped_request_id`).
    pub(crate) lag_draws: AtomicU64,
    /// Groups committed since the pool started that JetStream has not acknowledged yet.
    pub(crate) lag_groups: AtomicU64,
    /// 1 while `lag_groups` is above `max_lag_groups`.
    pub(crate) alarm: AtomicBool,
    /// 1 while a session is connected and shipping.
    pub(crate) connected: AtomicBool,
    /// 1 once the shipper stopped for good (fenced, damage, a missing segment).
    pub(crate) failed: AtomicBool,
}

/// Each replicated pool's name and its shipper's counters (for the metrics exporter).
pub(crate) type Shipping = Vec<(String, Arc<ShipStats>)>;

/// A running shipper.
#[derive(Debug)]
pub(crate) struct Shipper {
    pool: String,
    mode: Arc<AtomicU8>,
    stats: Arc<ShipStats>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

/// Why a session ended.
enum End {
    /// Drained (or abandoned) on request.
    Stopped,
    /// Try again with a new session.
    Retry(String),
    /// Stop shipping for good.
    Fatal(String),
}

impl Shipper {
    /// Starts shipping pool `pool` (its log in `dir`, its engine read through `meter`).
    ///
    /// # Errors
    /// The thread cannot be started.
    pub(crate) fn start(
        pool: &str,
        dir: PathBuf,
        meter: Meter,
        config: ReplicationConfig,
    ) -> std::io::Result<Shipper> {
        if config.ack == ReplicaAck::Replica {
            // The gate goes on before any draw: from now on a group is acknowledged once
            // JetStream stored it too.
            let Some(journal) = meter.journal_stats() else {
                return Err(std::io::Error::other(format!(
                    "pool {pool:?}: replication.ack: replica needs a log (wal.durability \
                     buffered or sync)"
                )));
            };
            let start = meter.read().durable_request_id.0;
            journal.local_durable_request_id.store(start, Ordering::Release);
            journal.gated.store(true, Ordering::Release);
        }
        let mode = Arc::new(AtomicU8::new(RUN));
        let stats = Arc::new(ShipStats::default());
        let job = Job {
            pool: pool.to_owned(),
            dir,
            meter,
            config,
            mode: Arc::clone(&mode),
            stats: Arc::clone(&stats),
        };
        let thread = std::thread::Builder::new()
            .name(format!("rewardpool-ship-{pool}"))
            .spawn(move || job.run())?;
        Ok(Shipper { pool: pool.to_owned(), mode, stats, thread: Some(thread) })
    }

    /// Its counters.
    pub(crate) fn stats(&self) -> &Arc<ShipStats> {
        &self.stats
    }

    /// The pool it ships.
    pub(crate) fn pool(&self) -> &str {
        &self.pool
    }

    /// After the pool stopped: ships what is left (up to the final watermark) for at most
    /// `deadline`, then stops. `Err` says why shipping had stopped, or what is left unshipped.
    pub(crate) fn stop(mut self, deadline: Duration) -> Result<(), String> {
        // Relaxed: a request flag the thread polls; nothing is published through it.
        self.mode.store(DRAIN, Ordering::Relaxed);
        let start = Instant::now();
        let Some(thread) = self.thread.take() else { return Ok(()) };
        while !thread.is_finished() && start.elapsed() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !thread.is_finished() {
            self.mode.store(ABANDON, Ordering::Relaxed);
        }
        let result = thread.join().unwrap_or_else(|_| Err("the shipper thread panicked".into()));
        let lag = self.stats.lag_draws.load(Ordering::Relaxed);
        match result {
            Ok(()) if lag > 0 => Err(format!(
                "{lag} acknowledged draws were not shipped within {deadline:?} (the stream \
                 continues from them when the pool starts again)"
            )),
            other => other,
        }
    }
}

/// What the shipper thread owns.
struct Job {
    pool: String,
    dir: PathBuf,
    meter: Meter,
    config: ReplicationConfig,
    mode: Arc<AtomicU8>,
    stats: Arc<ShipStats>,
}

/// A message in flight.
struct InFlight {
    ack: PublishAckFuture,
    expected: u64,
    last_request_id: u64,
    /// Its first group's segment (retention holds it until the message is acknowledged).
    segment: u64,
    /// Where its last group starts, and that group's commit frame's group number (what the
    /// gate releases).
    last_segment: u64,
    last_offset: u64,
    group: u64,
    /// Its groups committed since the pool started (they count in `lag_groups`).
    recent: u64,
}

impl Job {
    fn run(self) -> Result<(), String> {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
                format!("pool {:?}: cannot start the shipper's runtime: {e}", self.pool)
            })?;
        let storage: Arc<dyn Storage> = match OsStorage::existing(&self.dir) {
            Ok(s) => Arc::new(s),
            Err(e) => return Err(format!("pool {:?}: {}: {e}", self.pool, self.dir.display())),
        };
        let epoch = match wire::local_epoch(&self.dir) {
            Ok(epoch) => epoch,
            Err(e) => {
                self.stats.failed.store(true, Ordering::Relaxed);
                return Err(format!("pool {:?}: shipping stopped: {e:#}", self.pool));
            }
        };
        // Until the first session knows where the stream ends, hold the whole log.
        if let Ok(Some(oldest)) = LogTail::oldest_segment(&*storage) {
            self.hold(oldest);
        }
        let start_request_id = self.meter.read().durable_request_id.0;
        let start_groups = self.meter.read().groups_committed;
        let mut acked_recent = 0_u64;
        let mut last_error = String::new();
        loop {
            let session =
                self.session(&storage, epoch, start_request_id, start_groups, &mut acked_recent);
            // Relaxed: an observer's gauge.
            self.stats.connected.store(false, Ordering::Relaxed);
            match runtime.block_on(session) {
                End::Stopped => return Ok(()),
                End::Fatal(why) => {
                    self.stats.failed.store(true, Ordering::Relaxed);
                    let why = format!("pool {:?}: shipping stopped: {why}", self.pool);
                    eprintln!("rewardpool: {why}");
                    return Err(why);
                }
                End::Retry(why) => {
                    let m = self.meter.read();
                    let committed = m.groups_committed - start_groups;
                    self.report(m.durable_request_id.0, committed, acked_recent, 0);
                    if why != last_error {
                        eprintln!("rewardpool: pool {:?}: shipping paused: {why}", self.pool);
                        last_error = why;
                    }
                    if self.mode.load(Ordering::Relaxed) != RUN {
                        return Ok(());
                    }
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }

    fn mode(&self) -> u8 {
        // Relaxed: a request flag (see `Shipper::stop`).
        self.mode.load(Ordering::Relaxed)
    }

    /// Sets the journal's fence flag (the pool fails: nothing more is acknowledged).
    fn fence(&self) {
        if let Some(journal) = self.meter.journal_stats() {
            // Release: pairs with the journal's Acquire; the pool fails.
            journal.fenced.store(true, Ordering::Release);
        }
    }

    /// Where the stream ends: its last sequence, its last message's id, and where the tail
    /// continues. A last message from a later epoch than `epoch` fences this primary.
    async fn stream_end(
        &self,
        stream: &mut async_nats::jetstream::stream::Stream,
        epoch: u64,
    ) -> Result<(u64, Option<String>, TailStart), End> {
        let last = stream
            .info()
            .await
            .map_err(|e| End::Retry(format!("reading the stream's state: {e}")))?
            .state
            .last_sequence;
        if last == 0 {
            return Ok((0, None, TailStart::Beginning));
        }
        let message = stream
            .get_raw_message(last)
            .await
            .map_err(|e| End::Retry(format!("reading the stream's message {last}: {e}")))?;
        let theirs = wire::epoch(Some(&message.headers))
            .map_err(|e| End::Fatal(format!("the stream's message {last}: {e:#}")))?;
        if theirs > epoch {
            self.fence();
            return Err(End::Fatal(format!(
                "the stream {}'s last message (sequence {last}) is from epoch {theirs}, this                  primary's is {epoch}: another primary took the pool over (rewardpool                  promote); fenced, shipping nothing",
                self.config.stream(&self.pool)
            )));
        }
        if theirs < epoch && !wire::is_fence(Some(&message.headers)) {
            return Err(End::Fatal(format!(
                "this pool was promoted to epoch {epoch}, but the stream {}'s last message                  (sequence {last}) is epoch {theirs}'s and not a fence: the data directory                  does not continue this stream",
                self.config.stream(&self.pool)
            )));
        }
        let start = wire::resume_point(Some(&message.headers))
            .map_err(|e| End::Fatal(format!("the stream's message {last}: {e:#}")))?;
        Ok((last, wire::message_id(&message.headers), start))
    }

    async fn session(
        &self,
        storage: &Arc<dyn Storage>,
        epoch: u64,
        start_request_id: u64,
        start_groups: u64,
        acked_recent: &mut u64,
    ) -> End {
        let js = match wire::connect(&self.config).await {
            Ok(js) => js,
            Err(e) => return End::Retry(format!("{e:#}")),
        };
        let mut stream = match wire::stream(&js, &self.config, &self.pool).await {
            Ok(s) => s,
            Err(e) => return End::Retry(format!("{e:#}")),
        };
        let (mut expected, mut previous, start) = match self.stream_end(&mut stream, epoch).await {
            Ok(end) => end,
            Err(end) => return end,
        };
        let mut tail = match LogTail::open(Arc::clone(storage), start) {
            Ok(tail) => tail,
            Err(e) => return End::Fatal(e.to_string()),
        };
        self.hold(tail.segment());
        // Relaxed: observers' gauges.
        self.stats.connected.store(true, Ordering::Relaxed);
        self.stats.shipped_sequence.store(expected, Ordering::Relaxed);
        self.stats.shipped_request_id.store(tail.last_request_id(), Ordering::Relaxed);
        let subject = self.config.subject(&self.pool);
        let mut inflight: VecDeque<InFlight> = VecDeque::with_capacity(WINDOW);
        // A group read that did not fit in the last message: the next one starts with it.
        let mut carry: Option<Group> = None;
        let mut last_look = Instant::now();
        let mut last_publish = Instant::now();
        let linger = Duration::from_millis(self.config.linger_ms);
        loop {
            let metrics = self.meter.read();
            let durable = self.durable(&metrics);
            let mode = self.mode();
            if mode == ABANDON {
                return End::Stopped;
            }
            // With nothing newer acknowledged, only an update group (no request id of its
            // own) can be waiting: look for one now and then, not at every pass (each look
            // reads up to 256 KiB of the segment).
            let idle = carry.is_none() && durable <= tail.last_request_id();
            // A message carries the groups of `linger_ms` (config): far fewer messages
            // cost the servers far less than one per group.
            let lingering = mode != DRAIN && last_publish.elapsed() < linger;
            let look = !lingering && (!idle || last_look.elapsed() >= IDLE_LOOK || mode == DRAIN);
            if look && idle {
                last_look = Instant::now();
            }
            while look && inflight.len() < WINDOW {
                let first =
                    match carry.take().map_or_else(|| tail.next_group(durable), |g| Ok(Some(g))) {
                        Ok(Some(group)) => group,
                        Ok(None) => break,
                        Err(e) => return End::Fatal(e.to_string()),
                    };
                let recent = |g: &Group| u64::from(g.last_request_id > start_request_id);
                let mut groups_recent = recent(&first);
                let mut batch = wire::Batch::new(first);
                // Every group that is ready joins the message, up to its size bound.
                loop {
                    match tail.next_group(durable) {
                        Ok(Some(group)) if batch.fits(&group) => {
                            groups_recent += recent(&group);
                            batch.push(&group);
                        }
                        Ok(Some(group)) => {
                            carry = Some(group);
                            break;
                        }
                        Ok(None) => break,
                        Err(e) => return End::Fatal(e.to_string()),
                    }
                }
                let (headers, id) = wire::headers(&batch, expected, previous.as_deref(), epoch);
                previous = Some(id);
                let sent =
                    js.publish_with_headers(subject.clone(), headers, batch.payload.into()).await;
                let ack = match sent {
                    Ok(ack) => ack,
                    Err(e) => return End::Retry(format!("publishing: {e}")),
                };
                expected += 1;
                last_publish = Instant::now();
                inflight.push_back(InFlight {
                    ack,
                    expected,
                    last_request_id: batch.last_request_id,
                    segment: batch.segment,
                    last_segment: batch.last_segment,
                    last_offset: batch.last_offset,
                    group: batch.group,
                    recent: groups_recent,
                });
            }
            let Some(oldest) = inflight.pop_front() else {
                let committed = metrics.groups_committed - start_groups;
                let drained = carry.is_none() && tail.last_request_id() >= durable;
                if drained {
                    // Everything durable is on the stream and nothing is in flight: no
                    // group lags. (An earlier session that timed out may have had its last
                    // publishes stored without seeing their acks: counting acks alone would
                    // leave the lag, and the alarm, up for good.)
                    *acked_recent = (*acked_recent).max(committed);
                }
                self.report(durable, committed, *acked_recent, 0);
                if mode == DRAIN && drained && metrics.stopped {
                    return End::Stopped;
                }
                let pause = if lingering {
                    linger.saturating_sub(last_publish.elapsed())
                } else if drained {
                    Duration::from_millis(5)
                } else {
                    Duration::from_millis(1)
                };
                tokio::time::sleep(pause).await;
                continue;
            };
            match oldest.ack.await {
                Ok(ack) if ack.sequence == oldest.expected || ack.duplicate => {
                    // Relaxed: observers' gauges.
                    self.stats.shipped_sequence.store(ack.sequence, Ordering::Relaxed);
                    self.stats.shipped_request_id.store(oldest.last_request_id, Ordering::Relaxed);
                    *acked_recent += oldest.recent;
                    self.release(oldest.last_segment, oldest.last_offset, oldest.group);
                    let unsent = carry.as_ref().map_or(tail.segment(), |g| g.segment);
                    self.hold(inflight.front().map_or(unsent, |f| f.segment));
                    let committed = metrics.groups_committed - start_groups;
                    self.report(durable, committed, *acked_recent, inflight.len() as u64);
                }
                Ok(ack) => {
                    return End::Fatal(format!(
                        "JetStream stored a group at sequence {}, not {}: another writer?",
                        ack.sequence, oldest.expected
                    ))
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId
                    ) =>
                {
                    self.fence();
                    return End::Fatal(format!(
                        "the stream {} moved past sequence {} without this primary (another \
                         primary took the pool over): fenced, shipping nothing more",
                        self.config.stream(&self.pool),
                        oldest.expected - 1
                    ));
                }
                Err(e) => return End::Retry(format!("waiting for JetStream's ack: {e}")),
            }
        }
    }

    /// How far the log may be read: under the gate (`ack: replica`) what is durable
    /// locally (the engine acknowledges it only after this shipper releases it), else what
    /// the engine acknowledged.
    fn durable(&self, metrics: &rewardpool::Metrics) -> u64 {
        match self.meter.journal_stats() {
            // Acquire: pairs with the journal's Release in its gate.
            Some(j) if j.gated.load(Ordering::Relaxed) => {
                j.local_durable_request_id.load(Ordering::Acquire)
            }
            _ => metrics.durable_request_id.0,
        }
    }

    /// JetStream stored `group`: under the gate, the engine may acknowledge it (a group of
    /// this run only: an earlier run's group numbers restarted).
    fn release(&self, segment: u64, offset: u64, group: u64) {
        let Some(j) = self.meter.journal_stats() else { return };
        // Relaxed: set once before the shipper thread started.
        if !j.gated.load(Ordering::Relaxed) {
            return;
        }
        let start = (
            j.run_start_segment.load(Ordering::Relaxed),
            j.run_start_offset.load(Ordering::Relaxed),
        );
        if (segment, offset) >= start {
            // Release: pairs with the journal's Acquire in its gate.
            j.released_group.fetch_max(group, Ordering::Release);
        }
    }

    /// Holds segment `segment` and later ones from retention.
    fn hold(&self, segment: u64) {
        if let Some(stats) = self.meter.journal_stats() {
            // Relaxed: a hint for the preparer's next rotation (see `retain_from`).
            stats.retain_from.store(segment + 1, Ordering::Relaxed);
        }
    }

    fn report(&self, durable: u64, committed_recent: u64, acked_recent: u64, inflight: u64) {
        let shipped = self.stats.shipped_request_id.load(Ordering::Relaxed);
        let lag_groups = committed_recent.saturating_sub(acked_recent).max(inflight);
        // Relaxed: observers' gauges.
        self.stats.lag_draws.store(durable.saturating_sub(shipped), Ordering::Relaxed);
        self.stats.lag_groups.store(lag_groups, Ordering::Relaxed);
        self.stats.alarm.store(lag_groups > self.config.max_lag_groups, Ordering::Relaxed);
    }
}
