//! The host: the composition root. It maps pool names to running engines, opening each one
//! (`open`: recover → open the journal → start the engine) in its own directory
//! ([`pool_dirs`]) and placing their threads on cores (`plan`).
//!
//! A caller resolves a pool's name once ([`Host::pool`], [`Host::index`]) and keeps the
//! `&Engine` (or a client of it): nothing looks a name up per draw. Pools share nothing but
//! the process: each has its own core thread, log, lock and helpers, so one pool's failure
//! (a damaged log at open, a full disk later) leaves the others serving.

mod open;
mod plan;

use std::path::{Path, PathBuf};

pub use open::{
    open_engine, open_engine_on, open_journal, open_journal_seeded, read_state, read_state_on,
    Durability, OpenError, WalOptions,
};
pub use plan::{plan_cores, plan_cores_fixed, Placement};

pub use crate::config::DEFAULT_POOL;
use crate::config::{Config, DirLayout};
use crate::engine::{CorePin, Engine, EngineError};
use crate::layout::{classify, FileKind};
use crate::pool::PoolState;

/// Running engines by pool name.
#[derive(Debug)]
pub struct Host {
    /// In configuration order; few, so a list beats a map.
    pools: Vec<(String, Engine)>,
}

/// A pool's position in its [`Host`] (resolved once from its name by [`Host::index`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolIndex(pub usize);

impl Host {
    /// Opens every pool of `config`, each in its directory ([`pool_dirs`]) with its core
    /// thread and helpers placed by the core plan ([`plan_cores_fixed`] over the cores this
    /// process may use, highest first, since callers usually run on the low ones). All or
    /// nothing: when a pool cannot be opened, the pools already opened are shut down and
    /// the error names the pool ([`OpenError::InPool`]). [`Host::open_each`] opens what it
    /// can instead.
    ///
    /// # Errors
    /// A directory layout that cannot be resolved ([`pool_dirs`]), or the first pool that
    /// cannot be opened (as [`open_engine`]).
    pub fn open(config: &Config) -> Result<Host, OpenError> {
        let (host, mut failed) = Host::open_each(config)?;
        if failed.is_empty() {
            return Ok(host);
        }
        let _ = host.shutdown();
        let (pool, error) = failed.swap_remove(0);
        Err(OpenError::InPool { pool, error: Box::new(error) })
    }

    /// Opens every pool of `config` that can be opened (as [`Host::open`]); returns the host
    /// of those and, for each of the others, its name and why it could not be opened. One
    /// pool's damaged log does not keep the others from serving.
    ///
    /// # Errors
    /// A directory layout that cannot be resolved ([`pool_dirs`]): then nothing is opened.
    pub fn open_each(config: &Config) -> Result<(Host, Vec<(String, OpenError)>), OpenError> {
        Host::open_each_of(config, |_| true)
    }

    /// Opens the pools of `config` whose name `open` accepts (as [`Host::open`]; the others'
    /// directories are left alone: a standby server replays them itself). Directories and
    /// cores are resolved as for the whole configuration.
    ///
    /// # Errors
    /// As [`Host::open`].
    pub fn open_only(config: &Config, open: impl Fn(&str) -> bool) -> Result<Host, OpenError> {
        let (host, mut failed) = Host::open_each_of(config, open)?;
        if failed.is_empty() {
            return Ok(host);
        }
        let _ = host.shutdown();
        let (pool, error) = failed.swap_remove(0);
        Err(OpenError::InPool { pool, error: Box::new(error) })
    }

    fn open_each_of(
        config: &Config,
        open: impl Fn(&str) -> bool,
    ) -> Result<(Host, Vec<(String, OpenError)>), OpenError> {
        let dirs = pool_dirs(config)?;
        let mut cores: Vec<usize> = crate::engine::available_cores().to_vec();
        cores.reverse();
        let fixed: Vec<Option<usize>> = config.pools.iter().map(|p| p.core).collect();
        let plan = plan_cores_fixed(&fixed, &cores);
        let mut pools = Vec::with_capacity(config.pools.len());
        let mut failed = Vec::new();
        for (index, dir) in dirs.into_iter().enumerate() {
            let name = config.pools[index].name.clone();
            if !open(&name) {
                continue;
            }
            match open_pool(config, index, dir, plan.get(index).copied()) {
                Ok(engine) => pools.push((name, engine)),
                Err(e) => failed.push((name, e)),
            }
        }
        Ok((Host { pools }, failed))
    }

    /// The engine of pool `name`, if the host has it. Resolve once, keep the reference.
    #[must_use]
    pub fn pool(&self, name: &str) -> Option<&Engine> {
        self.pools.iter().find(|(n, _)| n == name).map(|(_, e)| e)
    }

    /// The position of pool `name`, if the host has it ([`Host::engine`] takes it).
    #[must_use]
    pub fn index(&self, name: &str) -> Option<PoolIndex> {
        self.pools.iter().position(|(n, _)| n == name).map(PoolIndex)
    }

    /// The engine at `index` (from [`Host::index`] on this host).
    #[must_use]
    pub fn engine(&self, index: PoolIndex) -> Option<&Engine> {
        self.pools.get(index.0).map(|(_, e)| e)
    }

    /// The pools' names, in the order they were opened.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pools.iter().map(|(n, _)| n.as_str())
    }

    /// Every pool: name and engine, in the order they were opened.
    pub fn engines(&self) -> impl Iterator<Item = (&str, &Engine)> {
        self.pools.iter().map(|(n, e)| (n.as_str(), e))
    }

    /// Shuts every engine down (see [`Engine::shutdown`]), in order, whatever the others'
    /// outcome; returns each pool's final state or error.
    #[must_use = "a failed shutdown is reported here"]
    pub fn shutdown(self) -> Vec<(String, Result<PoolState, EngineError>)> {
        self.pools.into_iter().map(|(name, engine)| (name, engine.shutdown())).collect()
    }
}

/// Opens pool `index` of `config` in `dir`, its core thread on `placement` (`None`: the
/// engine's own choice).
fn open_pool(
    config: &Config,
    index: usize,
    dir: PathBuf,
    placement: Option<Placement>,
) -> Result<Engine, OpenError> {
    let fixed = config.pools.get(index).and_then(|p| p.core);
    let Some(view) = config.for_pool(index, dir) else {
        return Err(OpenError::Io {
            context: format!("opening pool #{index}"),
            source: std::io::ErrorKind::NotFound.into(),
        });
    };
    let mut engine = view.engine_config();
    match (placement, fixed) {
        (Some(p), _) => {
            engine.core = CorePin::Core(p.core);
            engine.helper_core = p.helpers;
        }
        (None, Some(core)) => engine.core = CorePin::Core(core),
        (None, None) => {}
    }
    open_engine(&view.catalog(), &view.wal_options(), engine, None)
}

/// Each pool's data directory, in `config.pools` order.
///
/// - The Go form (`pool:`): its one pool, `default`, keeps its files directly in
///   `working_dir`, as every earlier release wrote them (nothing moves on upgrade).
/// - `pools:`: each pool in `working_dir/<name>/`. When `working_dir` already holds a
///   single-pool log (segments or snapshots directly in it: a Go-form directory), the pool
///   named `default` keeps it there, so turning a `pool:` file into a `pools:` file keeps the
///   data; with no pool named `default`, that log would be silently left out, so it is an
///   error ([`OpenError::FlatLogWithoutDefault`]), and so is a second log in
///   `working_dir/default/` ([`OpenError::TwoDefaultLogs`]).
///
/// Reads `working_dir`'s listing; creates nothing.
///
/// # Errors
/// As above, or a `working_dir` that exists but cannot be listed.
pub fn pool_dirs(config: &Config) -> Result<Vec<PathBuf>, OpenError> {
    let root = &config.working_dir;
    if config.layout == DirLayout::Single {
        return Ok(config.pools.iter().map(|_| root.clone()).collect());
    }
    let flat = holds_log(root)?;
    let has_default = config.pools.iter().any(|p| p.name == DEFAULT_POOL);
    if flat && !has_default {
        return Err(OpenError::FlatLogWithoutDefault {
            dir: root.display().to_string(),
            pools: config.pools.iter().map(|p| p.name.clone()).collect(),
        });
    }
    if flat && holds_log(&root.join(DEFAULT_POOL))? {
        return Err(OpenError::TwoDefaultLogs { dir: root.display().to_string() });
    }
    Ok(config
        .pools
        .iter()
        .map(|p| if flat && p.name == DEFAULT_POOL { root.clone() } else { root.join(&p.name) })
        .collect())
}

/// True when `dir` holds a segment or a snapshot directly (false when it does not exist).
fn holds_log(dir: &Path) -> Result<bool, OpenError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(OpenError::Io { context: format!("listing {}", dir.display()), source })
        }
    };
    Ok(entries.filter_map(Result::ok).any(|entry| {
        entry.file_name().to_str().is_some_and(|name| {
            matches!(classify(name), FileKind::Segment(_) | FileKind::Snapshot(_))
        })
    }))
}

/// Recovers the first pool of `config` (the Go form's only one) in its directory
/// ([`pool_dirs`]) and starts an engine on it, with the durability, segment size, ring
/// capacity and group bounds of that pool, seeded by the operating system (what
/// [`crate::open`] does). A host of every pool is [`Host::open`].
///
/// # Errors
/// As [`open_engine`], or a layout [`pool_dirs`] refuses.
pub fn open_config(config: &Config) -> Result<Engine, OpenError> {
    let dir = pool_dirs(config)?.into_iter().next().unwrap_or_else(|| config.working_dir.clone());
    let view = config.for_pool(0, dir).unwrap_or_else(|| config.clone());
    open_engine(&view.catalog(), &view.wal_options(), view.engine_config(), None)
}
