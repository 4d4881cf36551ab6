//! Raw command-line arguments (clap derive). Validation into library types happens in the
//! command modules; this file only says what the user may type.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A lock-free, thread-per-core reward-pool engine with a write-ahead log.
///
/// Every draw is acknowledged only after its outcome is in the log (under the configured
/// durability). Exit codes: 0 success, 1 a failed check or run, 2 bad input.
#[derive(Debug, Parser)]
#[command(name = "rewardpool", version, about, long_about = None)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--config` and `--data-dir`, accepted before or after the subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// YAML configuration file (default: a built-in six-item catalog, data in ./data).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory; overrides `working_dir` from the configuration.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The subcommands (SPEC §7).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: engine, periodic snapshots, gRPC if enabled.
    Run,
    /// Perform durable draws and print each outcome once its group is committed.
    Draw(DrawArgs),
    /// Print the pool's state (read-only).
    State(StateArgs),
    /// Set an item's quantity and/or weight (adds the item if new; then both are required).
    Update(UpdateArgs),
    /// Inspect, verify or repair the write-ahead log.
    #[command(subcommand)]
    Wal(WalCommand),
    /// End-to-end in-process benchmark: throughput and HDR latency percentiles.
    Bench(BenchArgs),
    /// The terminal dashboard.
    Tui,
}

/// `draw`.
#[derive(Debug, Args)]
pub struct DrawArgs {
    /// Number of draws.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// One JSON object per line: {"request_id":7,"item":"gold"} ("item":null when empty).
    #[arg(long)]
    pub json: bool,
}

/// `state`.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// {"last_request_id":N,"items":[{"item_id":..,"quantity":..,"weight":..}]}.
    #[arg(long)]
    pub json: bool,
}

/// `update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The item's id.
    #[arg(long, value_name = "ID")]
    pub item: String,
    /// New quantity (-1 = unlimited).
    #[arg(long, allow_negative_numbers = true, value_name = "Q")]
    pub quantity: Option<i64>,
    /// New integer weight.
    #[arg(long, value_name = "W")]
    pub weight: Option<u32>,
}

/// `wal ...`.
#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// One line per frame recovery accepts (up to the last commit).
    Dump {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Also print the torn tail (marked "torn":true).
        #[arg(long)]
        all: bool,
    },
    /// Check every header, frame checksum, sequence and snapshot hash (exit 1 if damaged).
    Verify,
    /// Truncate the log at the first damage, after saying what will be dropped.
    Repair,
    /// Per-item draw counts, observed vs configured share, chi-square p-value.
    Stats {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Durability modes as the command line spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// Acknowledge after selection; no log.
    Memory,
    /// Acknowledge once the frame is in the mapped segment.
    Buffered,
    /// Acknowledge once the group is synced to the device.
    Sync,
}

/// `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Total draws over all producers.
    #[arg(long, default_value_t = 10_000_000)]
    pub draws: u64,
    /// Catalog size: K unlimited items with weights 1..=K.
    #[arg(long, default_value_t = 100)]
    pub items: u32,
    /// Producer threads, each with its own client (pinned off the engine's core when possible).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Durability mode. Default memory, so it runs anywhere; buffered and sync use a fresh
    /// directory under --data-dir (default ./bench-data), removed afterwards.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Memory)]
    pub durability: DurabilityArg,
    /// Most draws per group commit (flush_after_n_draw).
    #[arg(long, default_value_t = 200)]
    pub group: u32,
    /// Open loop: offered load in draws/s over all producers; latency is measured from each
    /// request's intended send time (no coordinated omission). Default: closed loop.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Requests outstanding per producer.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Fixed generator seed (default: from the operating system).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the latency percentile distribution (.hgrm-style text) to FILE.
    #[arg(long, value_name = "FILE")]
    pub hist_out: Option<PathBuf>,
    /// Draw latency by percentile as an SVG plot.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}
