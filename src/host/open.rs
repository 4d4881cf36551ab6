//! Opening one pool's data directory: recover (or start fresh from the catalog), open the
//! journal that matches the durability mode, then start an engine on it. The host calls this
//! once per pool; the command line and the tests call it directly (also as `store::*`).

use std::fmt;
use std::sync::Arc;

use crate::engine::{Engine, EngineConfig, EngineError};
use crate::journal::{JournalError, MemoryJournal};
use crate::pool::{ItemSpec, Pool, PoolError, PoolState, Rng};
use crate::recovery::{self, Recovered, RecoveryError};
use crate::storage::{DirLock, OsStorage, Storage};
use crate::wal::header::{CloseReason, SegmentHeader};
use crate::wal::segment::close_file;
use crate::wal::{SeedSource, WalJournal, WalResume, WalStart};

/// The durability modes belong to the log (`wal::durability` holds their table); the
/// command line, the configuration and the tests name them from here too.
pub use crate::wal::{Durability, WalOptions};

/// Why a data directory could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The catalog is invalid.
    Pool(PoolError),
    /// The engine could not start.
    Engine(EngineError),
    /// The operating system could not seed the generator.
    Entropy(String),
    /// Another process has the data directory open.
    Locked {
        /// The directory.
        dir: String,
    },
    /// The log or a snapshot is damaged, or could not be read.
    Recovery(RecoveryError),
    /// The journal could not start (creating or installing the first segment).
    Journal(JournalError),
    /// A `pools:` configuration whose `working_dir` holds a single-pool log (segments
    /// directly in it, as the Go form writes them) but no pool named `default` to own it.
    FlatLogWithoutDefault {
        /// `working_dir`.
        dir: String,
        /// The configuration's pools.
        pools: Vec<String>,
    },
    /// `working_dir` holds a single-pool log and `working_dir/default/` holds another: which
    /// one is pool `default` is not guessed.
    TwoDefaultLogs {
        /// `working_dir`.
        dir: String,
    },
    /// One pool of a host could not be opened.
    InPool {
        /// The pool's name.
        pool: String,
        /// Why.
        error: Box<OpenError>,
    },
    /// Any other I/O error, with what was being done.
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Pool(e) => write!(f, "invalid catalog: {e}"),
            OpenError::Engine(e) => e.fmt(f),
            OpenError::Entropy(e) => write!(f, "cannot seed the random generator: {e}"),
            OpenError::Locked { dir } => {
                write!(
                    f,
                    "data directory {dir} is in use by another process (its lock file is held)"
                )
            }
            OpenError::Recovery(e) => e.fmt(f),
            OpenError::Journal(e) => write!(f, "cannot start the log: {e}"),
            OpenError::FlatLogWithoutDefault { dir, pools } => write!(
                f,
                "{dir} holds a single-pool log (segments directly in it, as a `pool:` \
                 configuration writes them) but the configuration's pools ({}) include none \
                 named \"default\": name one pool \"default\" to keep that log as its \
                 own, or move the files into {dir}/<name>/",
                pools.join(", ")
            ),
            OpenError::TwoDefaultLogs { dir } => write!(
                f,
                "{dir} holds a single-pool log and {dir}/default/ holds another: pool \
                 \"default\" can have only one (move one of them away)"
            ),
            OpenError::InPool { pool, error } => write!(f, "pool {pool:?}: {error}"),
            OpenError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for OpenError {}

impl OpenError {
    /// True when the data on disk (not the environment) is at fault: a damaged log.
    #[must_use]
    pub fn is_damage(&self) -> bool {
        match self {
            OpenError::InPool { error, .. } => error.is_damage(),
            e => matches!(e, OpenError::Recovery(RecoveryError::Damaged { .. })),
        }
    }
}

fn rng(seed: Option<u64>) -> Result<Rng, OpenError> {
    match seed {
        Some(seed) => Ok(Rng::from_seed(seed)),
        None => Rng::from_entropy().map_err(|e| OpenError::Entropy(e.to_string())),
    }
}

fn lock(storage: &dyn Storage, exclusive: bool) -> Result<Box<dyn DirLock>, OpenError> {
    storage.lock(exclusive).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            OpenError::Locked { dir: storage.describe("") }
        } else {
            OpenError::Io {
                context: format!("locking {}", storage.describe(crate::layout::LOCK_FILE)),
                source: e,
            }
        }
    })
}

/// Recovers the pool in `wal.dir` (or starts from `catalog` when the directory holds no log)
/// and starts an engine whose journal follows `wal.durability`. `seed` fixes the generator
/// (tests and benchmarks); `None` seeds it from the operating system.
///
/// # Errors
/// A damaged log, an invalid catalog, a locked directory, or an engine that cannot start.
pub fn open_engine(
    catalog: &[ItemSpec],
    wal: &WalOptions,
    engine: EngineConfig,
    seed: Option<u64>,
) -> Result<Engine, OpenError> {
    let Some(plan) = wal.durability.plan() else {
        let pool = Pool::new(catalog, rng(seed)?).map_err(OpenError::Pool)?;
        return Engine::start(pool, MemoryJournal::new(), engine).map_err(OpenError::Engine);
    };
    let storage = OsStorage::new(&wal.dir).map_err(|source| OpenError::Io {
        context: format!("creating data directory {}", wal.dir.display()),
        source,
    })?;
    let storage = storage.with_segment_writes(plan.segment_writes);
    open_engine_on(Arc::new(storage), catalog, wal, engine, seed)
}

/// [`open_engine`] on any storage (tests inject faults through `storage::FaultyStorage`).
/// `wal.dir` is ignored; `wal.durability` must not be `Memory`.
///
/// # Errors
/// As [`open_engine`].
pub fn open_engine_on(
    storage: Arc<dyn Storage>,
    catalog: &[ItemSpec],
    wal: &WalOptions,
    engine: EngineConfig,
    seed: Option<u64>,
) -> Result<Engine, OpenError> {
    let (pool, journal) = open_journal(storage, catalog, wal, seed)?;
    Engine::start(pool, journal, engine).map_err(OpenError::Engine)
}

/// Recovers and opens the durable journal without starting an engine.
///
/// # Errors
/// As [`open_engine`].
pub fn open_journal(
    storage: Arc<dyn Storage>,
    catalog: &[ItemSpec],
    wal: &WalOptions,
    seed: Option<u64>,
) -> Result<(Pool, WalJournal), OpenError> {
    let seeds = match seed {
        Some(n) => SeedSource::Fixed(n),
        None => SeedSource::Entropy,
    };
    open_journal_seeded(storage, catalog, wal, seeds)
}

/// [`open_journal`] with each new draw seed from `seeds` (`wal::frame`, "Seed frames"): a
/// replica's log, whose draws were made elsewhere, commits to none of its own
/// ([`SeedSource::None`]).
///
/// # Errors
/// As [`open_engine`].
pub fn open_journal_seeded(
    storage: Arc<dyn Storage>,
    catalog: &[ItemSpec],
    wal: &WalOptions,
    seeds: SeedSource,
) -> Result<(Pool, WalJournal), OpenError> {
    let dir_lock = lock(&*storage, true)?;
    let recovered = recovery::recover(&*storage, catalog).map_err(OpenError::Recovery)?;
    let resume = resume_point(&recovered, wal);
    for (name, header) in &recovered.close {
        if resume.is_some_and(|r| r.header.sequence == header.sequence) {
            // Appending resumes in it: it is reopened, not closed.
            continue;
        }
        // Open segments (a crash): close each at its last commit, which trims the torn
        // tail, before anything else is written.
        rewrite_header(&*storage, name, header, "closing")?;
    }
    for name in &recovered.temporaries {
        let _ = storage.remove(name);
    }
    // The journal gives the pool its segment's generator (a journal without seeds: the
    // pool only replays, and this one never draws).
    let mut pool =
        Pool::from_state(&recovered.state, Rng::from_seed(0)).map_err(OpenError::Pool)?;
    let start = WalStart {
        sequence: recovered.next_sequence,
        catalog_fingerprint: recovered.catalog_fingerprint,
        segment_size: wal.segment_size_bytes,
        retention_segments: wal.retention_segments as u64,
        held_segments_max: wal.held_segments_max as u64,
        durability: wal.durability,
        pool: wal.pool.clone(),
        seeds,
    };
    if let Some(resume) = &resume {
        let journal = WalJournal::resume(storage, dir_lock, &start, resume, &mut pool)
            .map_err(OpenError::Journal)?;
        return Ok((pool, journal));
    }
    let journal = WalJournal::create(Arc::clone(&storage), dir_lock, &start, &mut pool)
        .map_err(OpenError::Journal)?;
    // The segment before the new one ended the log (a shutdown, a recovery or a repair
    // closed it); now that its successor is installed, it says so (`CloseReason`): a
    // deleted newest segment is then detected as damage, never read as a shorter log.
    if let Some(newest) = &recovered.newest {
        let closed = recovered
            .close
            .iter()
            .find(|(_, h)| h.sequence == newest.header.sequence)
            .map_or(newest.header, |(_, h)| *h);
        if closed.close_reason != Some(CloseReason::Rotation) {
            let header =
                closed.closed(closed.end_offset, CloseReason::Rotation, closed.next_request_id);
            match rewrite_header(&*storage, &newest.name, &header, "re-marking") {
                // Retention (a window of one segment) already deleted it: nothing to mark.
                Err(OpenError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
    }
    Ok((pool, journal))
}

/// A restart continues in the newest segment (no new file) when it has the configured
/// size, at least an eighth of it is free, and no repair raised the request-id floor above
/// its last commit (a new segment carries that floor as its first id).
fn resume_point(recovered: &Recovered, wal: &WalOptions) -> Option<WalResume> {
    let scan = recovered.newest.as_ref()?;
    let header = scan.header;
    let free = header.segment_size.saturating_sub(scan.committed_end as u64);
    let resumable = header.segment_size == wal.segment_size_bytes
        && free >= header.segment_size / 8
        && recovery::next_request_id(scan) == scan.last_request_id + 1
        && header.close_reason.is_none_or(|r| !r.has_successor());
    resumable.then_some(WalResume { header, cursor: scan.committed_end })
}

/// Closes segment `name` with `header` (`wal::segment::close_file`; `doing` names it in
/// errors).
fn rewrite_header(
    storage: &dyn Storage,
    name: &str,
    header: &SegmentHeader,
    doing: &str,
) -> Result<(), OpenError> {
    close_file(storage, name, header).map_err(|source| OpenError::Io {
        context: format!("{doing} {}", storage.describe(name)),
        source,
    })
}

/// Reads the state of the pool in `wal.dir` without changing anything (the catalog's when
/// the directory holds no log).
///
/// # Errors
/// A damaged log, a directory in use by a writer, or an invalid catalog.
pub fn read_state(catalog: &[ItemSpec], wal: &WalOptions) -> Result<PoolState, OpenError> {
    let Ok(storage) = OsStorage::existing(&wal.dir) else {
        return Ok(Pool::new(catalog, Rng::from_seed(0)).map_err(OpenError::Pool)?.state());
    };
    read_state_on(&storage, catalog)
}

/// [`read_state`] on any storage.
///
/// # Errors
/// As [`read_state`].
pub fn read_state_on(storage: &dyn Storage, catalog: &[ItemSpec]) -> Result<PoolState, OpenError> {
    let _lock = lock(storage, false)?;
    Ok(recovery::recover(storage, catalog).map_err(OpenError::Recovery)?.state)
}
