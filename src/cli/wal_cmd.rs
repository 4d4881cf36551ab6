//! `wal dump | verify | repair | stats`: read-only inspection and explicit repair of the log.
//! The library side (segment reader, verifier) is being written; each subcommand is one
//! function here, to be filled in.

use super::args::{GlobalArgs, WalCommand};
use super::service::not_available;
use super::{load_config, CmdResult};
use crate::config::Config;

pub(crate) fn run(global: &GlobalArgs, command: &WalCommand) -> CmdResult {
    let config = load_config(global)?;
    match *command {
        WalCommand::Dump { json, all } => dump(&config, json, all),
        WalCommand::Verify => verify(&config),
        WalCommand::Repair => repair(&config),
        WalCommand::Stats { json } => stats(&config, json),
    }
}

/// One line per frame recovery accepts; `all` adds the torn tail with `"torn":true`.
fn dump(_config: &Config, _json: bool, _all: bool) -> CmdResult {
    Err(not_available("`wal dump` needs the durable log reader"))
}

/// Exit 0 when clean, 1 when damaged (file, offset, reason).
fn verify(_config: &Config) -> CmdResult {
    Err(not_available("`wal verify` needs the durable log reader"))
}

/// Truncate at the first damage after saying how many frames are dropped.
fn repair(_config: &Config) -> CmdResult {
    Err(not_available("`wal repair` needs the durable log reader"))
}

/// Per-item counts, observed vs configured share, chi-square p-value.
fn stats(_config: &Config, _json: bool) -> CmdResult {
    Err(not_available("`wal stats` needs the durable log reader"))
}
