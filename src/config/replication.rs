//! The `replication` section: each pool's log shipped to NATS JetStream (issue 12).
//!
//! ```yaml
//! replication:
//!   nats: ["nats://127.0.0.1:4222", "nats://10.0.0.2:4222"]   # the cluster's servers
//!   stream_prefix: rewardpool      # stream `<prefix>_<pool>`, subject `<prefix>.<pool>.log`
//!   replicas: 3                    # 1 or 3: copies JetStream keeps of each message
//!   ack: local                     # local | replica: when a draw is acknowledged
//!   max_lag_groups: 100000         # groups the log keeps unshipped before it alarms
//!   linger_ms: 20                  # how long the shipper gathers groups into one message
//! pools:
//!   - name: event
//!     catalog: [...]
//!     replication: { replicas: 1 } # this pool only: its keys over the top-level ones
//! ```
//!
//! Without the section nothing is replicated. A pool's `replication` keys override the
//! top-level ones key by key (as `wal` does); a pool may also have a `replication` section
//! when the top level has none (it then names its own `nats`).

use super::{bounded, ConfigError, ConfigErrorKind};
use serde::Deserialize;

/// `stream_prefix` when the section leaves it out.
pub const DEFAULT_STREAM_PREFIX: &str = "rewardpool";
/// `max_lag_groups` when the section leaves it out.
pub const DEFAULT_MAX_LAG_GROUPS: u64 = 100_000;
/// Largest `max_lag_groups` (2^32).
pub const MAX_LAG_GROUPS_MAX: u64 = 1 << 32;
/// `linger_ms` when the section leaves it out, under `ack: local`: each message then
/// carries about 20 ms of groups (measured on a loopback 3-node cluster: the servers' CPU
/// falls roughly in proportion to the messages, so shipping costs the pool far less).
pub const DEFAULT_LINGER_MS_LOCAL: u64 = 20;
/// Longest `linger_ms`.
pub const LINGER_MS_MAX: u64 = 1000;
/// Longest `stream_prefix`: with `_` and a pool name (at most 64 bytes) a stream name stays
/// well under JetStream's limits.
pub const STREAM_PREFIX_LEN_MAX: usize = 64;

/// When a draw is acknowledged under replication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReplicaAck {
    /// Once its group is durable in the local log (the pool's `wal.durability`); shipping
    /// follows, never blocking the pool.
    #[default]
    Local,
    /// Once its group is durable locally **and** JetStream stored its message on the
    /// stream's replicas.
    Replica,
}

/// The `replication` settings of one pool, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// The NATS servers' URLs (`nats://host:port`, or `host:port`), at least one.
    pub nats: Vec<String>,
    /// Streams are `<stream_prefix>_<pool>`, subjects `<stream_prefix>.<pool>.log`.
    pub stream_prefix: String,
    /// Copies of each message JetStream keeps: 1 or 3.
    pub replicas: u8,
    /// When a draw is acknowledged.
    pub ack: ReplicaAck,
    /// Groups the log keeps unshipped before retention may drop them (`ack: local` then
    /// raises an alarm metric and keeps serving).
    pub max_lag_groups: u64,
    /// How long the shipper waits after a publish before it starts the next message, so
    /// that a message carries every group committed meanwhile (at most 256 KiB). Default
    /// [`DEFAULT_LINGER_MS_LOCAL`] under `ack: local` (the replicas lag by about that much
    /// more) and 0 under `ack: replica` (a draw waits for its message, so nothing lingers).
    pub linger_ms: u64,
}

impl ReplicationConfig {
    /// The stream of pool `pool`: `<stream_prefix>_<pool>` (stream names hold no `.`).
    #[must_use]
    pub fn stream(&self, pool: &str) -> String {
        format!("{}_{pool}", self.stream_prefix)
    }

    /// The subject pool `pool`'s groups are published on: `<stream_prefix>.<pool>.log`.
    #[must_use]
    pub fn subject(&self, pool: &str) -> String {
        format!("{}.{pool}.log", self.stream_prefix)
    }
}

/// The section as written, before validation.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReplication {
    nats: Option<Vec<String>>,
    stream_prefix: Option<String>,
    replicas: Option<i64>,
    ack: Option<String>,
    max_lag_groups: Option<i64>,
    linger_ms: Option<i64>,
}

/// A refusal of a `replication` key (the error names the key).
fn bad(field: &'static str, value: impl Into<String>, expected: &'static str) -> ConfigError {
    ConfigErrorKind::BadReplication { field, value: value.into(), expected }.into()
}

/// True for `nats://host:port`, `tls://host:port` or `host:port`, with a numeric port.
fn valid_nats_url(url: &str) -> bool {
    let rest = url.strip_prefix("nats://").or_else(|| url.strip_prefix("tls://")).unwrap_or(url);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    match rest.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains(char::is_whitespace) && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

/// True for a prefix that is one subject token and a valid stream name part.
fn valid_stream_prefix(prefix: &str) -> bool {
    (1..=STREAM_PREFIX_LEN_MAX).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl RawReplication {
    /// `self`'s keys where set, `base`'s otherwise (a pool's section over the top-level one).
    pub(super) fn over(self, base: Option<&RawReplication>) -> RawReplication {
        let base = base.cloned().unwrap_or_default();
        RawReplication {
            nats: self.nats.or(base.nats),
            stream_prefix: self.stream_prefix.or(base.stream_prefix),
            replicas: self.replicas.or(base.replicas),
            ack: self.ack.or(base.ack),
            max_lag_groups: self.max_lag_groups.or(base.max_lag_groups),
            linger_ms: self.linger_ms.or(base.linger_ms),
        }
    }

    /// Checks every key.
    pub(super) fn validate(self) -> Result<ReplicationConfig, ConfigError> {
        let nats = self.nats.unwrap_or_default();
        if nats.is_empty() {
            return Err(bad(
                "replication.nats",
                "[]",
                "a list of one or more NATS server URLs (e.g. [\"nats://127.0.0.1:4222\"])",
            ));
        }
        if let Some(url) = nats.iter().find(|u| !valid_nats_url(u)) {
            return Err(bad(
                "replication.nats",
                url.clone(),
                "nats://host:port (or tls://host:port, or host:port)",
            ));
        }
        let stream_prefix = self.stream_prefix.unwrap_or_else(|| DEFAULT_STREAM_PREFIX.into());
        if !valid_stream_prefix(&stream_prefix) {
            return Err(bad(
                "replication.stream_prefix",
                stream_prefix,
                "1 to 64 ASCII letters, digits, '_' or '-' (it is part of a subject and of a \
                 stream name)",
            ));
        }
        let replicas = match self.replicas {
            None | Some(1) => 1,
            Some(3) => 3,
            Some(other) => return Err(bad("replication.replicas", other.to_string(), "1 or 3")),
        };
        let ack = match self.ack.as_deref() {
            None | Some("local") => ReplicaAck::Local,
            Some("replica") => ReplicaAck::Replica,
            Some(other) => return Err(bad("replication.ack", other, "local or replica")),
        };
        let max_lag_groups = bounded(
            "replication.max_lag_groups",
            self.max_lag_groups,
            DEFAULT_MAX_LAG_GROUPS,
            1,
            MAX_LAG_GROUPS_MAX,
        )?;
        let default_linger = match ack {
            ReplicaAck::Local => DEFAULT_LINGER_MS_LOCAL,
            ReplicaAck::Replica => 0,
        };
        let linger_ms =
            bounded("replication.linger_ms", self.linger_ms, default_linger, 0, LINGER_MS_MAX)?;
        Ok(ReplicationConfig { nats, stream_prefix, replicas, ack, max_lag_groups, linger_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigErrorKind};
    use super::*;

    const ONE: &str = "pool:\n  catalog:\n    - { item_id: a, quantity: 1, probability: 1 }\n";

    fn with(section: &str) -> Result<Config, super::ConfigError> {
        Config::from_yaml_str(&format!("{ONE}replication:\n{section}"))
    }

    #[test]
    fn absent_means_no_replication() {
        let c = Config::from_yaml_str(ONE).unwrap();
        assert_eq!(c.replication, None);
        assert_eq!(c.pools[0].replication, None);
    }

    #[test]
    fn defaults_and_names() {
        let c = with("  nats: [\"nats://127.0.0.1:4222\"]\n").unwrap();
        let r = c.replication.clone().unwrap();
        assert_eq!(r.nats, ["nats://127.0.0.1:4222"]);
        assert_eq!(r.stream_prefix, DEFAULT_STREAM_PREFIX);
        assert_eq!(r.replicas, 1);
        assert_eq!(r.ack, ReplicaAck::Local);
        assert_eq!(r.max_lag_groups, DEFAULT_MAX_LAG_GROUPS);
        assert_eq!(r.linger_ms, DEFAULT_LINGER_MS_LOCAL);
        assert_eq!(c.pools[0].replication.as_ref(), Some(&r), "the Go form's pool gets it");
        assert_eq!(r.stream("default"), "rewardpool_default");
        assert_eq!(r.subject("default"), "rewardpool.default.log");
    }

    #[test]
    fn every_key() {
        let c = with(
            "  nats: [\"127.0.0.1:4222\", \"nats://h:1\"]\n  stream_prefix: rp-1\n  replicas: 3\n  \
             ack: replica\n  max_lag_groups: 7\n  linger_ms: 5\n",
        )
        .unwrap();
        let r = c.replication.unwrap();
        assert_eq!((r.replicas, r.ack, r.max_lag_groups), (3, ReplicaAck::Replica, 7));
        assert_eq!(r.linger_ms, 5);
        let replica = with("  nats: [\"h:1\"]\n  ack: replica\n").unwrap();
        assert_eq!(replica.replication.unwrap().linger_ms, 0, "ack: replica lingers not");
        assert_eq!(r.stream_prefix, "rp-1");
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            ("  nats: []\n", "replication.nats"),
            ("  stream_prefix: x\n", "replication.nats"),
            ("  nats: [\"nats://h\"]\n", "replication.nats is \"nats://h\""),
            ("  nats: [\"h:1\"]\n  stream_prefix: a.b\n", "replication.stream_prefix is \"a.b\""),
            ("  nats: [\"h:1\"]\n  stream_prefix: \"\"\n", "replication.stream_prefix"),
            (
                "  nats: [\"h:1\"]\n  replicas: 2\n",
                "replication.replicas is \"2\", it must be 1 or 3",
            ),
            (
                "  nats: [\"h:1\"]\n  ack: all\n",
                "replication.ack is \"all\", it must be local or replica",
            ),
            ("  nats: [\"h:1\"]\n  max_lag_groups: 0\n", "replication.max_lag_groups is 0"),
            ("  nats: [\"h:1\"]\n  linger_ms: 1001\n", "replication.linger_ms is 1001"),
            ("  nats: [\"h:1\"]\n  linger_ms: -1\n", "replication.linger_ms is -1"),
        ];
        for (section, expected) in cases {
            let e = with(section).expect_err(section);
            assert!(e.to_string().contains(expected), "{section}: {e}");
        }
        let e = with("  nats: [\"h:1\"]\n  replica: 3\n").expect_err("unknown key");
        assert!(matches!(e.kind, ConfigErrorKind::Structure(_)), "{e}");
    }

    #[test]
    fn a_pool_overrides_key_by_key() {
        let text = "replication: { nats: [\"h:1\"], replicas: 3, stream_prefix: p }\npools:\n  \
                    - name: a\n    catalog: [{ item_id: x, quantity: 1, probability: 1 }]\n  \
                    - name: b\n    catalog: [{ item_id: x, quantity: 1, probability: 1 }]\n    \
                    replication: { replicas: 1, ack: replica }\n";
        let c = Config::from_yaml_str(text).unwrap();
        let (a, b) =
            (c.pools[0].replication.clone().unwrap(), c.pools[1].replication.clone().unwrap());
        assert_eq!(a.replicas, 3);
        assert_eq!(a.ack, ReplicaAck::Local);
        assert_eq!((b.replicas, b.ack), (1, ReplicaAck::Replica), "its own keys win");
        assert_eq!(b.nats, ["h:1"], "a key it does not set comes from the top");
        assert_eq!(b.stream_prefix, "p");
        assert_eq!(c.for_pool(1, "d".into()).unwrap().replication, Some(b));
        let e = Config::from_yaml_str(&text.replace("replicas: 1,", "replicas: 5,")).unwrap_err();
        assert!(e.to_string().contains("pools[1] (pool \"b\"): replication.replicas"), "{e}");
        let alone =
            "pools:\n  - name: a\n    catalog: [{ item_id: x, quantity: 1, probability: 1 }]\n    \
                     replication: { nats: [\"h:2\"] }\n";
        let c = Config::from_yaml_str(alone).unwrap();
        assert_eq!(c.replication, None);
        assert_eq!(c.pools[0].replication.as_ref().unwrap().nats, ["h:2"]);
    }
}
