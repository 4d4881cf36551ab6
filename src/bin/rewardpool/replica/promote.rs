//! `rewardpool promote --pool P`: a standby (a `follow` data directory) takes its pool over.
//! `--connect HOST:PORT` asks a running `serve --standby` to do it in place instead (the
//! `Promote` RPC: `service/standby.rs` runs [`take_over`] in the server, then serves the
//! pool).
//!
//! 1. It takes the pool's leader lease: key `<pool>` of the JetStream key-value bucket
//!    `<stream_prefix>_leases` (created when missing), written with the revision it read
//!    (compare-and-set: of two promotions at once, one fails). The lease holds the new epoch:
//!    one above the lease's, the stream's last message's and this directory's.
//! 2. It catches up (a first time before step 1, which also refuses a directory whose log
//!    went past the stream: an old primary's, or a promoted one that served): applies the stream up to its last message, closes its log cleanly and
//!    finds where the last replicated group ends in its own log.
//! 3. It fences: publishes a fence (`wire` module docs) with `Nats-Expected-Last-Sequence` =
//!    the last sequence it applied. Refused (the old primary stored more meanwhile), it
//!    catches up again and retries. Stored, every later publish of the old primary is
//!    refused (its pool stops), and a restarted old primary's shipper finds a later epoch
//!    on the stream and stops too.
//! 4. It writes `<pool dir>/replica.epoch`. `rewardpool serve` on the directory then serves
//!    with request ids above every replicated one, and its shipper continues the stream
//!    after the fence with the new epoch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::kv;
use rewardpool::config::{Config, ReplicationConfig};
use rewardpool::layout::REPLICA_EPOCH_FILE;
use rewardpool::replicate::{LogTail, TailStart};
use rewardpool::storage::{OsStorage, Storage};

use super::follow::{self, Position};
use super::wire;
use crate::args::{GlobalArgs, PromoteArgs};
use crate::{pool_config, CmdResult, Failure};

/// How long the promotion keeps catching up with a primary that still publishes.
const FENCE_DEADLINE: Duration = Duration::from_secs(60);

/// `rewardpool promote`.
pub(crate) fn promote(global: &GlobalArgs, args: &PromoteArgs) -> CmdResult {
    if let Some(address) = &args.connect {
        return promote_remote(address, args);
    }
    let config = pool_config(global, args.pool.as_deref())?;
    let pool = config.pools.first().map(|p| p.name.clone()).unwrap_or_default();
    let replication = config.replication.clone().ok_or_else(|| {
        Failure::bad_input(anyhow!(
            "pool {pool:?} has no replication section in the configuration: nothing to take over"
        ))
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(anyhow!(e).context("cannot start the async runtime")))?;
    let done = runtime.block_on(take_over(&config, &replication, &pool))?;
    say_promoted(&pool, &done, args.json);
    Ok(())
}

/// `rewardpool promote --connect HOST:PORT`: the `Promote` RPC of a `serve --standby`.
fn promote_remote(address: &str, args: &PromoteArgs) -> CmdResult {
    use crate::service::proto::reward_pool_service_client::RewardPoolServiceClient;
    use crate::service::proto::PromoteRequest;
    let uri =
        if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
    let endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| Failure::bad_input(anyhow!("--connect {address:?}: not HOST:PORT: {e}")))?
        .connect_timeout(Duration::from_secs(5));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(anyhow!(e).context("cannot start the async runtime")))?;
    let pool = args.pool.clone().unwrap_or_default();
    let answer = runtime.block_on(async {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {address}"))
            .map_err(Failure::failed)?;
        let mut client = RewardPoolServiceClient::new(channel);
        client.promote(PromoteRequest { pool }).await.map_err(|status| {
            let e = anyhow!("{address}: {} ({:?})", status.message(), status.code());
            match status.code() {
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
                    Failure::bad_input(e)
                }
                _ => Failure::failed(e),
            }
        })
    })?;
    let answer = answer.into_inner();
    let done = Promoted {
        epoch: answer.epoch,
        fence_sequence: answer.fence_sequence,
        last_request_id: answer.last_request_id,
    };
    say_promoted(&answer.pool, &done, args.json);
    Ok(())
}

/// The outcome line on stdout.
fn say_promoted(pool: &str, done: &Promoted, json: bool) {
    let line = if json {
        serde_json::json!({
            "pool": pool,
            "promoted": true,
            "epoch": done.epoch,
            "fence_sequence": done.fence_sequence,
            "last_request_id": done.last_request_id,
        })
        .to_string()
    } else {
        format!(
            "pool {pool}: promoted to epoch {}: fenced the stream at sequence {}; the log holds \
             request ids up to {} (rewardpool serve continues above them)",
            done.epoch, done.fence_sequence, done.last_request_id
        )
    };
    println!("{line}");
}

/// `serve --takeover`: promotes every replicated pool of `config` before it is opened (one
/// line each on stderr: stdout's first line stays the listening address).
///
/// # Errors
/// As `rewardpool promote`, for the first pool that cannot be taken over.
pub(crate) fn take_over_all(config: &Config) -> CmdResult {
    let dirs = rewardpool::host::pool_dirs(config).map_err(Failure::bad_input)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(anyhow!(e).context("cannot start the async runtime")))?;
    for (index, dir) in dirs.into_iter().enumerate() {
        let Some(pool_config) = config.for_pool(index, dir) else { continue };
        let Some(pool) = pool_config.pools.first().map(|p| p.name.clone()) else { continue };
        let Some(replication) = pool_config.replication.clone() else { continue };
        let done = runtime.block_on(take_over(&pool_config, &replication, &pool))?;
        eprintln!(
            "rewardpool: pool {pool}: promoted to epoch {}: fenced the stream at sequence {}; \
             request ids continue above {}",
            done.epoch, done.fence_sequence, done.last_request_id
        );
    }
    Ok(())
}

/// What a promotion did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Promoted {
    /// The pool's new epoch.
    pub(crate) epoch: u64,
    /// The stream sequence of its fence.
    pub(crate) fence_sequence: u64,
    /// The last replicated request id.
    pub(crate) last_request_id: u64,
}

/// Takes pool `pool` over in `config.working_dir` (module docs: lease, catch-up, fence,
/// `replica.epoch`). The directory's log is closed when it returns: `serve` (or
/// `Host::open`) then serves it.
///
/// # Errors
/// As `rewardpool promote`.
pub(crate) async fn take_over(
    config: &Config,
    replication: &ReplicationConfig,
    pool: &str,
) -> Result<Promoted, Failure> {
    let dir = &config.working_dir;
    let name = replication.stream(pool);
    let js = wire::connect(replication).await.map_err(Failure::failed)?;
    let mut stream = follow::open_stream(&js, &name).await.map_err(Failure::failed)?;
    let (_, last_epoch, _) = last_message(&mut stream).await.map_err(Failure::failed)?;
    let local = wire::local_epoch(dir).map_err(Failure::bad_input)?;
    // A first catch-up before the lease: a directory that cannot be promoted (its log went
    // past the stream) is refused before the lease moves.
    follow::catch_up(config, replication, pool).await?;
    let epoch =
        take_lease(&js, replication, pool, last_epoch.max(local)).await.map_err(Failure::failed)?;
    let begun = Instant::now();
    loop {
        let position = follow::catch_up(config, replication, pool).await?;
        let (segment, end) = log_end(config, &position).map_err(Failure::failed)?;
        let (last, _, previous) = last_message(&mut stream).await.map_err(Failure::failed)?;
        if last == position.sequence {
            let (headers, _) = wire::fence_headers(
                epoch,
                last,
                previous.as_deref(),
                segment,
                end,
                position.last_request_id,
            );
            let subject = replication.subject(pool);
            let sent = js
                .publish_with_headers(subject, headers, Vec::new().into())
                .await
                .context("publishing the fence")
                .map_err(Failure::failed)?;
            match sent.await {
                Ok(ack) => {
                    let mut position = position;
                    position.sequence = ack.sequence;
                    follow::write_position(dir, &position).map_err(Failure::failed)?;
                    write_epoch(dir, &name, epoch).map_err(Failure::failed)?;
                    return Ok(Promoted {
                        epoch,
                        fence_sequence: ack.sequence,
                        last_request_id: position.last_request_id,
                    });
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId
                    ) => {}
                Err(e) => {
                    return Err(Failure::failed(
                        anyhow!(e).context(format!(
                            "publishing the fence on {name} after sequence {last}"
                        )),
                    ))
                }
            }
        }
        if begun.elapsed() > FENCE_DEADLINE {
            return Err(Failure::failed(anyhow!(
                "the stream {name} kept moving for {FENCE_DEADLINE:?} (is the old primary still \
                 serving? stop it first): not promoted; the lease holds epoch {epoch}, a later \
                 promote takes the next one"
            )));
        }
    }
}

/// The stream's last sequence, its last message's epoch (the first epoch on an empty
/// stream) and id.
async fn last_message(
    stream: &mut async_nats::jetstream::stream::Stream,
) -> anyhow::Result<(u64, u64, Option<String>)> {
    let last = follow::stream_end(stream).await?;
    if last == 0 {
        return Ok((0, wire::FIRST_EPOCH, None));
    }
    let message = stream
        .get_raw_message(last)
        .await
        .with_context(|| format!("reading the stream's message {last}"))?;
    let epoch = wire::epoch(Some(&message.headers))
        .with_context(|| format!("the stream's message {last}"))?;
    Ok((last, epoch, wire::message_id(&message.headers)))
}

/// Takes the pool's lease with an epoch above `floor` and the lease's own; returns it.
async fn take_lease(
    js: &async_nats::jetstream::Context,
    replication: &ReplicationConfig,
    pool: &str,
    floor: u64,
) -> anyhow::Result<u64> {
    let bucket = format!("{}_leases", replication.stream_prefix);
    let store = match js.get_key_value(&bucket).await {
        Ok(store) => store,
        Err(_) => {
            // The bucket's stream as `create_key_value` makes it, created directly: that
            // call first reads the account's limits, whose answer nats-server 2.9 words in
            // a way this client does not parse.
            js.get_or_create_stream(async_nats::jetstream::stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                num_replicas: usize::from(replication.replicas),
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: async_nats::jetstream::stream::DiscardPolicy::New,
                storage: async_nats::jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot create the key-value bucket {bucket}"))?;
            js.get_key_value(&bucket)
                .await
                .with_context(|| format!("cannot open the key-value bucket {bucket}"))?
        }
    };
    let entry = store
        .entry(pool)
        .await
        .with_context(|| format!("reading the lease {bucket}/{pool}"))?
        .filter(|e| e.operation == kv::Operation::Put);
    let held = match &entry {
        Some(e) => serde_json::from_slice::<serde_json::Value>(&e.value)
            .ok()
            .and_then(|v| v.get("epoch").and_then(serde_json::Value::as_u64))
            .ok_or_else(|| anyhow!("the lease {bucket}/{pool} holds no epoch"))?,
        None => wire::FIRST_EPOCH,
    };
    let epoch = held.max(floor) + 1;
    let holder = format!(
        "{}:{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "?".into()),
        std::process::id()
    );
    let value = serde_json::json!({ "epoch": epoch, "holder": holder }).to_string();
    let written = match &entry {
        Some(e) => {
            store.update(pool, value.into(), e.revision).await.map(|_| ()).map_err(|e| anyhow!(e))
        }
        None => store.create(pool, value.into()).await.map(|_| ()).map_err(|e| anyhow!(e)),
    };
    written.with_context(|| {
        format!(
            "taking the lease {bucket}/{pool} for epoch {epoch}: another promotion took it \
             at the same time (or JetStream refused)"
        )
    })?;
    Ok(epoch)
}

/// Where the group of `position.last_request_id` ends in the closed log of `config`'s
/// directory: `(segment, end)`, or `(segment, 0)` when no group is left in its files (the
/// log continues at that segment's first group).
fn log_end(config: &Config, position: &Position) -> anyhow::Result<(u64, u64)> {
    let dir = &config.wal_options().dir;
    let storage: Arc<dyn Storage> =
        Arc::new(OsStorage::existing(dir).with_context(|| format!("opening {}", dir.display()))?);
    let oldest = LogTail::oldest_segment(&*storage)
        .with_context(|| format!("listing {}", dir.display()))?
        .ok_or_else(|| anyhow!("{} holds no log", dir.display()))?;
    let mut tail = LogTail::open(Arc::clone(&storage), TailStart::Segment { segment: oldest })
        .with_context(|| format!("reading the log in {}", dir.display()))?;
    let mut end = None;
    while let Some(group) = tail
        .next_group(u64::MAX)
        .with_context(|| format!("reading the log in {}", dir.display()))?
    {
        end = Some((group.segment, group.end));
    }
    if tail.last_request_id() != position.last_request_id {
        return Err(anyhow!(
            "the log in {} ends at request id {}, the stream's position at {}",
            dir.display(),
            tail.last_request_id(),
            position.last_request_id
        ));
    }
    Ok(end.unwrap_or((tail.segment(), 0)))
}

/// Writes `replica.epoch` ([`super::write_durably`]).
fn write_epoch(dir: &std::path::Path, stream: &str, epoch: u64) -> anyhow::Result<()> {
    let text = serde_json::json!({ "stream": stream, "epoch": epoch });
    super::write_durably(dir, REPLICA_EPOCH_FILE, &text.to_string())
}
