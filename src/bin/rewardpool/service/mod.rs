//! `run` (the service) and `tui` (the dashboard). Not built yet: each prints why and exits 2.

mod http;
mod metrics;
pub(crate) mod proto;

use super::args::GlobalArgs;
use super::{load_config, CmdResult, Failure};

/// `rewardpool run`: engine, periodic snapshots, gRPC if enabled; stops on SIGINT/SIGTERM.
pub(crate) fn run(global: &GlobalArgs) -> CmdResult {
    let _config = load_config(global)?;
    Err(not_available("the service (engine, snapshots, gRPC) is a later issue"))
}

/// `rewardpool tui`: the terminal dashboard.
pub(crate) fn tui(global: &GlobalArgs) -> CmdResult {
    let _config = load_config(global)?;
    Err(not_available("the terminal dashboard is a later issue"))
}

pub(crate) fn not_available(reason: &str) -> Failure {
    Failure::bad_input(anyhow::anyhow!("not available yet: {reason}"))
}
