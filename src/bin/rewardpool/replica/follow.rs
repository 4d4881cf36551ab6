//! `rewardpool follow --pool P`: a standby that replays the pool's stream into its own data
//! directory (`--data-dir`), a normal log (`rewardpool::replicate::Replica`).
//!
//! It consumes from the sequence after its last applied one, kept in
//! `<pool dir>/replica.applied` (JSON: `{"stream": .., "sequence": S, "last_request_id": L}`,
//! written through a temporary file, synced, renamed, the directory synced) each time the
//! groups applied up to `S` are durable in its log. Every message must be the next stream
//! sequence (a gap in the stream stops it), carry a group that follows its log (a gap in
//! request ids stops it) and pass every frame's CRC (a bad frame stops it); a redelivered
//! group is skipped. Stopping (SIGINT/SIGTERM, or `--until-caught-up` once it applied the
//! stream's last message as it was at start) makes what it applied durable, records it and
//! closes the log cleanly. Once a second it prints its lag: messages, draws and seconds
//! behind the stream's end (`--json`: one object per line).
//!
//! `serve --standby` runs the same [`Follower`] for each replicated pool on a thread of its
//! own ([`Standby`]), quietly: its lag goes to [`FollowStats`] (the service's `/metrics` and
//! `Watch`), and it reconnects after losing NATS instead of exiting.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};
use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use rewardpool::config::{Config, ReplicationConfig};
use rewardpool::layout::REPLICA_APPLIED_FILE;
use rewardpool::replicate::{Applied, Replica};
use rewardpool::ItemState;
use tokio_stream::StreamExt as _;

use super::wire;
use crate::args::{FollowArgs, GlobalArgs};
use crate::signals::stop_signal;
use crate::{pool_config, CmdResult, Failure};

/// Messages applied between two syncs of the replica's log, at most.
const SYNC_EVERY: u64 = 1024;
/// How long the follower waits for a message before it syncs what it has.
const IDLE: Duration = Duration::from_millis(20);

/// The applied-sequence file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Position {
    pub(super) stream: String,
    pub(super) sequence: u64,
    pub(super) last_request_id: u64,
}

pub(super) fn read_position(dir: &Path, stream: &str) -> anyhow::Result<Position> {
    let path = dir.join(REPLICA_APPLIED_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Position { stream: stream.to_owned(), sequence: 0, last_request_id: 0 })
        }
        Err(e) => return Err(anyhow!(e).context(format!("reading {}", path.display()))),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let field = |name: &str| value.get(name).and_then(serde_json::Value::as_u64);
    let (Some(sequence), Some(last_request_id), Some(found)) = (
        field("sequence"),
        field("last_request_id"),
        value.get("stream").and_then(serde_json::Value::as_str),
    ) else {
        return Err(anyhow!("{} lacks stream, sequence or last_request_id", path.display()));
    };
    if found != stream {
        return Err(anyhow!(
            "{} follows stream {found:?}, not {stream:?}: use another --data-dir",
            path.display()
        ));
    }
    Ok(Position { stream: stream.to_owned(), sequence, last_request_id })
}

pub(super) fn write_position(dir: &Path, position: &Position) -> anyhow::Result<()> {
    let text = serde_json::json!({
        "stream": position.stream,
        "sequence": position.sequence,
        "last_request_id": position.last_request_id,
    });
    super::write_durably(dir, REPLICA_APPLIED_FILE, &text.to_string())
}

/// What a follower reports while it runs (`rewardpool follow` prints it once a second;
/// `serve --standby` exports it in `/metrics` and `Watch`). Written by the follower's own
/// thread, read by anyone (`Relaxed` loads: independent readings, nothing published
/// through them).
#[derive(Debug, Default)]
pub(crate) struct FollowStats {
    /// The stream sequence applied and durable in the replica's log (`replica.applied`).
    pub(crate) applied_sequence: AtomicU64,
    /// The last request id in it.
    pub(crate) applied_request_id: AtomicU64,
    /// Messages on the stream past the applied sequence (at the last reading, once a second).
    pub(crate) lag_messages: AtomicU64,
    /// Request ids on the stream past the applied one (draws behind).
    pub(crate) lag_draws: AtomicU64,
    /// Age in seconds of the oldest message not yet applied (0 when caught up).
    pub(crate) lag_seconds: AtomicU64,
    /// True while the follower is connected and consuming the stream.
    pub(crate) following: AtomicBool,
    /// True once the follower stopped for good (a refused message, a damaged directory).
    pub(crate) failed: AtomicBool,
    /// Why it failed, or why it is reconnecting (empty while it follows).
    error: Mutex<String>,
    /// The replica's items as of its last checkpoint (its durable state).
    items: Mutex<Arc<Vec<ItemState>>>,
}

impl FollowStats {
    /// Why the follower failed or is reconnecting; empty while it follows.
    pub(crate) fn error(&self) -> String {
        self.error.lock().map(|e| e.clone()).unwrap_or_default()
    }

    fn set_error(&self, why: String) {
        if let Ok(mut error) = self.error.lock() {
            *error = why;
        }
    }

    /// The replica's items as of its last checkpoint, with the request id they are at.
    pub(crate) fn items(&self) -> (Arc<Vec<ItemState>>, u64) {
        let items = self.items.lock().map(|i| Arc::clone(&i)).unwrap_or_default();
        // Read after the items: the items may be newer than the id, never older.
        (items, self.applied_request_id.load(Ordering::Relaxed))
    }

    fn set_items(&self, items: Vec<ItemState>) {
        if let Ok(mut held) = self.items.lock() {
            *held = Arc::new(items);
        }
    }
}

/// Whether the follower prints its lag lines and closing line (`rewardpool follow`) or
/// prints nothing (`promote`'s catch-up, `serve --standby`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lines {
    Print { json: bool },
    Quiet,
}

/// `rewardpool follow`.
pub(crate) fn follow(global: &GlobalArgs, args: &FollowArgs) -> CmdResult {
    let config = pool_config(global, args.pool.as_deref())?;
    let pool = config.pools.first().map(|p| p.name.clone()).unwrap_or_default();
    let replication = config.replication.clone().ok_or_else(|| {
        Failure::bad_input(anyhow!(
            "pool {pool:?} has no replication section in the configuration: nothing to follow"
        ))
    })?;
    let stats = Arc::new(FollowStats::default());
    let lines = Lines::Print { json: args.json };
    let mut follower = Follower::open(&config, &replication, &pool, lines, stats)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(anyhow!(e).context("cannot start the async runtime")))?;
    let result = runtime.block_on(follower.run(args.until_caught_up, stop_signal()));
    let closed = follower.close();
    result.and(closed)
}

/// Applies the stream up to its last message (as it is when called) to the replica in
/// `config.working_dir` and closes the replica cleanly; returns the position reached
/// (`promote`'s catch-up). Prints nothing.
pub(super) async fn catch_up(
    config: &Config,
    replication: &ReplicationConfig,
    pool: &str,
) -> Result<Position, Failure> {
    let dir = &config.working_dir;
    let stats = Arc::new(FollowStats::default());
    let mut follower = Follower::open(config, replication, pool, Lines::Quiet, stats)?;
    // A follower killed between syncing its log and recording its position has a log past
    // `replica.applied`: those groups are the stream's. A directory that has no position
    // (an old primary's) or was promoted (it may have served) and whose log is past its
    // position holds groups that are not the stream's: applying the stream would skip the
    // stream's groups with the same request ids as duplicates.
    let recorded = dir.join(REPLICA_APPLIED_FILE).exists();
    let promoted = dir.join(rewardpool::layout::REPLICA_EPOCH_FILE).exists();
    let logged = follower.replica.last_request_id();
    if logged > follower.position.last_request_id && (!recorded || promoted) {
        let at = follower.position.last_request_id;
        let _ = follower.replica.close();
        return Err(Failure::bad_input(anyhow!(
            "the log in {} holds request ids up to {logged}, but the stream's position in {} \
             is request id {at}: this directory served (or was written) beyond the stream; \
             only a follower's directory can be promoted (a promoted directory restarts with \
             `serve`, without --takeover)",
            dir.display(),
            REPLICA_APPLIED_FILE,
        )));
    }
    let result = follower.run(true, stop_signal()).await;
    let position = follower.position.clone();
    let closed = follower.close();
    result.and(closed).map(|()| position)
}

/// How long a standby waits before it reconnects after losing the stream.
const RECONNECT: Duration = Duration::from_secs(1);

/// A follower on a thread of its own, for `serve --standby`: it follows the pool's stream
/// into the pool's directory (as `rewardpool follow`, the same [`Follower`]) until
/// [`Standby::stop`]. It reconnects after losing NATS or the stream (every [`RECONNECT`],
/// the reason in [`FollowStats::error`]); a refused message or a damaged directory stops it
/// for good ([`FollowStats::failed`]): the directory keeps what was applied before.
#[derive(Debug)]
pub(crate) struct Standby {
    pool: String,
    stats: Arc<FollowStats>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Standby {
    /// Starts following the only pool of `config` (a [`Config::for_pool`] view: its
    /// directory and its `replication` section) on a new thread.
    ///
    /// # Errors
    /// The pool has no replication section, or the thread cannot be started.
    pub(crate) fn start(config: Config) -> anyhow::Result<Standby> {
        let pool = config.pools.first().map(|p| p.name.clone()).unwrap_or_default();
        let replication = config.replication.clone().ok_or_else(|| {
            anyhow!("pool {pool:?} has no replication section: it cannot be a standby")
        })?;
        let stats = Arc::new(FollowStats::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let thread = {
            let (name, stats) = (pool.clone(), Arc::clone(&stats));
            std::thread::Builder::new()
                .name(format!("rewardpool-follow-{pool}"))
                .spawn(move || standby(&config, &replication, &name, &stats, &stopped))
                .with_context(|| format!("pool {pool:?}: cannot start its follower thread"))?
        };
        Ok(Standby { pool, stats, stop, thread: Some(thread) })
    }

    /// The pool it follows.
    pub(crate) fn pool(&self) -> &str {
        &self.pool
    }

    /// Its lag and state.
    pub(crate) fn stats(&self) -> &Arc<FollowStats> {
        &self.stats
    }

    /// Stops the follower: what it applied is made durable and recorded, its log closed
    /// cleanly (the directory can then be promoted: `serve --takeover`).
    ///
    /// # Errors
    /// The follower had failed (why), or its thread panicked.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            thread.join().map_err(|_| anyhow!("pool {:?}: its follower panicked", self.pool))?;
        }
        if self.stats.failed.load(Ordering::Relaxed) {
            return Err(anyhow!("pool {:?}: {}", self.pool, self.stats.error()));
        }
        Ok(())
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The standby's thread: follows until `stopped` turns true; reconnects after a lost
/// stream; stops for good on a refusal.
fn standby(
    config: &Config,
    replication: &ReplicationConfig,
    pool: &str,
    stats: &Arc<FollowStats>,
    stopped: &tokio::sync::watch::Receiver<bool>,
) {
    let stop = || {
        let mut stopped = stopped.clone();
        async move {
            // Err: the sender is gone, which means stop too.
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let fail = |why: String| {
        stats.set_error(why);
        stats.following.store(false, Ordering::Relaxed);
        stats.failed.store(true, Ordering::Relaxed);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the follower's async runtime: {e}")),
    };
    while !*stopped.borrow() {
        let mut follower =
            match Follower::open(config, replication, pool, Lines::Quiet, Arc::clone(stats)) {
                Ok(follower) => follower,
                Err(e) => return fail(why(e)),
            };
        let result = runtime.block_on(follower.run(false, stop()));
        let refused = follower.refused;
        let closed = follower.close();
        stats.following.store(false, Ordering::Relaxed);
        match result.and(closed) {
            Ok(()) => {}
            Err(e) if refused => return fail(why(e)),
            Err(e) => {
                let reason = why(e);
                // Once per distinct reason, not at every attempt.
                if reason != stats.error() {
                    eprintln!("rewardpool: pool {pool:?}: the follower reconnects: {reason}");
                }
                stats.set_error(reason);
                runtime.block_on(async {
                    tokio::select! {
                        () = stop() => {}
                        () = tokio::time::sleep(RECONNECT) => {}
                    }
                });
            }
        }
    }
}

/// A failure's message, whole.
fn why(failure: Failure) -> String {
    match failure {
        Failure::CheckFailed(e) | Failure::BadInput(e) => format!("{e:#}"),
        Failure::StdoutClosed => "stdout closed".to_owned(),
    }
}

/// The follower's state.
struct Follower<'a> {
    config: &'a Config,
    replication: &'a ReplicationConfig,
    pool: &'a str,
    replica: Replica,
    position: Position,
    /// Messages applied since the last sync.
    unsynced: u64,
    lines: Lines,
    stats: Arc<FollowStats>,
    /// The stream held something this follower refuses (a gap, a bad frame) or its log
    /// failed: following again cannot help.
    refused: bool,
}

impl<'a> Follower<'a> {
    /// Opens the replica in `config.working_dir` (created when missing) at its recorded
    /// position.
    fn open(
        config: &'a Config,
        replication: &'a ReplicationConfig,
        pool: &'a str,
        lines: Lines,
        stats: Arc<FollowStats>,
    ) -> Result<Follower<'a>, Failure> {
        let dir = &config.working_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {}", dir.display()))
            .map_err(Failure::bad_input)?;
        let stream = replication.stream(pool);
        let position = read_position(dir, &stream).map_err(Failure::bad_input)?;
        let replica = Replica::open(config).map_err(|e| {
            Failure::bad_input(anyhow!(e).context(format!("cannot open {}", dir.display())))
        })?;
        stats.applied_sequence.store(position.sequence, Ordering::Relaxed);
        stats.applied_request_id.store(replica.last_request_id(), Ordering::Relaxed);
        stats.set_items(replica.items());
        Ok(Follower {
            config,
            replication,
            pool,
            replica,
            position,
            unsynced: 0,
            lines,
            stats,
            refused: false,
        })
    }

    /// Follows until `stop` resolves (or, `until_caught_up`, until the stream's last
    /// message as it is now is applied); then checkpoints.
    async fn run(&mut self, until_caught_up: bool, stop: impl Future<Output = ()>) -> CmdResult {
        tokio::pin!(stop);
        let name = self.replication.stream(self.pool);
        let subject = self.replication.subject(self.pool);
        let start = self.position.sequence + 1;
        let setup = async {
            let js = wire::connect(self.replication).await.map_err(Failure::failed)?;
            let mut stream = open_stream(&js, &name).await.map_err(Failure::failed)?;
            let begun = Instant::now();
            let end = loop {
                match stream_end(&mut stream).await {
                    Ok(end) => break end,
                    Err(e) if begun.elapsed() > STREAM_WAIT => return Err(Failure::failed(e)),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
            if until_caught_up && start > end {
                return Ok(None);
            }
            let messages = consume(&stream, &subject, start)
                .await
                .with_context(|| format!("consuming {name}"))
                .map_err(Failure::failed)?;
            Ok(Some((stream, end, messages)))
        };
        let (mut stream, end, mut messages) = tokio::select! {
            () = &mut stop => return self.checkpoint(),
            set = setup => match set? {
                None => return self.checkpoint(),
                Some(set) => set,
            },
        };
        self.stats.following.store(true, Ordering::Relaxed);
        self.stats.set_error(String::new());
        self.measure(&mut stream).await;
        let mut last_report = Instant::now();
        loop {
            let next = tokio::select! {
                () = &mut stop => return self.checkpoint(),
                next = tokio::time::timeout(IDLE, messages.next()) => next,
            };
            match next {
                Err(_) => self.checkpoint()?,
                Ok(None) => return Err(Failure::failed(anyhow!("the stream {name} ended"))),
                Ok(Some(Err(e))) => {
                    return Err(Failure::failed(anyhow!("consuming the stream {name}: {e}")))
                }
                Ok(Some(Ok(message))) => {
                    self.apply(&message)?;
                    if self.unsynced >= SYNC_EVERY {
                        self.checkpoint()?;
                    }
                }
            }
            if until_caught_up && self.position.sequence >= end {
                return self.checkpoint();
            }
            // `promote`'s catch-up measures nothing; the others once a second.
            let measures = self.lines != Lines::Quiet || !until_caught_up;
            if measures && last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                self.measure(&mut stream).await;
            }
        }
    }

    /// Applies one message.
    fn apply(&mut self, message: &async_nats::jetstream::Message) -> CmdResult {
        let info = message.info().map_err(|e| Failure::failed(anyhow!("a message: {e}")))?;
        let sequence = info.stream_sequence;
        let expected = self.position.sequence + 1;
        if sequence != expected {
            return Err(self.stop_with(anyhow!(
                "a gap in the stream: expected sequence {expected}, got {sequence} (messages \
                 were removed from the stream; rebuild this replica)"
            )));
        }
        if wire::is_fence(message.headers.as_ref()) {
            // A promotion's fence (`wire`): no group; the stream continues after it.
            self.position.sequence = sequence;
            self.unsynced += 1;
            return Ok(());
        }
        let prev = wire::number(message.headers.as_ref(), wire::PREV_HEADER)
            .map_err(|e| self.stop_with(e.context(format!("stream sequence {sequence}"))))?;
        match self.replica.apply(prev, &message.payload) {
            Ok(Applied::Appended { .. } | Applied::Duplicate) => {}
            Err(e) => {
                return Err(self
                    .stop_with(anyhow!(e).context(format!("stream sequence {sequence} refused"))))
            }
        }
        self.position.sequence = sequence;
        self.position.last_request_id = self.replica.last_request_id();
        self.unsynced += 1;
        Ok(())
    }

    /// A refusal: what was applied before it is made durable and recorded first.
    fn stop_with(&mut self, e: anyhow::Error) -> Failure {
        self.refused = true;
        match self.checkpoint() {
            Ok(()) => Failure::failed(e.context(format!(
                "the follower stopped at stream sequence {} (request id {})",
                self.position.sequence, self.position.last_request_id
            ))),
            Err(Failure::CheckFailed(f) | Failure::BadInput(f)) => {
                Failure::failed(e.context(format!("and recording the position failed: {f:#}")))
            }
            Err(Failure::StdoutClosed) => Failure::failed(e),
        }
    }

    /// Makes the applied groups durable, then records the position.
    fn checkpoint(&mut self) -> CmdResult {
        if self.unsynced == 0 && self.config.working_dir.join(REPLICA_APPLIED_FILE).exists() {
            return Ok(());
        }
        let synced = self
            .replica
            .sync()
            .map_err(|e| anyhow!(e))
            .and_then(|()| write_position(&self.config.working_dir, &self.position));
        if let Err(e) = synced {
            // The log or its directory failed: following again cannot help.
            self.refused = true;
            return Err(Failure::failed(e));
        }
        self.unsynced = 0;
        self.stats.set_items(self.replica.items());
        self.stats.applied_sequence.store(self.position.sequence, Ordering::Relaxed);
        self.stats.applied_request_id.store(self.position.last_request_id, Ordering::Relaxed);
        Ok(())
    }

    /// Reads the stream's end and the oldest message not applied yet: the lag, into the
    /// stats, and printed as one line (stdout) unless quiet. A reading that fails leaves
    /// the last one.
    async fn measure(&self, stream: &mut async_nats::jetstream::stream::Stream) {
        let Ok(end) = stream_end(stream).await else { return };
        let applied = self.position.sequence;
        let lag_messages = end.saturating_sub(applied);
        let (lag_draws, lag_seconds) = if lag_messages == 0 {
            (0, 0)
        } else {
            let draws = match stream.get_raw_message(end).await {
                Ok(m) => wire::number(Some(&m.headers), wire::LAST_HEADER)
                    .map_or(0, |last| last.saturating_sub(self.position.last_request_id)),
                Err(_) => 0,
            };
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let seconds = match stream.get_raw_message(applied + 1).await {
                Ok(m) => {
                    let published = u64::try_from(m.time.unix_timestamp()).unwrap_or(0);
                    now.saturating_sub(published)
                }
                Err(_) => self.stats.lag_seconds.load(Ordering::Relaxed),
            };
            (draws, seconds)
        };
        self.stats.lag_messages.store(lag_messages, Ordering::Relaxed);
        self.stats.lag_draws.store(lag_draws, Ordering::Relaxed);
        self.stats.lag_seconds.store(lag_seconds, Ordering::Relaxed);
        let Lines::Print { json } = self.lines else { return };
        let line = if json {
            serde_json::json!({
                "pool": self.pool,
                "applied_sequence": applied,
                "last_request_id": self.position.last_request_id,
                "lag_messages": lag_messages,
                "lag_draws": lag_draws,
                "lag_seconds": lag_seconds,
            })
            .to_string()
        } else {
            format!(
                "pool {}: applied sequence {applied} (request id {}), behind by {lag_messages} \
                 messages, {lag_draws} draws, {lag_seconds} s",
                self.pool, self.position.last_request_id
            )
        };
        println!("{line}");
    }

    /// Closes the replica's log cleanly (final snapshot) and records the position.
    fn close(self) -> CmdResult {
        let Follower { replica, position, config, lines, pool, stats, .. } = self;
        let state = replica.close().map_err(|e| Failure::failed(anyhow!(e)))?;
        write_position(&config.working_dir, &position).map_err(Failure::failed)?;
        stats.applied_sequence.store(position.sequence, Ordering::Relaxed);
        stats.applied_request_id.store(state.last_request_id.0, Ordering::Relaxed);
        let Lines::Print { json } = lines else { return Ok(()) };
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "pool": pool,
                    "stopped": true,
                    "applied_sequence": position.sequence,
                    "last_request_id": state.last_request_id.0,
                })
            );
        } else {
            eprintln!(
                "rewardpool: follower of pool {pool:?} stopped at stream sequence {} (request id \
                 {})",
                position.sequence, state.last_request_id.0
            );
        }
        Ok(())
    }
}

/// How long the follower waits for the stream to appear (the primary creates it when it
/// first ships).
const STREAM_WAIT: Duration = Duration::from_secs(30);

/// The pool's stream, once it exists (waiting at most [`STREAM_WAIT`]).
pub(super) async fn open_stream(
    js: &async_nats::jetstream::Context,
    name: &str,
) -> anyhow::Result<async_nats::jetstream::stream::Stream> {
    let start = Instant::now();
    loop {
        match js.get_stream(name).await {
            Ok(stream) => return Ok(stream),
            Err(e) if start.elapsed() > STREAM_WAIT => {
                return Err(anyhow!(e)
                    .context(format!("the stream {name} (does the primary ship this pool?)")))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// An ordered consumer of `subject` from `start`, retried for at most [`STREAM_WAIT`]: right
/// after a JetStream server died, creating one times out until the stream has a leader.
async fn consume(
    stream: &async_nats::jetstream::stream::Stream,
    subject: &str,
    start: u64,
) -> anyhow::Result<pull::Ordered> {
    let begun = Instant::now();
    loop {
        let attempt = async {
            let consumer = stream
                .create_consumer(pull::OrderedConfig {
                    filter_subject: subject.to_owned(),
                    deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start },
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow!(e))?;
            consumer.messages().await.map_err(|e| anyhow!(e))
        };
        match attempt.await {
            Ok(messages) => return Ok(messages),
            Err(e) if begun.elapsed() > STREAM_WAIT => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The stream's last sequence.
pub(super) async fn stream_end(
    stream: &mut async_nats::jetstream::stream::Stream,
) -> anyhow::Result<u64> {
    Ok(stream.info().await.context("reading the stream's state")?.state.last_sequence)
}
