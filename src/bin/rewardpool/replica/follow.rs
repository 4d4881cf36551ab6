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

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};
use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use rewardpool::config::{Config, ReplicationConfig};
use rewardpool::layout::REPLICA_APPLIED_FILE;
use rewardpool::replicate::{Applied, Replica};
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

/// `rewardpool follow`.
pub(crate) fn follow(global: &GlobalArgs, args: &FollowArgs) -> CmdResult {
    let config = pool_config(global, args.pool.as_deref())?;
    let pool = config.pools.first().map(|p| p.name.clone()).unwrap_or_default();
    let replication = config.replication.clone().ok_or_else(|| {
        Failure::bad_input(anyhow!(
            "pool {pool:?} has no replication section in the configuration: nothing to follow"
        ))
    })?;
    let dir = config.working_dir.clone();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating {}", dir.display()))
        .map_err(Failure::bad_input)?;
    let stream = replication.stream(&pool);
    let position = read_position(&dir, &stream).map_err(Failure::bad_input)?;
    let replica = Replica::open(&config).map_err(|e| {
        Failure::bad_input(anyhow!(e).context(format!("cannot open {}", dir.display())))
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(anyhow!(e).context("cannot start the async runtime")))?;
    let mut follower = Follower {
        config: &config,
        replication: &replication,
        pool: &pool,
        replica,
        position,
        unsynced: 0,
        json: args.json,
        quiet: false,
    };
    let result = runtime.block_on(follower.run(args.until_caught_up));
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
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating {}", dir.display()))
        .map_err(Failure::bad_input)?;
    let stream = replication.stream(pool);
    let position = read_position(dir, &stream).map_err(Failure::bad_input)?;
    let replica = Replica::open(config).map_err(|e| {
        Failure::bad_input(anyhow!(e).context(format!("cannot open {}", dir.display())))
    })?;
    // A follower killed between syncing its log and recording its position has a log past
    // `replica.applied`: those groups are the stream's. A directory that has no position
    // (an old primary's) or was promoted (it may have served) and whose log is past its
    // position holds groups that are not the stream's: applying the stream would skip the
    // stream's groups with the same request ids as duplicates.
    let recorded = dir.join(REPLICA_APPLIED_FILE).exists();
    let promoted = dir.join(rewardpool::layout::REPLICA_EPOCH_FILE).exists();
    if replica.last_request_id() > position.last_request_id && (!recorded || promoted) {
        let logged = replica.last_request_id();
        let _ = replica.close();
        return Err(Failure::bad_input(anyhow!(
            "the log in {} holds request ids up to {logged}, but the stream's position in {} \
             is request id {}: this directory served (or was written) beyond the stream; \
             only a follower's directory can be promoted (a promoted directory restarts with \
             `serve`, without --takeover)",
            dir.display(),
            REPLICA_APPLIED_FILE,
            position.last_request_id
        )));
    }
    let mut follower = Follower {
        config,
        replication,
        pool,
        replica,
        position,
        unsynced: 0,
        json: false,
        quiet: true,
    };
    let result = follower.run(true).await;
    let position = follower.position.clone();
    let closed = follower.close();
    result.and(closed).map(|()| position)
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
    json: bool,
    /// Print no lag lines and no closing line (`catch_up`).
    quiet: bool,
}

impl Follower<'_> {
    async fn run(&mut self, until_caught_up: bool) -> CmdResult {
        let js = wire::connect(self.replication).await.map_err(Failure::failed)?;
        let name = self.replication.stream(self.pool);
        let mut stream = open_stream(&js, &name).await.map_err(Failure::failed)?;
        let begun = Instant::now();
        let end = loop {
            match stream_end(&mut stream).await {
                Ok(end) => break end,
                Err(e) if begun.elapsed() > STREAM_WAIT => return Err(Failure::failed(e)),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        if until_caught_up && self.position.sequence >= end {
            return self.checkpoint();
        }
        let subject = self.replication.subject(self.pool);
        let mut messages = consume(&stream, &subject, self.position.sequence + 1)
            .await
            .with_context(|| format!("consuming {name}"))
            .map_err(Failure::failed)?;
        let mut last_report = Instant::now();
        let mut newest_published = 0_i64;
        let stop = stop_signal();
        tokio::pin!(stop);
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
                    newest_published = self.apply(&message)?;
                    if self.unsynced >= SYNC_EVERY {
                        self.checkpoint()?;
                    }
                }
            }
            if until_caught_up && self.position.sequence >= end {
                return self.checkpoint();
            }
            if !self.quiet && last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                self.report(&mut stream, newest_published).await;
            }
        }
    }

    /// Applies one message; returns its publication time (Unix seconds).
    fn apply(&mut self, message: &async_nats::jetstream::Message) -> Result<i64, Failure> {
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
            return Ok(info.published.unix_timestamp());
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
        Ok(info.published.unix_timestamp())
    }

    /// A refusal: what was applied before it is made durable and recorded first.
    fn stop_with(&mut self, e: anyhow::Error) -> Failure {
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
        self.replica.sync().map_err(|e| Failure::failed(anyhow!(e)))?;
        write_position(&self.config.working_dir, &self.position).map_err(Failure::failed)?;
        self.unsynced = 0;
        Ok(())
    }

    /// One lag line (stdout).
    async fn report(&self, stream: &mut async_nats::jetstream::stream::Stream, published: i64) {
        let Ok(end) = stream_end(stream).await else { return };
        let lag_messages = end.saturating_sub(self.position.sequence);
        let lag_draws = match stream.get_raw_message(end).await {
            Ok(m) => wire::number(Some(&m.headers), wire::LAST_HEADER)
                .map_or(0, |last| last.saturating_sub(self.position.last_request_id)),
            Err(_) => 0,
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let lag_seconds = if lag_messages == 0 { 0 } else { now.saturating_sub(published).max(0) };
        let line = if self.json {
            serde_json::json!({
                "pool": self.pool,
                "applied_sequence": self.position.sequence,
                "last_request_id": self.position.last_request_id,
                "lag_messages": lag_messages,
                "lag_draws": lag_draws,
                "lag_seconds": lag_seconds,
            })
            .to_string()
        } else {
            format!(
                "pool {}: applied sequence {} (request id {}), behind by {lag_messages} \
                 messages, {lag_draws} draws, {lag_seconds} s",
                self.pool, self.position.sequence, self.position.last_request_id
            )
        };
        println!("{line}");
    }

    /// Closes the replica's log cleanly (final snapshot) and records the position.
    fn close(self) -> CmdResult {
        let Follower { replica, position, config, json, pool, quiet, .. } = self;
        let state = replica.close().map_err(|e| Failure::failed(anyhow!(e)))?;
        write_position(&config.working_dir, &position).map_err(Failure::failed)?;
        if quiet {
            return Ok(());
        }
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
