//! The message format on the stream, and connecting to it.
//!
//! One message per committed group, or per run of consecutive groups when the shipper is
//! behind (a [`Batch`]: whatever groups are ready, up to [`BATCH_BYTES`]; a group is never
//! split), on subject `<stream_prefix>.<pool>.log` of stream `<stream_prefix>_<pool>`:
//!
//! | part | value |
//! |---|---|
//! | payload | the groups' frames byte for byte, as the primary's log holds them: 16-byte aligned frames, each with its own CRC-32C (`wal::frame`), each group ending with its commit frame |
//! | `Nats-Msg-Id` | `<epoch>-<first request id>-<segment>.<offset>` of the first group: the same message republished (a retry after a timeout) is stored once within the stream's duplicate window |
//! | `Nats-Expected-Last-Sequence` | the stream sequence the shipper expects before this message: a publish after someone else's (a promoted standby's) is refused, which fences the old primary |
//! | `Nats-Expected-Last-Msg-Id` | the previous group's message id (absent on an empty stream): with many publishes in flight, the one after a refused one would otherwise find the sequence it expects taken by the foreign message and be stored; with both headers every publish after a foreign message is refused |
//! | `Rewardpool-Epoch` | the primary's epoch: 1, then the one `rewardpool promote` took with the pool's lease (`<pool dir>/replica.epoch`); a shipper whose epoch is below the stream's last message's is fenced |
//! | `Rewardpool-Prev` | the last request id before the first group (continuity: a follower refuses a group that does not follow its log) |
//! | `Rewardpool-First`, `Rewardpool-Last` | the first group's first and the last group's last request id |
//! | `Rewardpool-Draws`, `Rewardpool-Groups` | draws and groups in the message |
//! | `Rewardpool-Segment`, `Rewardpool-End` | where the last group ends in the primary's log: a restarted shipper continues after the stream's last message from there |
//!
//! A **fence** (`rewardpool promote`) is a message with an empty payload, headers
//! `Rewardpool-Fence: 1`, `Rewardpool-Epoch` (the new epoch), `Rewardpool-Last` (the last
//! request id replicated), and `Rewardpool-Segment`/`Rewardpool-End`: where that request
//! id's group ends in the *promoted* log (`End` 0: at segment `Segment`'s first group). It
//! is published with `Nats-Expected-Last-Sequence` = the last sequence the standby applied,
//! so it is stored only if the old primary published nothing since; every later publish of
//! the old primary is then refused. A follower skips it; the promoted pool's shipper
//! continues after it.

use std::time::Duration;

use anyhow::{anyhow, Context as _};
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use rewardpool::config::ReplicationConfig;
use rewardpool::replicate::{Group, TailStart};

/// The epoch of a pool never promoted (no `replica.epoch` file).
pub(crate) const FIRST_EPOCH: u64 = 1;

/// Header names (module docs).
pub(crate) const EPOCH_HEADER: &str = "Rewardpool-Epoch";
pub(crate) const PREV_HEADER: &str = "Rewardpool-Prev";
pub(crate) const FIRST_HEADER: &str = "Rewardpool-First";
pub(crate) const LAST_HEADER: &str = "Rewardpool-Last";
pub(crate) const DRAWS_HEADER: &str = "Rewardpool-Draws";
pub(crate) const GROUPS_HEADER: &str = "Rewardpool-Groups";
pub(crate) const SEGMENT_HEADER: &str = "Rewardpool-Segment";
pub(crate) const END_HEADER: &str = "Rewardpool-End";
pub(crate) const FENCE_HEADER: &str = "Rewardpool-Fence";

/// Payload bytes of a message at most when it carries several groups (a single group may be
/// larger). JetStream's default `max_payload` is 1 MiB; fewer, larger messages cost the
/// servers far less CPU than one per group when the shipper is behind.
pub(crate) const BATCH_BYTES: usize = 256 << 10;

/// One message's groups: consecutive whole groups of the log (module docs).
#[derive(Debug)]
pub(crate) struct Batch {
    /// The groups' frames, one after the other.
    pub(crate) payload: Vec<u8>,
    /// The first group's segment and offset (the message id; what retention must hold).
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    /// The last request id before the first group, and the first group's first.
    pub(crate) prev_request_id: u64,
    pub(crate) first_request_id: u64,
    /// Where the last group starts and ends, its last request id and its group number.
    pub(crate) last_segment: u64,
    pub(crate) last_offset: u64,
    pub(crate) end: u64,
    pub(crate) last_request_id: u64,
    pub(crate) group: u64,
    /// Draws and groups in it.
    pub(crate) draws: u64,
    pub(crate) groups: u64,
}

impl Batch {
    /// A message of one group.
    pub(crate) fn new(group: Group) -> Batch {
        Batch {
            segment: group.segment,
            offset: group.offset,
            prev_request_id: group.prev_request_id,
            first_request_id: group.first_request_id,
            last_segment: group.segment,
            last_offset: group.offset,
            end: group.end,
            last_request_id: group.last_request_id,
            group: group.group,
            draws: group.draws,
            groups: 1,
            payload: group.frames,
        }
    }

    /// Whether `group` (the next one in the log) still fits.
    pub(crate) fn fits(&self, group: &Group) -> bool {
        self.payload.len() + group.frames.len() <= BATCH_BYTES
    }

    /// Appends the log's next group.
    pub(crate) fn push(&mut self, group: &Group) {
        self.payload.extend_from_slice(&group.frames);
        self.last_segment = group.segment;
        self.last_offset = group.offset;
        self.end = group.end;
        self.last_request_id = group.last_request_id;
        self.group = group.group;
        self.draws += group.draws;
        self.groups += 1;
    }
}

/// How long JetStream remembers a message id (a republished group within it is stored
/// once).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The headers of `group`'s message (module docs), `expected` the stream sequence before it
/// and `previous` the message id of the message there (`None`: the stream is empty); and
/// the message's own id; `epoch` the shipper's.
pub(crate) fn headers(
    group: &Batch,
    expected: u64,
    previous: Option<&str>,
    epoch: u64,
) -> (HeaderMap, String) {
    let mut h = HeaderMap::new();
    let id = format!("{epoch}-{}-{}.{}", group.first_request_id, group.segment, group.offset);
    h.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    h.insert(async_nats::header::NATS_EXPECTED_LAST_SEQUENCE, expected.to_string().as_str());
    if let Some(previous) = previous {
        h.insert(async_nats::header::NATS_EXPECTED_LAST_MESSAGE_ID, previous);
    }
    h.insert(EPOCH_HEADER, epoch.to_string().as_str());
    h.insert(PREV_HEADER, group.prev_request_id.to_string().as_str());
    h.insert(FIRST_HEADER, group.first_request_id.to_string().as_str());
    h.insert(LAST_HEADER, group.last_request_id.to_string().as_str());
    h.insert(DRAWS_HEADER, group.draws.to_string().as_str());
    h.insert(GROUPS_HEADER, group.groups.to_string().as_str());
    h.insert(SEGMENT_HEADER, group.last_segment.to_string().as_str());
    h.insert(END_HEADER, group.end.to_string().as_str());
    (h, id)
}

/// The headers of a fence (module docs) after stream sequence `expected` (message id
/// `previous`), and its id.
pub(crate) fn fence_headers(
    epoch: u64,
    expected: u64,
    previous: Option<&str>,
    segment: u64,
    end: u64,
    last_request_id: u64,
) -> (HeaderMap, String) {
    let mut h = HeaderMap::new();
    let id = format!("{epoch}-fence-{expected}");
    h.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    h.insert(async_nats::header::NATS_EXPECTED_LAST_SEQUENCE, expected.to_string().as_str());
    if let Some(previous) = previous {
        h.insert(async_nats::header::NATS_EXPECTED_LAST_MESSAGE_ID, previous);
    }
    h.insert(FENCE_HEADER, "1");
    h.insert(EPOCH_HEADER, epoch.to_string().as_str());
    h.insert(LAST_HEADER, last_request_id.to_string().as_str());
    h.insert(SEGMENT_HEADER, segment.to_string().as_str());
    h.insert(END_HEADER, end.to_string().as_str());
    (h, id)
}

/// Whether a message is a fence.
pub(crate) fn is_fence(headers: Option<&HeaderMap>) -> bool {
    headers.is_some_and(|h| h.get(FENCE_HEADER).is_some())
}

/// A message's epoch (`Rewardpool-Epoch`; absent: the first epoch).
pub(crate) fn epoch(headers: Option<&HeaderMap>) -> anyhow::Result<u64> {
    match headers.and_then(|h| h.get(EPOCH_HEADER)) {
        None => Ok(FIRST_EPOCH),
        Some(_) => number(headers, EPOCH_HEADER),
    }
}

/// The epoch the pool in `dir` ships with (`replica.epoch`, written by `promote`; absent:
/// the first epoch).
pub(crate) fn local_epoch(dir: &std::path::Path) -> anyhow::Result<u64> {
    let path = dir.join(rewardpool::layout::REPLICA_EPOCH_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FIRST_EPOCH),
        Err(e) => return Err(anyhow!(e).context(format!("reading {}", path.display()))),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    value
        .get("epoch")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| anyhow!("{} has no epoch", path.display()))
}

/// A message's id (`Nats-Msg-Id`), if it has one.
pub(crate) fn message_id(headers: &HeaderMap) -> Option<String> {
    headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_owned())
}

/// A number header of a message, or why not.
pub(crate) fn number(headers: Option<&HeaderMap>, name: &str) -> anyhow::Result<u64> {
    let value = headers
        .and_then(|h| h.get(name))
        .ok_or_else(|| anyhow!("the message has no {name} header: not a rewardpool group"))?;
    value.as_str().parse().with_context(|| format!("its {name} header is {:?}", value.as_str()))
}

/// Where a shipper continues after the stream's last message (its headers; a fence with
/// `End` 0: at its segment's first group).
pub(crate) fn resume_point(headers: Option<&HeaderMap>) -> anyhow::Result<TailStart> {
    if is_fence(headers) && number(headers, END_HEADER)? == 0 {
        return Ok(TailStart::Segment { segment: number(headers, SEGMENT_HEADER)? });
    }
    Ok(TailStart::After {
        segment: number(headers, SEGMENT_HEADER)?,
        end: number(headers, END_HEADER)?,
        last_request_id: number(headers, LAST_HEADER)?,
    })
}

/// Connects to the configuration's servers (async-nats fails over between them and
/// reconnects by itself).
pub(crate) async fn connect(config: &ReplicationConfig) -> anyhow::Result<jetstream::Context> {
    let addrs: Vec<async_nats::ServerAddr> = config
        .nats
        .iter()
        .map(|u| u.parse().with_context(|| format!("replication.nats: {u:?}")))
        .collect::<anyhow::Result<_>>()?;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .connect(addrs)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats.join(", ")))?;
    Ok(jetstream::new(client))
}

/// The pool's stream, created (with the configured replicas) when missing.
pub(crate) async fn stream(
    js: &jetstream::Context,
    config: &ReplicationConfig,
    pool: &str,
) -> anyhow::Result<stream::Stream> {
    let name = config.stream(pool);
    js.get_or_create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![config.subject(pool)],
        num_replicas: usize::from(config.replicas),
        duplicate_window: DUPLICATE_WINDOW,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .with_context(|| format!("cannot open the JetStream stream {name}"))
}
