//! The `rewardpool` command line: raw arguments (`args`) → a validated [`Config`] → one
//! function per subcommand, each in its own file.
//!
//! This is the binary side: the library (`rewardpool`) cannot import anything here, and the
//! command line's dependencies (clap, anyhow, plotters, ...) sit behind the `cli` feature,
//! which a library user turns off with `default-features = false`.
//!
//! Errors: every command returns `Failure`, which fixes the exit code (0 success, 1 a
//! failed check or run, 2 bad input) and prints one sentence plus context lines to stderr. A
//! closed stdout (`rewardpool wal dump | head`) ends the command quietly with success.

mod args;
mod bench;
mod catalog;
mod load;
mod machine;
mod output;
mod pool_cmd;
mod replica;
mod service;
mod signals;
mod tui;
mod wal_cmd;

use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;

use args::{Cli, Command, GlobalArgs};

use rewardpool::config::Config;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Parses the process arguments, runs the command, and returns its exit code.
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" with exit code 0; usage errors exit 2.
            let code = e.exit_code();
            let _ = e.print();
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    run(cli)
}

/// Runs a parsed command line and returns its exit code.
fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(a) => service::serve(&cli.global, &a),
        Command::Tui(a) => tui::run(&cli.global, &a),
        Command::Follow(a) => replica::follow::follow(&cli.global, &a),
        Command::Promote(a) => replica::promote::promote(&cli.global, &a),
        Command::Draw(a) => pool_cmd::draw(&cli.global, &a),
        Command::State(a) => pool_cmd::state(&cli.global, &a),
        Command::Update(a) => pool_cmd::update(&cli.global, &a),
        Command::Wal(w) => wal_cmd::run(&cli.global, w.pool.as_deref(), &w.command),
        Command::Bench(a) => bench::run(&cli.global, &a),
        Command::Load(a) => load::run(&a),
    };
    match result {
        Ok(()) | Err(Failure::StdoutClosed) => ExitCode::SUCCESS,
        Err(Failure::CheckFailed(e)) => report(&e, 1),
        Err(Failure::BadInput(e)) => report(&e, 2),
    }
}

fn report(e: &anyhow::Error, code: u8) -> ExitCode {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {e}");
    for cause in e.chain().skip(1) {
        let _ = writeln!(err, "  caused by: {cause}");
    }
    ExitCode::from(code)
}

/// How a command ended when it did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A check failed, or the run itself failed (exit 1).
    CheckFailed(anyhow::Error),
    /// Bad configuration, arguments or a log that refuses to open (exit 2).
    BadInput(anyhow::Error),
    /// Whoever read our stdout went away: success, quietly.
    StdoutClosed,
}

impl Failure {
    pub(crate) fn bad_input(e: impl Into<anyhow::Error>) -> Failure {
        Failure::BadInput(e.into())
    }

    pub(crate) fn failed(e: impl Into<anyhow::Error>) -> Failure {
        Failure::CheckFailed(e.into())
    }
}

pub(crate) type CmdResult = Result<(), Failure>;

/// The configuration the command runs with: `--config` or the built-in one, with
/// `--data-dir` overriding `working_dir`.
pub(crate) fn load_config(global: &GlobalArgs) -> Result<Config, Failure> {
    let mut config = match &global.config {
        Some(path) => Config::load(path).map_err(Failure::bad_input)?,
        None => Config::default(),
    };
    if let Some(dir) = &global.data_dir {
        config.working_dir.clone_from(dir);
    }
    Ok(config)
}

/// The configuration of one pool (`--pool NAME`, see [`Config::for_pool`]): its catalog,
/// its `wal`, and its directory as `working_dir` (`rewardpool::host::pool_dirs`). Without
/// `--pool`, the configuration's only pool. A Go-form configuration comes back unchanged.
///
/// Bad input (exit 2): an unknown pool, or none named when there are several (both list
/// the pools), or a data directory whose layout does not fit the configuration.
pub(crate) fn pool_config(global: &GlobalArgs, pool: Option<&str>) -> Result<Config, Failure> {
    let config = load_config(global)?;
    let names = || config.pool_names().collect::<Vec<_>>().join(", ");
    let index = match pool {
        Some(name) => config.pool_index(name).ok_or_else(|| {
            Failure::bad_input(anyhow::anyhow!(
                "unknown pool {name:?}: the configuration's pools are {}",
                names()
            ))
        })?,
        None if config.pools.len() == 1 => 0,
        None => {
            return Err(Failure::bad_input(anyhow::anyhow!(
                "the configuration has {} pools ({}): choose one with --pool NAME",
                config.pools.len(),
                names()
            )))
        }
    };
    let dirs = rewardpool::host::pool_dirs(&config).map_err(Failure::bad_input)?;
    let dir = dirs.get(index).cloned().unwrap_or_else(|| config.working_dir.clone());
    config.for_pool(index, dir).ok_or_else(|| {
        Failure::bad_input(anyhow::anyhow!("pool #{index} is not in the configuration"))
    })
}

/// The read-only commands (`state`, `wal ...`) refuse an explicit `--data-dir` that does not
/// exist: a typo must not read as "nothing there". (Without `--data-dir`, an absent
/// `working_dir` keeps its meaning: `state` shows the catalog, `wal` has nothing to do.)
pub(crate) fn require_data_dir(global: &GlobalArgs) -> CmdResult {
    match &global.data_dir {
        Some(dir) if !dir.is_dir() => Err(Failure::bad_input(anyhow::anyhow!(
            "no data directory {}: --data-dir must name an existing directory for this \
             read-only command",
            dir.display()
        ))),
        _ => Ok(()),
    }
}
