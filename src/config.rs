//! The YAML configuration (SPEC §6): parsing, validation and conversion into the library's
//! types.
//!
//! ```yaml
//! working_dir: "data"
//! pool:
//!   catalog:
//!     - { item_id: "diamond", quantity: 100, probability: 10 }
//!     - { item_id: "mud",     quantity: -1,  probability: 70 }
//! wal:
//!   max_file_size_kb: 512          # segment size
//!   max_request_buffer_size: 512   # ring capacity per client
//!   formatter: "string_line"       # accepted for compatibility; frames are always binary
//!   flush_after_n_draw: 200        # max draws per group commit
//!   durability: sync               # memory | buffered | sync
//!   max_commit_delay_us: 200
//! grpc:
//!   enabled: false
//!   listen_address: "127.0.0.1:50051"
//! metrics:                         # optional: without it, `serve` runs no metrics server
//!   listen_address: "127.0.0.1:9464"   # /metrics, /healthz, /readyz (this is the default)
//! idempotency:                     # retried keyed draws return their original outcomes
//!   keys: 1048576                  # keys kept (oldest evicted first), 1 ... 16777216
//!   hours: 24                      # a key older than this runs as a new request
//! replication:                     # optional: ship each pool's log to NATS JetStream
//!   nats: ["nats://127.0.0.1:4222"]
//!   stream_prefix: rewardpool      # stream <prefix>_<pool>, subject <prefix>.<pool>.log
//!   replicas: 1                    # 1 or 3
//!   ack: local                     # local | replica
//!   max_lag_groups: 100000
//!   linger_ms: 20                  # 0 under ack: replica
//! ```
//! (`replication` in detail, and how a pool overrides it: [`ReplicationConfig`].)
//!
//! Several pools (each in `working_dir/<name>/`, see `host::pool_dirs`) take `pools:`
//! instead of `pool:`; a pool's `wal` keys override the top-level `wal` ones, key by key:
//!
//! ```yaml
//! working_dir: "data"
//! wal: { durability: buffered }
//! pools:
//!   - name: banner                 # ASCII letters, digits, '_' and '-' (a directory name)
//!     core: 0                      # optional: pin its core thread (default: the core plan)
//!     catalog:
//!       - { item_id: "diamond", quantity: 100, probability: 10 }
//!   - name: event
//!     catalog:
//!       - { item_id: "mud", quantity: -1, probability: 70 }
//!     wal: { durability: sync }    # this pool only
//! ```
//! The idempotency window also keeps the outcomes of 16 draws per key on average (16 M at
//! the default): a window of longer pulls holds fewer keys, the oldest evicted first. It is
//! allocated when the engine starts (about 120 bytes per key, zeroed: pages untouched until
//! keys arrive) and saved in every snapshot.
//!
//! Loading runs in three steps, each with its own errors:
//! 1. read the file, and parse it as YAML (`NotYaml`, `Empty`, `Read`);
//! 2. deserialize into typed structs with unknown keys refused, so a misspelt key is an error
//!    rather than a silently ignored line (`Structure`, `NotAnInteger`: serde_norway reports the
//!    path and the line);
//! 3. check every rule serde cannot express (empty catalog, duplicate ids, ranges).
//!
//! The parser is serde_norway, a maintained fork of the archived serde_yaml with the same API
//! and line/column in its errors.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::engine::EngineConfig;
use crate::pool::{
    ItemSpec, KeyWindow, Quantity, HOURS_DEFAULT, HOURS_MAX, KEYS_DEFAULT, KEYS_MAX,
};
use crate::wal::{Durability, WalOptions};

mod replication;
use replication::RawReplication;
pub use replication::{
    ReplicaAck, ReplicationConfig, DEFAULT_LINGER_MS_LOCAL, DEFAULT_MAX_LAG_GROUPS,
    DEFAULT_STREAM_PREFIX, LINGER_MS_MAX, MAX_LAG_GROUPS_MAX, STREAM_PREFIX_LEN_MAX,
};

/// Smallest segment: the header, a snapshot marker and some frames must fit.
pub const MAX_FILE_SIZE_KB_MIN: u64 = 16;
/// Largest segment (4 GiB): segments are memory-mapped and preallocated.
pub const MAX_FILE_SIZE_KB_MAX: u64 = 4 << 20;
/// Largest ring per client (the engine's own bound).
pub const MAX_REQUEST_BUFFER_SIZE_MAX: u64 = 1 << 20;
/// Largest group commit.
pub const FLUSH_AFTER_N_DRAW_MAX: u64 = 1 << 20;
/// Longest commit delay (1 s): beyond this, callers would wait visibly.
pub const MAX_COMMIT_DELAY_US_MAX: u64 = 1_000_000;

/// Default segment size when `wal.max_file_size_kb` is absent (64 MiB).
pub const DEFAULT_MAX_FILE_SIZE_KB: u64 = 64 << 10;
/// Default ring capacity per client.
pub const DEFAULT_MAX_REQUEST_BUFFER_SIZE: u64 = 512;
/// Default group size.
pub const DEFAULT_FLUSH_AFTER_N_DRAW: u64 = 200;
/// Default commit delay.
pub const DEFAULT_MAX_COMMIT_DELAY_US: u64 = 200;

/// `wal.formatter` values the Go service knew; all are accepted and ignored (frames are binary).
const FORMATTERS: [&str; 4] = ["string_line", "json", "jsonl", "binary"];

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The data directory (`working_dir`).
    pub working_dir: PathBuf,
    /// The catalog, in file order: the Go form's `pool.catalog`, or the first pool's under
    /// `pools:` (every pool's is in [`Config::pools`]).
    pub catalog: Vec<CatalogItem>,
    /// `wal` section (the top-level one; each pool's, with its own keys over these, is in
    /// [`Config::pools`]).
    pub wal: WalConfig,
    /// `grpc` section.
    pub grpc: GrpcConfig,
    /// `metrics` section: where `serve` answers `/metrics`, `/healthz` and `/readyz`;
    /// `None` (no section) runs no metrics server.
    pub metrics: Option<MetricsConfig>,
    /// `idempotency` section: the idempotency-key window.
    pub idempotency: KeyWindow,
    /// Every pool, in file order: the Go form `pool:` is one pool named [`DEFAULT_POOL`].
    pub pools: Vec<PoolConfig>,
    /// Where the pools' files are: the Go form keeps its one pool's files directly in
    /// `working_dir`; `pools:` gives each pool `working_dir/<name>/`.
    pub layout: DirLayout,
    /// The top-level `replication` section (`None`: nothing replicated unless a pool has a
    /// section of its own; each pool's merged settings are in [`Config::pools`]).
    pub replication: Option<ReplicationConfig>,
}

/// The name of the Go form's one pool (`pool:`).
pub const DEFAULT_POOL: &str = "default";

/// Longest pool name (it names a directory).
pub const POOL_NAME_LEN_MAX: usize = 64;

/// One pool of `pools:` (or the Go form's `pool:`), validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// A safe directory name ([`valid_pool_name`]).
    pub name: String,
    /// The catalog, in file order.
    pub catalog: Vec<CatalogItem>,
    /// The core its core thread is pinned to (`core:`); `None` = the host's core plan.
    pub core: Option<usize>,
    /// Its `wal`: the pool's own keys over the top-level ones, key by key.
    pub wal: WalConfig,
    /// Its `replication`: the pool's own keys over the top-level ones, key by key; `None`
    /// when neither has the section (the pool is not replicated).
    pub replication: Option<ReplicationConfig>,
}

/// How a configuration lays its pools out under `working_dir`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirLayout {
    /// The Go form (`pool:`): the one pool's files are directly in `working_dir`, as every
    /// earlier release wrote them.
    Single,
    /// `pools:`: each pool in `working_dir/<name>/` (a pool named `default` keeps a log
    /// found directly in `working_dir`: see `host::pool_dirs`).
    PerPool,
}

/// True for a name a pool may have: 1 to [`POOL_NAME_LEN_MAX`] ASCII letters, digits, `_`
/// and `-`, starting with a letter or a digit. It is a directory's name, so nothing that
/// could climb out of `working_dir` (`/`, `..`) or collide with a log file (which all hold
/// a `.`, or is the lock file `lock`) is allowed.
#[must_use]
pub fn valid_pool_name(name: &str) -> bool {
    name != crate::layout::LOCK_FILE
        && (1..=POOL_NAME_LEN_MAX).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// One catalog entry, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogItem {
    /// Unique, non-empty id.
    pub item_id: String,
    /// Starting quantity; `-1` = unlimited.
    pub quantity: i64,
    /// Integer weight (`probability` in the file, `weight` accepted).
    pub weight: u32,
}

/// `wal` section, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalConfig {
    /// Segment size in KiB.
    pub max_file_size_kb: u64,
    /// Ring capacity per client.
    pub max_request_buffer_size: u64,
    /// Accepted for compatibility with the Go service; frames are always binary.
    pub formatter: String,
    /// Most draws in one group commit.
    pub flush_after_n_draw: u64,
    /// When outcomes are acknowledged.
    pub durability: Durability,
    /// Longest time a group stays open after its first draw, in microseconds.
    pub max_commit_delay_us: u64,
}

impl Default for WalConfig {
    fn default() -> WalConfig {
        WalConfig {
            max_file_size_kb: DEFAULT_MAX_FILE_SIZE_KB,
            max_request_buffer_size: DEFAULT_MAX_REQUEST_BUFFER_SIZE,
            formatter: "string_line".to_owned(),
            flush_after_n_draw: DEFAULT_FLUSH_AFTER_N_DRAW,
            durability: Durability::Sync,
            max_commit_delay_us: DEFAULT_MAX_COMMIT_DELAY_US,
        }
    }
}

/// `grpc` section (the service is a later issue; the section is parsed and kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcConfig {
    /// Whether `run` serves gRPC.
    pub enabled: bool,
    /// `host:port`; an empty host (`":50051"`, Go style) means every interface.
    pub listen_address: String,
}

impl Default for GrpcConfig {
    fn default() -> GrpcConfig {
        GrpcConfig { enabled: false, listen_address: "127.0.0.1:50051".to_owned() }
    }
}

/// `metrics` section: the HTTP server of `/metrics` (Prometheus text format), `/healthz` and
/// `/readyz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `host:port` as for `grpc.listen_address`; [`DEFAULT_METRICS_ADDRESS`] when the
    /// section leaves it out.
    pub listen_address: String,
}

/// The metrics server's address when the `metrics` section names none: loopback only (a
/// scraper elsewhere needs an explicit address), on the port OpenTelemetry's Prometheus
/// exporters use by default.
pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9464";

impl Default for Config {
    /// The built-in configuration: the Go sample's six items, data in `./data`.
    fn default() -> Config {
        let item = |id: &str, quantity: i64, weight: u32| CatalogItem {
            item_id: id.to_owned(),
            quantity,
            weight,
        };
        let catalog = vec![
            item("diamond", 100, 10),
            item("gold", 1_000, 20),
            item("silver", 10_000, 30),
            item("rock", 100_000, 40),
            item("mud", -1, 70),
            item("log", -1, 50),
        ];
        let pools = vec![PoolConfig {
            name: DEFAULT_POOL.to_owned(),
            catalog: catalog.clone(),
            core: None,
            wal: WalConfig::default(),
            replication: None,
        }];
        Config {
            working_dir: PathBuf::from("data"),
            catalog,
            wal: WalConfig::default(),
            grpc: GrpcConfig::default(),
            metrics: None,
            pools,
            layout: DirLayout::Single,
            idempotency: KeyWindow::default(),
            replication: None,
        }
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    ///
    /// # Errors
    /// A missing or unreadable file, or any [`ConfigErrorKind`]; the error names the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_owned()),
            line: None,
            kind: ConfigErrorKind::Read(e.to_string()),
        })?;
        Config::from_yaml_str(&text).map_err(|mut e| {
            e.file = Some(path.to_owned());
            e
        })
    }

    /// Parses and validates YAML text.
    ///
    /// # Errors
    /// Any [`ConfigErrorKind`] but `Read`.
    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigError> {
        let value: serde_norway::Value = serde_norway::from_str(text)
            .map_err(|e| ConfigError::from_yaml(&e, ConfigErrorKind::NotYaml))?;
        match &value {
            serde_norway::Value::Null => return Err(ConfigErrorKind::Empty.into()),
            serde_norway::Value::Mapping(map) => {
                match (map.contains_key("pool"), map.contains_key("pools")) {
                    (false, false) => return Err(ConfigErrorKind::MissingSection("pool").into()),
                    (true, true) => return Err(ConfigErrorKind::BothPoolForms.into()),
                    _ => {}
                }
            }
            other => {
                return Err(ConfigErrorKind::NotYaml(format!(
                    "expected a mapping of sections (working_dir, pool, wal, grpc), found {}",
                    kind_of(other)
                ))
                .into())
            }
        }
        let raw: RawConfig = serde_norway::from_str(text)
            .map_err(|e| ConfigError::from_yaml(&e, |m| structure_error(&value, m)))?;
        raw.validate()
    }

    /// The catalog as the library takes it.
    #[must_use]
    pub fn catalog(&self) -> Vec<ItemSpec> {
        self.catalog
            .iter()
            .map(|item| ItemSpec {
                id: item.item_id.clone(),
                // Validated: quantity >= -1.
                quantity: Quantity::from_i64(item.quantity).unwrap_or(Quantity::Unlimited),
                weight: item.weight,
            })
            .collect()
    }

    /// Where and how the log is kept.
    #[must_use]
    pub fn wal_options(&self) -> WalOptions {
        WalOptions {
            dir: self.working_dir.clone(),
            durability: self.wal.durability,
            segment_size_bytes: self.wal.max_file_size_kb * 1024,
            pool: self.pools.first().map_or_else(|| DEFAULT_POOL.to_owned(), |p| p.name.clone()),
            ..WalOptions::default()
        }
    }

    /// The position of pool `name` in [`Config::pools`].
    #[must_use]
    pub fn pool_index(&self, name: &str) -> Option<usize> {
        self.pools.iter().position(|p| p.name == name)
    }

    /// The pools' names, in file order.
    pub fn pool_names(&self) -> impl Iterator<Item = &str> {
        self.pools.iter().map(|p| p.name.as_str())
    }

    /// Pool `index` as a configuration of its own, in the Go form: `working_dir` is `dir`
    /// (the pool's directory, `host::pool_dirs`), `catalog` and `wal` are the pool's, and
    /// it has that one pool (with its `core`). What the single-pool code paths (the command
    /// line's `draw`, `state`, `wal …`) take. `None` for an index past the pools.
    #[must_use]
    pub fn for_pool(&self, index: usize, dir: PathBuf) -> Option<Config> {
        let pool = self.pools.get(index)?.clone();
        let mut view = self.clone();
        view.working_dir = dir;
        view.catalog.clone_from(&pool.catalog);
        view.wal = pool.wal.clone();
        view.replication.clone_from(&pool.replication);
        view.pools = vec![pool];
        view.layout = DirLayout::Single;
        Some(view)
    }

    /// The engine's bounds: ring capacity, group size and commit delay from `wal`, the rest
    /// at their defaults.
    #[must_use]
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            // Validated: both are at most 2^20.
            ring_capacity: usize::try_from(self.wal.max_request_buffer_size).unwrap_or(1 << 20),
            flush_after_n_draw: u32::try_from(self.wal.flush_after_n_draw).unwrap_or(1 << 20),
            max_commit_delay: Duration::from_micros(self.wal.max_commit_delay_us),
            idempotency: self.idempotency,
            ..EngineConfig::default()
        }
    }
}

/// A configuration that was refused: what is wrong, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, when loaded from one.
    pub file: Option<PathBuf>,
    /// The line (1-based), when the parser reported one.
    pub line: Option<usize>,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

/// What is wrong with a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file cannot be read (missing, permissions).
    Read(String),
    /// The file holds no YAML document (empty or only comments).
    Empty,
    /// The text is not YAML, or not a mapping at the top.
    NotYaml(String),
    /// A required section is absent.
    MissingSection(&'static str),
    /// The document does not have the expected shape (unknown key, wrong type); the message
    /// is the parser's and starts with the key's path.
    Structure(String),
    /// `pool.catalog` has no items.
    EmptyCatalog,
    /// An item's `item_id` is empty.
    EmptyItemId {
        /// Position in the catalog (0-based).
        position: usize,
    },
    /// Two items share an `item_id`.
    DuplicateItemId {
        /// The id.
        item_id: String,
        /// Position of its first occurrence.
        first: usize,
        /// Position of the repeat.
        position: usize,
    },
    /// A quantity or weight is not an integer.
    NotAnInteger {
        /// Position in the catalog.
        position: usize,
        /// The item's id, when it has one.
        item_id: Option<String>,
        /// `quantity` or `probability`.
        field: &'static str,
        /// What was found, as the parser describes it.
        found: String,
    },
    /// A quantity below -1.
    QuantityBelowMinusOne {
        /// Position in the catalog.
        position: usize,
        /// The item's id.
        item_id: String,
        /// The quantity.
        quantity: i64,
    },
    /// A negative weight, or one above `u32::MAX`.
    WeightOutOfRange {
        /// Position in the catalog.
        position: usize,
        /// The item's id.
        item_id: String,
        /// The weight.
        weight: i64,
    },
    /// A `wal` setting outside its bounds.
    OutOfRange {
        /// The key's path, e.g. `wal.flush_after_n_draw`.
        field: &'static str,
        /// The value found.
        value: i64,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// `wal.durability` is not memory, buffered or sync.
    UnknownDurability(String),
    /// `wal.formatter` is not one the Go service knew.
    UnknownFormatter(String),
    /// `grpc.listen_address` is not `host:port`.
    BadListenAddress(String),
    /// `metrics.listen_address` is not `host:port`.
    BadMetricsAddress(String),
    /// A `replication` key has a value it may not have.
    BadReplication {
        /// The key's path, e.g. `replication.replicas`.
        field: &'static str,
        /// The value found.
        value: String,
        /// What it may be.
        expected: &'static str,
    },
    /// Both `pool:` (the Go form) and `pools:` are present.
    BothPoolForms,
    /// `pools:` lists no pool.
    NoPools,
    /// A pool's name is not a safe directory name ([`valid_pool_name`]).
    BadPoolName {
        /// Position in `pools`.
        position: usize,
        /// The name.
        name: String,
    },
    /// Two pools share a name.
    DuplicatePoolName {
        /// The name.
        name: String,
        /// Position of its first occurrence.
        first: usize,
        /// Position of the repeat.
        position: usize,
    },
    /// A pool's `core` is not one this process may run on.
    CoreUnavailable {
        /// Position in `pools`.
        position: usize,
        /// The pool's name.
        name: String,
        /// The core asked for.
        core: i64,
        /// The cores this process may use.
        available: Vec<usize>,
    },
    /// An error inside one pool of `pools:` (its catalog, or its `wal` merged over the
    /// top-level one).
    InPool {
        /// Position in `pools`.
        position: usize,
        /// The pool's name.
        name: String,
        /// What is wrong.
        error: Box<ConfigErrorKind>,
    },
}

impl From<ConfigErrorKind> for ConfigError {
    fn from(kind: ConfigErrorKind) -> ConfigError {
        ConfigError { file: None, line: None, kind }
    }
}

impl ConfigError {
    fn from_yaml(
        e: &serde_norway::Error,
        kind: impl FnOnce(String) -> ConfigErrorKind,
    ) -> ConfigError {
        let mut message = e.to_string();
        // The location is kept apart (`line`), so drop the parser's " at line L column C".
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        ConfigError { file: None, line: e.location().map(|l| l.line()), kind: kind(message) }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration")?;
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, " in {}, line {line}", file.display())?,
            (Some(file), None) => write!(f, " in {}", file.display())?,
            (None, Some(line)) => write!(f, " at line {line}")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigErrorKind::Read(e) => write!(f, "cannot read the file: {e}"),
            ConfigErrorKind::Empty => {
                f.write_str("the file is empty: a `pool` section is required")
            }
            ConfigErrorKind::NotYaml(m) => write!(f, "not valid YAML: {m}"),
            ConfigErrorKind::MissingSection("pool") => {
                f.write_str("the `pool` section (or `pools`, a list of pools) is missing")
            }
            ConfigErrorKind::MissingSection(s) => write!(f, "the `{s}` section is missing"),
            ConfigErrorKind::Structure(m) => f.write_str(m),
            ConfigErrorKind::EmptyCatalog => {
                f.write_str("pool.catalog is empty: at least one item is required")
            }
            ConfigErrorKind::EmptyItemId { position } => {
                write!(f, "pool.catalog[{position}]: item_id is empty")
            }
            ConfigErrorKind::DuplicateItemId { item_id, first, position } => write!(
                f,
                "pool.catalog[{position}] (item {item_id:?}): item_id {item_id:?} is already \
                 used by pool.catalog[{first}]"
            ),
            ConfigErrorKind::NotAnInteger { position, item_id, field, found } => {
                write!(f, "pool.catalog[{position}]")?;
                if let Some(id) = item_id {
                    write!(f, " (item {id:?})")?;
                }
                write!(f, ": {field} must be an integer, found {found}")
            }
            ConfigErrorKind::QuantityBelowMinusOne { position, item_id, quantity } => write!(
                f,
                "pool.catalog[{position}] (item {item_id:?}): quantity is {quantity}, it must \
                 be -1 (unlimited) or more"
            ),
            ConfigErrorKind::WeightOutOfRange { position, item_id, weight } => write!(
                f,
                "pool.catalog[{position}] (item {item_id:?}): probability (weight) is \
                 {weight}, it must be between 0 and {}",
                u32::MAX
            ),
            ConfigErrorKind::OutOfRange { field, value, min, max } => {
                write!(f, "{field} is {value}, it must be between {min} and {max}")
            }
            ConfigErrorKind::UnknownDurability(v) => {
                write!(f, "wal.durability is {v:?}, it must be memory, buffered or sync")
            }
            ConfigErrorKind::UnknownFormatter(v) => write!(
                f,
                "wal.formatter is {v:?}, it must be one of {} (it is ignored: frames are \
                 always binary)",
                FORMATTERS.join(", ")
            ),
            ConfigErrorKind::BadListenAddress(v) => write!(
                f,
                "grpc.listen_address is {v:?}, it must be host:port (e.g. \"127.0.0.1:50051\" \
                 or \":50051\")"
            ),
            ConfigErrorKind::BadMetricsAddress(v) => write!(
                f,
                "metrics.listen_address is {v:?}, it must be host:port (e.g. \"127.0.0.1:9464\" \
                 or \":9464\")"
            ),
            ConfigErrorKind::BadReplication { field, value, expected } => {
                write!(f, "{field} is {value:?}, it must be {expected}")
            }
            ConfigErrorKind::BothPoolForms => f.write_str(
                "both `pool` and `pools` are present: use `pool` for one pool (named \
                 \"default\") or `pools` for several, not both",
            ),
            ConfigErrorKind::NoPools => {
                f.write_str("pools is empty: at least one pool is required")
            }
            ConfigErrorKind::BadPoolName { position, name } => write!(
                f,
                "pools[{position}].name is {name:?}: a pool name is its directory's name, so it \
                 must be 1 to {POOL_NAME_LEN_MAX} ASCII letters, digits, '_' or '-', starting \
                 with a letter or a digit, and not \"{}\"",
                crate::layout::LOCK_FILE
            ),
            ConfigErrorKind::DuplicatePoolName { name, first, position } => {
                write!(f, "pools[{position}].name {name:?} is already used by pools[{first}]")
            }
            ConfigErrorKind::CoreUnavailable { position, name, core, available } => write!(
                f,
                "pools[{position}] (pool {name:?}): core is {core}, but this process may run \
                 only on cores {available:?}"
            ),
            ConfigErrorKind::InPool { position, name, error } => {
                let inner = error.to_string();
                let inner = inner.strip_prefix("pool.").unwrap_or(&inner);
                write!(f, "pools[{position}] (pool {name:?}): {inner}")
            }
        }
    }
}

fn kind_of(v: &serde_norway::Value) -> &'static str {
    match v {
        serde_norway::Value::Null => "nothing",
        serde_norway::Value::Bool(_) => "a boolean",
        serde_norway::Value::Number(_) => "a number",
        serde_norway::Value::String(_) => "a string",
        serde_norway::Value::Sequence(_) => "a list",
        serde_norway::Value::Mapping(_) => "a mapping",
        serde_norway::Value::Tagged(_) => "a tagged value",
    }
}

/// Turns a typed-parse message into an error; a non-integer quantity or weight gets the item
/// named (its id is looked up in the untyped document).
fn structure_error(doc: &serde_norway::Value, message: String) -> ConfigErrorKind {
    let parsed = (|| {
        let rest = message.strip_prefix("pool.catalog[")?;
        let close = rest.find(']')?;
        let position: usize = rest[..close].parse().ok()?;
        let rest = rest[close + 1..].strip_prefix('.')?;
        let (field, rest) = rest.split_once(": ")?;
        let field = match field {
            "quantity" => "quantity",
            "probability" | "weight" => "probability",
            _ => return None,
        };
        let found = rest.strip_prefix("invalid type: ")?;
        let found = found.split(", expected").next()?.to_owned();
        let item_id = doc
            .get("pool")
            .and_then(|p| p.get("catalog"))
            .and_then(|c| c.get(position))
            .and_then(|i| i.get("item_id"))
            .and_then(serde_norway::Value::as_str)
            .map(str::to_owned);
        Some(ConfigErrorKind::NotAnInteger { position, item_id, field, found })
    })();
    parsed.unwrap_or(ConfigErrorKind::Structure(message))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    working_dir: Option<PathBuf>,
    #[serde(default)]
    pool: Option<RawPool>,
    #[serde(default)]
    pools: Option<Vec<RawNamedPool>>,
    #[serde(default)]
    wal: RawWal,
    #[serde(default)]
    grpc: RawGrpc,
    #[serde(default)]
    metrics: Option<RawMetrics>,
    #[serde(default)]
    idempotency: RawIdempotency,
    #[serde(default)]
    replication: Option<RawReplication>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen_address: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIdempotency {
    keys: Option<i64>,
    hours: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    #[serde(default)]
    catalog: Vec<RawItem>,
}

/// One entry of `pools:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamedPool {
    name: String,
    #[serde(default)]
    catalog: Vec<RawItem>,
    #[serde(default)]
    core: Option<i64>,
    #[serde(default)]
    wal: RawWal,
    #[serde(default)]
    replication: Option<RawReplication>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    item_id: String,
    quantity: i64,
    #[serde(alias = "weight")]
    probability: i64,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawWal {
    max_file_size_kb: Option<i64>,
    max_request_buffer_size: Option<i64>,
    formatter: Option<String>,
    flush_after_n_draw: Option<i64>,
    durability: Option<String>,
    max_commit_delay_us: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGrpc {
    enabled: Option<bool>,
    listen_address: Option<String>,
}

fn bounded(
    field: &'static str,
    value: Option<i64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match u64::try_from(value) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(ConfigErrorKind::OutOfRange { field, value, min, max }.into()),
    }
}

impl RawWal {
    /// `self`'s keys where set, `base`'s otherwise (a pool's `wal` over the top-level one).
    fn over(self, base: &RawWal) -> RawWal {
        let base = base.clone();
        RawWal {
            max_file_size_kb: self.max_file_size_kb.or(base.max_file_size_kb),
            max_request_buffer_size: self.max_request_buffer_size.or(base.max_request_buffer_size),
            formatter: self.formatter.or(base.formatter),
            flush_after_n_draw: self.flush_after_n_draw.or(base.flush_after_n_draw),
            durability: self.durability.or(base.durability),
            max_commit_delay_us: self.max_commit_delay_us.or(base.max_commit_delay_us),
        }
    }

    fn validate(self) -> Result<WalConfig, ConfigError> {
        let durability = match self.durability {
            None => Durability::Sync,
            Some(d) => {
                d.parse().map_err(|_| ConfigError::from(ConfigErrorKind::UnknownDurability(d)))?
            }
        };
        let formatter = self.formatter.unwrap_or_else(|| "string_line".to_owned());
        if !FORMATTERS.contains(&formatter.as_str()) {
            return Err(ConfigErrorKind::UnknownFormatter(formatter).into());
        }
        let wal = WalConfig {
            max_file_size_kb: bounded(
                "wal.max_file_size_kb",
                self.max_file_size_kb,
                DEFAULT_MAX_FILE_SIZE_KB,
                MAX_FILE_SIZE_KB_MIN,
                MAX_FILE_SIZE_KB_MAX,
            )?,
            max_request_buffer_size: bounded(
                "wal.max_request_buffer_size",
                self.max_request_buffer_size,
                DEFAULT_MAX_REQUEST_BUFFER_SIZE,
                1,
                MAX_REQUEST_BUFFER_SIZE_MAX,
            )?,
            formatter,
            flush_after_n_draw: bounded(
                "wal.flush_after_n_draw",
                self.flush_after_n_draw,
                DEFAULT_FLUSH_AFTER_N_DRAW,
                1,
                FLUSH_AFTER_N_DRAW_MAX,
            )?,
            durability,
            max_commit_delay_us: bounded(
                "wal.max_commit_delay_us",
                self.max_commit_delay_us,
                DEFAULT_MAX_COMMIT_DELAY_US,
                0,
                MAX_COMMIT_DELAY_US_MAX,
            )?,
        };

        // A group never spans segments: the largest group must fit in one, after the header
        // and the snapshot marker (2 KiB covers both), its batch frame's fixed 56 bytes and
        // its commit frame, at the worst case of 29 bytes per draw (every draw a keyed
        // request of one: a 24-byte key and a 4-byte item, plus splits; see wal::journal).
        let segment_bytes = wal.max_file_size_kb * 1024;
        let group_max = (segment_bytes.saturating_sub(2048 + 56 + 32) / 29).max(1);
        if wal.durability != Durability::Memory && wal.flush_after_n_draw > group_max {
            return Err(ConfigErrorKind::OutOfRange {
                field: "wal.flush_after_n_draw",
                value: i64::try_from(wal.flush_after_n_draw).unwrap_or(i64::MAX),
                min: 1,
                max: group_max,
            }
            .into());
        }
        Ok(wal)
    }
}

fn validate_catalog(items: Vec<RawItem>) -> Result<Vec<CatalogItem>, ConfigErrorKind> {
    if items.is_empty() {
        return Err(ConfigErrorKind::EmptyCatalog);
    }
    let mut catalog = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashMap::new();
    for (position, item) in items.into_iter().enumerate() {
        if item.item_id.is_empty() {
            return Err(ConfigErrorKind::EmptyItemId { position });
        }
        if let Some(&first) = seen.get(&item.item_id) {
            return Err(ConfigErrorKind::DuplicateItemId {
                item_id: item.item_id,
                first,
                position,
            });
        }
        if item.quantity < -1 {
            return Err(ConfigErrorKind::QuantityBelowMinusOne {
                position,
                item_id: item.item_id,
                quantity: item.quantity,
            });
        }
        let Ok(weight) = u32::try_from(item.probability) else {
            return Err(ConfigErrorKind::WeightOutOfRange {
                position,
                item_id: item.item_id,
                weight: item.probability,
            });
        };
        seen.insert(item.item_id.clone(), position);
        catalog.push(CatalogItem { item_id: item.item_id, quantity: item.quantity, weight });
    }
    Ok(catalog)
}

/// Validates `pools:` against the top-level `wal` and the cores this process may use
/// (`cores`; empty = pinning is not available here, so `core` is not checked).
fn validate_pools(
    raw: Vec<RawNamedPool>,
    wal: &RawWal,
    replication: Option<&RawReplication>,
    cores: &[usize],
) -> Result<Vec<PoolConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigErrorKind::NoPools.into());
    }
    let mut pools: Vec<PoolConfig> = Vec::with_capacity(raw.len());
    for (position, pool) in raw.into_iter().enumerate() {
        if !valid_pool_name(&pool.name) {
            return Err(ConfigErrorKind::BadPoolName { position, name: pool.name }.into());
        }
        if let Some(first) = pools.iter().position(|p| p.name == pool.name) {
            return Err(
                ConfigErrorKind::DuplicatePoolName { name: pool.name, first, position }.into()
            );
        }
        let core = match pool.core {
            None => None,
            Some(core) => match usize::try_from(core) {
                Ok(c) if cores.is_empty() || cores.contains(&c) => Some(c),
                _ => {
                    return Err(ConfigErrorKind::CoreUnavailable {
                        position,
                        name: pool.name,
                        core,
                        available: cores.to_vec(),
                    }
                    .into())
                }
            },
        };
        let name = pool.name;
        let in_pool = |error: ConfigErrorKind| ConfigErrorKind::InPool {
            position,
            name: name.clone(),
            error: Box::new(error),
        };
        let catalog = validate_catalog(pool.catalog).map_err(in_pool)?;
        let pool_wal = pool.wal.over(wal).validate().map_err(|mut e| {
            e.kind = in_pool(e.kind);
            e
        })?;
        let pool_replication = match pool.replication {
            Some(own) => Some(own.over(replication)),
            None => replication.cloned(),
        };
        let pool_replication =
            pool_replication.map(RawReplication::validate).transpose().map_err(|mut e| {
                e.kind = in_pool(e.kind);
                e
            })?;
        pools.push(PoolConfig {
            name,
            catalog,
            core,
            wal: pool_wal,
            replication: pool_replication,
        });
    }
    Ok(pools)
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let wal = self.wal.clone().validate()?;
        let replication = self.replication.clone().map(RawReplication::validate).transpose()?;
        let (catalog, pools, layout) = match (self.pool, self.pools) {
            (Some(pool), None) => {
                let catalog = validate_catalog(pool.catalog)?;
                let pools = vec![PoolConfig {
                    name: DEFAULT_POOL.to_owned(),
                    catalog: catalog.clone(),
                    core: None,
                    wal: wal.clone(),
                    replication: replication.clone(),
                }];
                (catalog, pools, DirLayout::Single)
            }
            (None, Some(raw)) => {
                let pools = validate_pools(
                    raw,
                    &self.wal,
                    self.replication.as_ref(),
                    crate::engine::available_cores(),
                )?;
                let catalog = pools.first().map(|p| p.catalog.clone()).unwrap_or_default();
                (catalog, pools, DirLayout::PerPool)
            }
            (Some(_), Some(_)) => return Err(ConfigErrorKind::BothPoolForms.into()),
            (None, None) => return Err(ConfigErrorKind::MissingSection("pool").into()),
        };

        let defaults = GrpcConfig::default();
        let grpc = GrpcConfig {
            enabled: self.grpc.enabled.unwrap_or(defaults.enabled),
            listen_address: self.grpc.listen_address.unwrap_or(defaults.listen_address),
        };
        if !valid_listen_address(&grpc.listen_address) {
            return Err(ConfigErrorKind::BadListenAddress(grpc.listen_address).into());
        }

        let metrics = match self.metrics {
            None => None,
            Some(m) => {
                let listen_address =
                    m.listen_address.unwrap_or_else(|| DEFAULT_METRICS_ADDRESS.to_owned());
                if !valid_listen_address(&listen_address) {
                    return Err(ConfigErrorKind::BadMetricsAddress(listen_address).into());
                }
                Some(MetricsConfig { listen_address })
            }
        };

        let i = self.idempotency;
        let keys = bounded("idempotency.keys", i.keys, KEYS_DEFAULT.into(), 1, KEYS_MAX.into())?;
        let hours =
            bounded("idempotency.hours", i.hours, HOURS_DEFAULT.into(), 1, HOURS_MAX.into())?;
        let idempotency = KeyWindow {
            // Validated: both are within u32.
            keys: u32::try_from(keys).unwrap_or(KEYS_MAX),
            hours: u32::try_from(hours).unwrap_or(HOURS_MAX),
        };

        Ok(Config {
            working_dir: self.working_dir.unwrap_or_else(|| PathBuf::from("data")),
            catalog,
            wal,
            grpc,
            metrics,
            idempotency,
            pools,
            layout,
            replication,
        })
    }
}

/// `host:port` with a numeric port; the host may be empty (Go's `":50051"`) or a bracketed
/// IPv6 address.
fn valid_listen_address(address: &str) -> bool {
    match address.rsplit_once(':') {
        Some((host, port)) => port.parse::<u16>().is_ok() && !host.contains(char::is_whitespace),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Go service's sample config, byte for byte (shared with the integration tests).
    const GO_SAMPLE: &str = include_str!("../tests/it/fixtures/go-sample-config.yaml");

    fn err(text: &str) -> ConfigError {
        Config::from_yaml_str(text).expect_err("should be refused")
    }

    fn with_item(item: &str) -> String {
        format!("pool:\n  catalog:\n    - {{ item_id: ok, quantity: 1, probability: 1 }}\n    - {item}\n")
    }

    #[test]
    fn go_sample_loads_unchanged() {
        let c = Config::from_yaml_str(GO_SAMPLE).unwrap();
        assert_eq!(c.working_dir, PathBuf::from("tmp/working_dir"));
        assert_eq!(c.catalog.len(), 6);
        assert_eq!(c.catalog[4].quantity, -1);
        assert_eq!(c.catalog[5].weight, 50);
        assert_eq!(c.wal.max_file_size_kb, 512);
        assert_eq!(c.wal.durability, Durability::Sync);
        assert_eq!(c.wal.max_commit_delay_us, 200);
        assert!(c.grpc.enabled);
        assert_eq!(c.grpc.listen_address, ":50051");
        let specs = c.catalog();
        assert_eq!(specs[0], ItemSpec::new("diamond", 100, 10));
        assert_eq!(specs[4].quantity, Quantity::Unlimited);
        let wal = c.wal_options();
        assert_eq!(wal.segment_size_bytes, 512 * 1024);
        assert_eq!(wal.dir, PathBuf::from("tmp/working_dir"));
        let e = c.engine_config();
        assert_eq!(e.ring_capacity, 512);
        assert_eq!(e.flush_after_n_draw, 200);
        assert_eq!(e.max_commit_delay, Duration::from_micros(200));
    }

    #[test]
    fn spec_example_with_new_keys_and_flow_items() {
        let c = Config::from_yaml_str(
            "working_dir: data\npool:\n  catalog:\n    - { item_id: diamond, quantity: 100, probability: 10 }\n    - { item_id: mud, quantity: -1, weight: 70 }\nwal:\n  durability: buffered\n  max_commit_delay_us: 50\n",
        )
        .unwrap();
        assert_eq!(c.catalog[1].weight, 70);
        assert_eq!(c.wal.durability, Durability::Buffered);
        assert_eq!(c.engine_config().max_commit_delay, Duration::from_micros(50));
        assert_eq!(c.wal.max_file_size_kb, DEFAULT_MAX_FILE_SIZE_KB);
    }

    #[test]
    fn default_is_valid_and_matches_go_sample_items() {
        let d = Config::default();
        let go = Config::from_yaml_str(GO_SAMPLE).unwrap();
        assert_eq!(d.catalog, go.catalog);
        assert_eq!(d.working_dir, PathBuf::from("data"));
    }

    #[test]
    fn empty_catalog() {
        assert_eq!(err("pool:\n  catalog: []\n").kind, ConfigErrorKind::EmptyCatalog);
        assert_eq!(err("pool: {}\n").kind, ConfigErrorKind::EmptyCatalog);
    }

    #[test]
    fn empty_item_id() {
        let e = err(&with_item("{ item_id: \"\", quantity: 1, probability: 1 }"));
        assert_eq!(e.kind, ConfigErrorKind::EmptyItemId { position: 1 });
        assert!(e.to_string().contains("item_id"));
    }

    #[test]
    fn duplicate_item_id() {
        let e = err(&with_item("{ item_id: ok, quantity: 1, probability: 1 }"));
        assert!(matches!(e.kind, ConfigErrorKind::DuplicateItemId { first: 0, position: 1, .. }));
        assert!(e.to_string().contains("\"ok\""), "{e}");
    }

    #[test]
    fn quantity_below_minus_one() {
        let e = err(&with_item("{ item_id: gold, quantity: -2, probability: 1 }"));
        assert!(matches!(e.kind, ConfigErrorKind::QuantityBelowMinusOne { quantity: -2, .. }));
        let s = e.to_string();
        assert!(s.contains("quantity") && s.contains("\"gold\""), "{s}");
    }

    #[test]
    fn negative_or_huge_weight() {
        let e = err(&with_item("{ item_id: gold, quantity: 1, probability: -5 }"));
        assert!(matches!(e.kind, ConfigErrorKind::WeightOutOfRange { weight: -5, .. }));
        assert!(e.to_string().contains("probability"));
        let e = err(&with_item("{ item_id: gold, quantity: 1, weight: 4294967296 }"));
        assert!(matches!(e.kind, ConfigErrorKind::WeightOutOfRange { .. }));
    }

    #[test]
    fn non_integer_quantity_and_weight_name_item_and_line() {
        let e = err(&with_item("{ item_id: gold, quantity: 1.5, probability: 1 }"));
        assert_eq!(e.line, Some(4));
        match &e.kind {
            ConfigErrorKind::NotAnInteger { position, item_id, field, found } => {
                assert_eq!(*position, 1);
                assert_eq!(item_id.as_deref(), Some("gold"));
                assert_eq!(*field, "quantity");
                assert!(found.contains("1.5"), "{found}");
            }
            other => panic!("{other:?}"),
        }
        let e = err(&with_item("{ item_id: gold, quantity: 1, probability: \"ten\" }"));
        assert!(matches!(e.kind, ConfigErrorKind::NotAnInteger { field: "probability", .. }));
        assert!(e.to_string().contains("\"gold\""), "{e}");
        let e = err(&with_item("{ item_id: gold, quantity: 1, weight: 2.5 }"));
        assert!(matches!(e.kind, ConfigErrorKind::NotAnInteger { field: "probability", .. }));
    }

    #[test]
    fn missing_pool_section() {
        assert_eq!(err("wal: {}\n").kind, ConfigErrorKind::MissingSection("pool"));
        assert!(err("wal: {}\n").to_string().contains("`pools`"), "names both forms");
    }

    #[test]
    fn not_yaml() {
        let e = err("pool: [\n");
        assert!(matches!(e.kind, ConfigErrorKind::NotYaml(_)));
        assert!(e.line.is_some());
        assert!(matches!(err("hello").kind, ConfigErrorKind::NotYaml(_)));
        assert!(matches!(err("- a\n- b\n").kind, ConfigErrorKind::NotYaml(_)));
    }

    #[test]
    fn empty_file() {
        assert_eq!(err("").kind, ConfigErrorKind::Empty);
        assert_eq!(err("# only a comment\n").kind, ConfigErrorKind::Empty);
    }

    #[test]
    fn missing_file_names_it() {
        let e = Config::load(Path::new("/nonexistent/rewardpool.yaml")).unwrap_err();
        assert!(matches!(e.kind, ConfigErrorKind::Read(_)));
        assert!(e.to_string().contains("/nonexistent/rewardpool.yaml"));
    }

    #[test]
    fn unknown_key_is_refused_with_line() {
        let e = err("pool:\n  catalog:\n    - { item_id: a, quantity: 1, probabilty: 3 }\n");
        assert!(matches!(e.kind, ConfigErrorKind::Structure(_)));
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().contains("probabilty"));
        let e = err(&format!(
            "{}  flush_after_n_draws: 3\n",
            with_item("{ item_id: b, quantity: 1, weight: 1 }")
                .replace("pool:", "wal:\n  durability: sync\npool:")
        ));
        assert!(e.to_string().contains("flush_after_n_draws"), "{e}");
    }

    #[test]
    fn wal_bounds() {
        let base = with_item("{ item_id: b, quantity: 1, weight: 1 }");
        for (key, bad) in [
            ("max_file_size_kb", "0"),
            ("max_file_size_kb", "99999999999"),
            ("max_request_buffer_size", "0"),
            ("max_request_buffer_size", "2000000"),
            ("flush_after_n_draw", "0"),
            ("flush_after_n_draw", "-3"),
            ("flush_after_n_draw", "5000000"),
            ("max_commit_delay_us", "60000000"),
        ] {
            let e = err(&format!("{base}wal:\n  {key}: {bad}\n"));
            assert!(matches!(e.kind, ConfigErrorKind::OutOfRange { .. }), "{key}={bad}: {e}");
            assert!(e.to_string().contains(&format!("wal.{key}")), "{e}");
        }
    }

    #[test]
    fn idempotency_window() {
        let base = with_item("{ item_id: b, quantity: 1, weight: 1 }");
        let config = Config::from_yaml_str(&base).unwrap();
        assert_eq!(config.idempotency, KeyWindow { keys: 1 << 20, hours: 24 });
        assert_eq!(config.engine_config().idempotency, config.idempotency);
        let text = format!("{base}idempotency:\n  keys: 1000\n  hours: 2\n");
        let config = Config::from_yaml_str(&text).unwrap();
        assert_eq!(config.engine_config().idempotency, KeyWindow { keys: 1000, hours: 2 });
        for (key, bad) in [("keys", "0"), ("keys", "16777217"), ("hours", "0"), ("hours", "-1")] {
            let e = err(&format!("{base}idempotency:\n  {key}: {bad}\n"));
            assert!(matches!(e.kind, ConfigErrorKind::OutOfRange { .. }), "{key}={bad}: {e}");
            assert!(e.to_string().contains(&format!("idempotency.{key}")), "{e}");
        }
        let e = err(&format!("{base}idempotency:\n  key: 5\n"));
        assert!(e.to_string().contains("key"), "{e}");
    }

    /// A group never spans segments, so the largest group must fit in one.
    #[test]
    fn a_group_larger_than_a_segment_is_refused() {
        let base = with_item("{ item_id: b, quantity: 1, weight: 1 }");
        let e = err(&format!("{base}wal:\n  max_file_size_kb: 16\n  flush_after_n_draw: 1000\n"));
        assert!(matches!(e.kind, ConfigErrorKind::OutOfRange { max: 491, .. }), "{e}");
        assert!(e.to_string().contains("wal.flush_after_n_draw"), "{e}");
        let ok = format!("{base}wal:\n  max_file_size_kb: 16\n  flush_after_n_draw: 491\n");
        assert!(Config::from_yaml_str(&ok).is_ok());
        let memory = format!(
            "{base}wal:\n  max_file_size_kb: 16\n  flush_after_n_draw: 1000\n  durability: memory\n"
        );
        assert!(Config::from_yaml_str(&memory).is_ok(), "no log, no segment to fit in");
    }

    #[test]
    fn durability_and_formatter() {
        let base = with_item("{ item_id: b, quantity: 1, weight: 1 }");
        for (mode, want) in [
            ("memory", Durability::Memory),
            ("buffered", Durability::Buffered),
            ("sync", Durability::Sync),
        ] {
            let c = Config::from_yaml_str(&format!("{base}wal:\n  durability: {mode}\n")).unwrap();
            assert_eq!(c.wal.durability, want);
            assert_eq!(c.wal_options().durability, want);
        }
        let e = err(&format!("{base}wal:\n  durability: fast\n"));
        assert_eq!(e.kind, ConfigErrorKind::UnknownDurability("fast".into()));
        let e = err(&format!("{base}wal:\n  formatter: xml\n"));
        assert_eq!(e.kind, ConfigErrorKind::UnknownFormatter("xml".into()));
    }

    #[test]
    fn listen_address() {
        let base = with_item("{ item_id: b, quantity: 1, weight: 1 }");
        for ok in [":50051", "0.0.0.0:1", "[::1]:50051", "localhost:80"] {
            Config::from_yaml_str(&format!("{base}grpc:\n  listen_address: \"{ok}\"\n")).unwrap();
        }
        for bad in ["50051", "host:", "host:99999"] {
            let e = err(&format!("{base}grpc:\n  listen_address: \"{bad}\"\n"));
            assert!(matches!(e.kind, ConfigErrorKind::BadListenAddress(_)), "{bad}");
        }
    }

    #[test]
    fn metrics_section_is_optional_and_checked_like_grpc() {
        let base = with_item("{ item_id: b, quantity: 1, weight: 1 }");
        assert_eq!(Config::from_yaml_str(&base).unwrap().metrics, None, "no section, no server");
        assert_eq!(Config::from_yaml_str(GO_SAMPLE).unwrap().metrics, None);
        let c = Config::from_yaml_str(&format!("{base}metrics: {{}}\n")).unwrap();
        let default = MetricsConfig { listen_address: DEFAULT_METRICS_ADDRESS.to_owned() };
        assert_eq!(c.metrics, Some(default));
        for ok in [":9464", "0.0.0.0:9100", "[::1]:9464"] {
            let c = Config::from_yaml_str(&format!("{base}metrics:\n  listen_address: \"{ok}\"\n"))
                .unwrap();
            assert_eq!(c.metrics.map(|m| m.listen_address).as_deref(), Some(ok));
        }
        for bad in ["9464", "host:", "host:70000"] {
            let e = err(&format!("{base}metrics:\n  listen_address: \"{bad}\"\n"));
            assert_eq!(e.kind, ConfigErrorKind::BadMetricsAddress(bad.to_owned()));
            assert!(e.to_string().contains("metrics.listen_address"), "{e}");
        }
        let e = err(&format!("{base}metrics:\n  port: 1\n"));
        assert!(e.to_string().contains("port"), "{e}");
    }

    const TWO_POOLS: &str = "working_dir: d\nwal:\n  durability: buffered\n  max_commit_delay_us: 7\npools:\n  - name: eu\n    catalog:\n      - { item_id: gold, quantity: 5, probability: 1 }\n  - name: us-2\n    core: 0\n    catalog:\n      - { item_id: mud, quantity: -1, probability: 3 }\n    wal:\n      durability: sync\n      max_file_size_kb: 1024\n";

    #[test]
    fn go_form_is_one_pool_named_default() {
        let c = Config::from_yaml_str(GO_SAMPLE).unwrap();
        assert_eq!(c.layout, DirLayout::Single);
        assert_eq!(c.pool_names().collect::<Vec<_>>(), [DEFAULT_POOL]);
        assert_eq!(c.pools[0].catalog, c.catalog);
        assert_eq!(c.pools[0].wal, c.wal);
        assert_eq!(c.pools[0].core, None);
        assert_eq!(Config::default().pools[0].catalog, Config::default().catalog);
    }

    #[test]
    fn pools_form_merges_each_pools_wal_over_the_top_level_key_by_key() {
        let c = Config::from_yaml_str(TWO_POOLS).unwrap();
        assert_eq!(c.layout, DirLayout::PerPool);
        assert_eq!(c.pool_names().collect::<Vec<_>>(), ["eu", "us-2"]);
        let (eu, us) = (&c.pools[0], &c.pools[1]);
        assert_eq!(eu.wal, c.wal, "no wal of its own: the top-level one");
        assert_eq!(eu.wal.durability, Durability::Buffered);
        assert_eq!(us.wal.durability, Durability::Sync, "its own key wins");
        assert_eq!(us.wal.max_file_size_kb, 1024);
        assert_eq!(us.wal.max_commit_delay_us, 7, "a key it does not set comes from the top");
        assert_eq!(us.core, Some(0));
        assert_eq!(c.catalog, eu.catalog, "the first pool's catalog");
        let view = c.for_pool(1, PathBuf::from("d/us-2")).unwrap();
        assert_eq!(view.working_dir, PathBuf::from("d/us-2"));
        assert_eq!(view.catalog, us.catalog);
        assert_eq!(view.wal, us.wal);
        assert_eq!(view.layout, DirLayout::Single);
        assert_eq!(view.wal_options().durability, Durability::Sync);
        assert_eq!(c.pool_index("us-2"), Some(1));
        assert!(c.for_pool(2, PathBuf::new()).is_none());
    }

    #[test]
    fn pool_errors_name_the_pool_and_the_field() {
        let e = err(&format!("{TWO_POOLS}pool:\n  catalog: []\n"));
        assert_eq!(e.kind, ConfigErrorKind::BothPoolForms);
        assert!(e.to_string().contains("both `pool` and `pools`"), "{e}");
        assert_eq!(err("pools: []\n").kind, ConfigErrorKind::NoPools);
        for bad in ["lock", "a/b", "..", ".hidden", "", "-x", "é", "a.b", &"x".repeat(65)] {
            let e = err(&TWO_POOLS.replace("name: eu", &format!("name: \"{bad}\"")));
            assert_eq!(e.kind, ConfigErrorKind::BadPoolName { position: 0, name: bad.into() });
            assert!(e.to_string().contains("pools[0].name"), "{e}");
            assert!(e.to_string().contains("letters, digits, '_' or '-'"), "{e}");
        }
        let e = err(&TWO_POOLS.replace("us-2", "eu"));
        assert_eq!(
            e.kind,
            ConfigErrorKind::DuplicatePoolName { name: "eu".into(), first: 0, position: 1 }
        );
        assert!(e.to_string().contains("pools[1].name \"eu\" is already used by pools[0]"));
        for core in ["4096", "-1"] {
            let e = err(&TWO_POOLS.replace("core: 0", &format!("core: {core}")));
            assert!(matches!(e.kind, ConfigErrorKind::CoreUnavailable { position: 1, .. }), "{e}");
            let s = e.to_string();
            assert!(s.contains("pools[1] (pool \"us-2\"): core is"), "{s}");
        }
        let e = err(&TWO_POOLS.replace("quantity: 5", "quantity: -5"));
        assert!(matches!(e.kind, ConfigErrorKind::InPool { position: 0, .. }), "{e}");
        let s = e.to_string();
        assert!(s.contains("pools[0] (pool \"eu\"): catalog[0] (item \"gold\")"), "{s}");
        let e = err(&TWO_POOLS.replace("max_file_size_kb: 1024", "max_file_size_kb: 1"));
        let s = e.to_string();
        assert!(s.contains("pools[1] (pool \"us-2\"): wal.max_file_size_kb is 1"), "{s}");
        let e = err(&TWO_POOLS.replace("durability: sync", "durability: fast"));
        assert!(e.to_string().contains("pools[1] (pool \"us-2\"): wal.durability"), "{e}");
        let e = err("pools:\n  - name: a\n    catalog: []\n");
        assert!(e.to_string().contains("pools[0] (pool \"a\"): catalog is empty"), "{e}");
        let e = err("pools:\n  - name: a\n    cores: 1\n");
        assert!(matches!(e.kind, ConfigErrorKind::Structure(_)), "{e}");
        assert!(e.to_string().contains("cores"), "{e}");
    }

    #[test]
    fn display_names_file_and_line() {
        let mut e = err(&with_item("{ item_id: gold, quantity: 1.5, probability: 1 }"));
        e.file = Some(PathBuf::from("c.yaml"));
        let s = e.to_string();
        assert!(s.starts_with("invalid configuration in c.yaml, line 4: pool.catalog[1] (item \"gold\"): quantity must be an integer"), "{s}");
    }
}
