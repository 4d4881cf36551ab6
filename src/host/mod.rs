//! The host: the composition root. It maps pool names to running engines, opening each one
//! (`open`: recover → open the journal → start the engine) and placing their threads on
//! cores (`plan`). For now a host holds one pool, named [`DEFAULT_POOL`]; several pools (and
//! their configuration) come later.

mod open;
mod plan;

pub use open::{
    open_engine, open_engine_on, open_journal, read_state, read_state_on, Durability, OpenError,
    WalOptions,
};
pub use plan::{plan_cores, Placement};

use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::pool::PoolState;

/// The name of the one pool a [`Config`] describes today.
pub const DEFAULT_POOL: &str = "default";

/// Running engines by pool name.
#[derive(Debug)]
pub struct Host {
    /// In the order they were opened; few, so a list beats a map.
    pools: Vec<(String, Engine)>,
}

impl Host {
    /// Opens the pool `config` describes (named [`DEFAULT_POOL`]): recovers its data
    /// directory (or starts from the catalog) and starts its engine, as [`open_config`].
    ///
    /// # Errors
    /// As [`open_engine`].
    pub fn open(config: &Config) -> Result<Host, OpenError> {
        let engine = open_config(config)?;
        Ok(Host { pools: vec![(DEFAULT_POOL.to_owned(), engine)] })
    }

    /// The engine of pool `name`, if the host has it.
    #[must_use]
    pub fn pool(&self, name: &str) -> Option<&Engine> {
        self.pools.iter().find(|(n, _)| n == name).map(|(_, e)| e)
    }

    /// The pools' names, in the order they were opened.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pools.iter().map(|(n, _)| n.as_str())
    }

    /// Shuts every engine down (see [`Engine::shutdown`]), in order; returns each pool's
    /// final state or error.
    #[must_use = "a failed shutdown is reported here"]
    pub fn shutdown(self) -> Vec<(String, Result<PoolState, EngineError>)> {
        self.pools.into_iter().map(|(name, engine)| (name, engine.shutdown())).collect()
    }
}

/// Recovers `config`'s data directory and starts an engine on it, with the durability,
/// segment size, ring capacity and group bounds of `config`, seeded by the operating system
/// (what [`crate::open`] does).
///
/// # Errors
/// As [`open_engine`].
pub fn open_config(config: &Config) -> Result<Engine, OpenError> {
    open_engine(&config.catalog(), &config.wal_options(), config.engine_config(), None)
}
