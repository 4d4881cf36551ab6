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
pub(crate) struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--config` and `--data-dir`, accepted before or after the subcommand.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// YAML configuration file (default: a built-in six-item catalog, data in ./data).
    #[arg(long, global = true, value_name = "FILE", allow_negative_numbers = true)]
    pub config: Option<PathBuf>,
    /// Data directory; overrides `working_dir` from the configuration. The read-only
    /// commands (`state`, `wal ...`) refuse one that does not exist.
    #[arg(long, global = true, value_name = "DIR", allow_negative_numbers = true)]
    pub data_dir: Option<PathBuf>,
}

/// The subcommands (SPEC §7).
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// The service: opens every pool of the configuration and serves the gRPC API on
    /// grpc.listen_address (or --listen) until SIGINT/SIGTERM; then answers every request in
    /// flight, writes each pool's final snapshot and exits 0.
    #[command(visible_alias = "run")]
    Serve(ServeArgs),
    /// Perform durable draws and print each outcome once its group is committed.
    Draw(DrawArgs),
    /// Print the pool's state (read-only): each item's quantity, weight and effective
    /// probability (its chance on the next draw given the stock now).
    State(StateArgs),
    /// Set an item's quantity and/or weight (a new item needs --add and both), or apply
    /// the configuration's catalog (--apply-catalog).
    Update(UpdateArgs),
    /// Inspect, verify or repair the write-ahead log.
    Wal(WalArgs),
    /// End-to-end in-process benchmark: throughput and HDR latency percentiles.
    Bench(BenchArgs),
    /// The terminal dashboard: attached to a server (--connect HOST:PORT), or on the data
    /// directory itself (--config FILE / --data-dir DIR; refused while a server holds it).
    Tui(TuiArgs),
    /// A standby: replays the pool's JetStream stream (the configuration's `replication`)
    /// into its own data directory (--data-dir), a normal log, until SIGINT/SIGTERM.
    Follow(FollowArgs),
    /// Take a followed pool over: catch up to the stream's end, take the pool's leader lease
    /// (a JetStream key-value bucket, compare-and-set), bump its epoch and fence the old
    /// primary; the data directory is then ready for `serve`.
    Promote(PromoteArgs),
    /// gRPC load generator against `serve` (the k6 script's replacement): Draw streams in a
    /// closed or open loop, HDR latency percentiles, status codes.
    #[command(long_about = LOAD_LONG_ABOUT)]
    Load(LoadArgs),
}

/// `tui`.
#[derive(Debug, Args)]
pub(crate) struct TuiArgs {
    /// Attach to a running `rewardpool serve` at HOST:PORT (GetState, ListPools, Watch,
    /// Draw, Update over gRPC). Without it, the dashboard opens the data directory itself
    /// (recovery first).
    #[arg(long, value_name = "HOST:PORT", allow_negative_numbers = true)]
    pub connect: Option<String>,
    /// Milliseconds between readings and redraws (10 to 60000).
    #[arg(long, value_name = "MS", default_value_t = 1000, allow_negative_numbers = true)]
    pub refresh_ms: u64,
}

/// `follow`.
#[derive(Debug, Args)]
pub(crate) struct FollowArgs {
    /// The pool to follow (required when the configuration has several).
    #[arg(long, value_name = "NAME", allow_negative_numbers = true)]
    pub pool: Option<String>,
    /// Stop once the stream's last message (as it is at start) is applied.
    #[arg(long)]
    pub until_caught_up: bool,
    /// Print the lag lines as JSON objects.
    #[arg(long)]
    pub json: bool,
}

/// `promote`.
#[derive(Debug, Args)]
pub(crate) struct PromoteArgs {
    /// The pool to take over (required when the configuration has several; with
    /// --connect, when the server has several).
    #[arg(long, value_name = "NAME", allow_negative_numbers = true)]
    pub pool: Option<String>,
    /// Promote the pool in place on a running `serve --standby` at HOST:PORT (its gRPC
    /// address; it then serves the pool as a primary, without a restart) instead of a data
    /// directory.
    #[arg(long, value_name = "HOST:PORT", allow_negative_numbers = true)]
    pub connect: Option<String>,
    /// Print the outcome as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `serve` (alias `run`).
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to serve gRPC on, host:port (":50051" = every interface; port 0 = any free
    /// port) [default: the configuration's grpc.listen_address]. Also serves when the
    /// configuration says grpc.enabled: false (without --listen, serve then refuses).
    /// The bound address is printed on stdout: "listening on 127.0.0.1:50051".
    #[arg(long, value_name = "ADDR", allow_negative_numbers = true)]
    pub listen: Option<String>,
    /// Address of the metrics server (/metrics, /healthz, /readyz), host:port (port 0 = any
    /// free port) [default: the configuration's metrics.listen_address; without a metrics
    /// section, no metrics server]. Its bound address is printed on stdout after the gRPC
    /// one: "metrics on 127.0.0.1:9464".
    #[arg(long, value_name = "ADDR", allow_negative_numbers = true)]
    pub metrics_listen: Option<String>,
    /// Print the bound addresses as one JSON line:
    /// {"listening":"127.0.0.1:50051","metrics":"127.0.0.1:9464","pools":[..]} ("metrics" is
    /// null without a metrics server).
    #[arg(long)]
    pub json: bool,
    /// Take the replicated pools over before serving (as `rewardpool promote` does for
    /// each: catch up with the stream, take the lease, bump the epoch, fence the old
    /// primary); the data directories are the standbys'.
    #[arg(long)]
    pub takeover: bool,
    /// Run every pool with a replication section as a standby: follow its stream into the
    /// pool's directory (as `rewardpool follow`) instead of serving it. Its draws and
    /// updates are refused (FAILED_PRECONDITION); ListPools, GetState and Watch answer from
    /// the replica, with its lag (also in /metrics). Pools without replication are served
    /// as usual. To promote a pool in place: `rewardpool promote --connect HOST:PORT --pool
    /// P` (or stop this server, then `serve --takeover` with the same configuration).
    #[arg(long, conflicts_with = "takeover")]
    pub standby: bool,
    /// Gateway threads per pool, each owning one engine client (1 to 16).
    #[arg(long, value_name = "N", default_value_t = 1, allow_negative_numbers = true)]
    pub gateways: usize,
    /// Requests one Draw stream may have in flight (read ahead, answered in order); a stream
    /// with this many unanswered stops reading, which pushes back on its client (1 to 65536).
    #[arg(long, value_name = "N", default_value_t = 256, allow_negative_numbers = true)]
    pub stream_window: usize,
    /// How long a request may wait for room in a full gateway queue before it is refused
    /// with RESOURCE_EXHAUSTED, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5_000, allow_negative_numbers = true)]
    pub queue_timeout_ms: u64,
    /// After SIGINT/SIGTERM, how long the open streams get to take their answers (a client
    /// that stops reading holds its stream open), in milliseconds; then they are cut and the
    /// pools shut down. Keep it below the supervisor's kill deadline (Kubernetes: 30 s).
    #[arg(long, value_name = "MS", default_value_t = 20_000, allow_negative_numbers = true)]
    pub drain_timeout_ms: u64,
}

/// `--pool NAME` on `draw`, `state` and `update`.
#[derive(Debug, Args)]
pub(crate) struct PoolArg {
    /// The pool to act on, by its name in the configuration's `pools:` (the Go form's one
    /// pool is "default"). Required when the configuration has several pools.
    #[arg(long, value_name = "NAME", allow_negative_numbers = true)]
    pub pool: Option<String>,
}

/// `draw`.
#[derive(Debug, Args)]
pub(crate) struct DrawArgs {
    /// Which pool.
    #[command(flatten)]
    pub pool: PoolArg,
    /// Number of requests: draws, or pulls with --pull (0 does nothing: the data directory
    /// is not opened).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub count: u64,
    /// Draws per request: each request is a pull of N draws, committed whole in one group
    /// (1 to 1000; less with a small wal.max_file_size_kb). One line per draw, as without.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub pull: Option<u32>,
    /// Idempotency key of the request (exactly 32 hex digits, not all zeros; needs --count
    /// 1): run again with the same key and the same --pull, the original outcomes are
    /// printed again (with "replayed":true in --json) and nothing is drawn.
    #[arg(long, value_name = "HEX", value_parser = parse_key, allow_negative_numbers = true)]
    pub key: Option<u128>,
    /// One JSON object per line: {"request_id":7,"item":"gold"} ("item":null when empty);
    /// with --key, also "replayed":true or false.
    #[arg(long)]
    pub json: bool,
}

/// An idempotency key: exactly 32 hex digits (128 bits), not all zeros (0 means no key).
pub(crate) fn parse_key(text: &str) -> Result<u128, String> {
    let digits = text.chars().count();
    if digits != 32 || !text.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "an idempotency key is exactly 32 hex digits (0-9, a-f), got {digits} characters"
        ));
    }
    match u128::from_str_radix(text, 16) {
        Ok(0) => Err("an idempotency key of all zeros means no key: use another".to_owned()),
        Ok(key) => Ok(key),
        Err(e) => Err(format!("not a hex number: {e}")),
    }
}

/// `state`.
#[derive(Debug, Args)]
pub(crate) struct StateArgs {
    /// Which pool.
    #[command(flatten)]
    pub pool: PoolArg,
    /// {"last_request_id":N,"items":[{"item_id":..,"quantity":..,"weight":..,
    /// "probability":..}]}: probability is weight / the sum of the weights of the items with
    /// units left (or unlimited), 0 for an exhausted item.
    #[arg(long)]
    pub json: bool,
}

/// `update`.
#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// Which pool.
    #[command(flatten)]
    pub pool: PoolArg,
    /// The item's id.
    #[arg(
        long,
        value_name = "ID",
        allow_negative_numbers = true,
        required_unless_present = "apply_catalog"
    )]
    pub item: Option<String>,
    /// New quantity (-1 = unlimited).
    #[arg(long, allow_negative_numbers = true, value_name = "Q")]
    pub quantity: Option<i64>,
    /// New integer weight (0 or more).
    #[arg(long, allow_negative_numbers = true, value_name = "W")]
    pub weight: Option<i64>,
    /// The item is new: add it (needs both --quantity and --weight). Without it an unknown
    /// id is refused, so a typo never creates an item.
    #[arg(long)]
    pub add: bool,
    /// Make the pool's catalog equal to the configuration's: log one update per
    /// difference (new items added, items missing from the configuration set to quantity
    /// 0, weights and quantities set to the configuration's).
    #[arg(long, conflicts_with_all = ["item", "quantity", "weight", "add"])]
    pub apply_catalog: bool,
}

/// `wal [--pool NAME] ...`.
#[derive(Debug, Args)]
pub(crate) struct WalArgs {
    /// The pool whose log to read or repair, by its name in the configuration's `pools:`
    /// (the Go form's one pool is "default"). Required when the configuration has several
    /// pools; accepted before or after the subcommand.
    #[arg(long, global = true, value_name = "NAME", allow_negative_numbers = true)]
    pub pool: Option<String>,
    /// What to do with the log.
    #[command(subcommand)]
    pub command: WalCommand,
}

/// `wal ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum WalCommand {
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
    /// The odds audit: per-item draw counts, observed share vs the share the effective odds
    /// promised (weight / available weight at each draw, given the stock then), chi-square
    /// p-value (exit 1 when p < 0.001). Over the retained segments, or --from/--to.
    Stats {
        /// One JSON object.
        #[arg(long)]
        json: bool,
        /// First segment to audit (the NNNNNN of wal.NNNNNN; default: the oldest retained).
        /// The pool state at its start comes from its own snapshot.
        #[arg(long, value_name = "SEG", allow_negative_numbers = true)]
        from: Option<u64>,
        /// Last segment to audit, inclusive (default: the newest).
        #[arg(long, value_name = "SEG", allow_negative_numbers = true)]
        to: Option<u64>,
    },
    /// Check every revealed seed against its commitment and recompute every draw from it
    /// (exit 1 on any mismatch).
    Audit {
        /// First segment (sequence number) to audit [default: the oldest retained].
        #[arg(long, value_name = "SEG", allow_negative_numbers = true)]
        from: Option<u64>,
        /// Last segment (sequence number) to audit [default: the newest].
        #[arg(long, value_name = "SEG", allow_negative_numbers = true)]
        to: Option<u64>,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List the seed commitments: segment, first request id, commitment, and the seed once
    /// revealed (else pending or unrevealed).
    Commitments {
        /// One JSON object per run.
        #[arg(long)]
        json: bool,
    },
}

/// Durability modes as the command line spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DurabilityArg {
    /// Acknowledge after selection; no log.
    Memory,
    /// Acknowledge once the frame is in the mapped segment.
    Buffered,
    /// Acknowledge once the group is synced to the device.
    Sync,
}

/// `bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Total draws over all producers [default: 10000000 in every mode].
    #[arg(long, allow_negative_numbers = true)]
    pub draws: Option<u64>,
    /// Catalog size: K unlimited items with weights 1..=K.
    #[arg(long, default_value_t = 100, allow_negative_numbers = true)]
    pub items: u32,
    /// Producer threads, each with its own client (pinned off the engines' cores when
    /// possible) [default: one per pool].
    #[arg(long, allow_negative_numbers = true)]
    pub producers: Option<usize>,
    /// Durability mode [default: the --config file's wal.durability, else memory, so it
    /// runs anywhere]. buffered and sync use a fresh directory under --data-dir (default
    /// ./bench-data), removed afterwards, also on SIGINT/SIGTERM.
    #[arg(long, value_enum, allow_negative_numbers = true)]
    pub durability: Option<DurabilityArg>,
    /// Most draws per group commit [default: the --config file's wal.flush_after_n_draw,
    /// else by durability: memory and buffered 200, sync 4096].
    #[arg(long, allow_negative_numbers = true)]
    pub group: Option<u32>,
    /// Open loop: offered load in draws/s over all producers; latency is measured from each
    /// request's intended send time (no coordinated omission). Default: closed loop.
    /// The output says whether the rate was sustained, and gives the machine's floor p99
    /// (every core spinning for 1 s just before the run) beside the engine's.
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Requests outstanding per producer [default: the --config file's
    /// wal.max_request_buffer_size, else by durability: memory and buffered 256, sync
    /// 16384].
    #[arg(long, allow_negative_numbers = true)]
    pub window: Option<usize>,
    /// Draws per request: each request is a pull of N draws (1 to 1000) [default: single
    /// draws]. The window counts requests, so up to window × N draws are in flight.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub pull: Option<u32>,
    /// Every request carries a fresh, random-looking idempotency key, as clients send them
    /// (the engine's window: config idempotency, 1048576 keys by default), to measure what
    /// keys cost.
    #[arg(long)]
    pub keys: bool,
    /// Fixed generator seed (default: from the operating system).
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<u64>,
    /// Pools: P engines, each with its own pinned core thread and log (placed by the host's
    /// core plan), producer i drawing from pool i mod P; --producers must be a multiple of
    /// P and defaults to P. The throughput is the aggregate; the JSON adds "pools" and
    /// "pool_draws_per_sec".
    #[arg(long, value_name = "P", default_value_t = 1, allow_negative_numbers = true)]
    pub pools: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the latency percentile distribution (.hgrm-style text) to FILE (checked for
    /// writing before the run).
    #[arg(long, value_name = "FILE", allow_negative_numbers = true)]
    pub hist_out: Option<PathBuf>,
    /// Draw latency by percentile as an SVG plot (checked for writing before the run).
    #[arg(long, value_name = "FILE.svg", allow_negative_numbers = true)]
    pub plot: Option<PathBuf>,
}

/// `load` (defaults and meanings: `load/plan.rs`, which validates them).
#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// The server's gRPC address.
    #[arg(
        long,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:50051",
        allow_negative_numbers = true
    )]
    pub target: String,
    /// HTTP/2 connections (1 to 256).
    #[arg(long, value_name = "C", default_value_t = 1, allow_negative_numbers = true)]
    pub connections: u32,
    /// Draw streams per connection [default: 1; with a stream --ramp, its highest level
    /// spread over the connections]. A server admits a limited number of concurrent
    /// streams per connection (hyper's default: 200); streams beyond it wait for a free
    /// one, so use more --connections. At most 100000 streams in all.
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub streams: Option<u32>,
    /// Draws per DrawRequest (1 to 1000000; the server refuses more than its own maximum).
    #[arg(long, value_name = "N", default_value_t = 10, allow_negative_numbers = true)]
    pub count: i32,
    /// Requests outstanding per stream (1 to 65536). Closed loop [default: 1]: more
    /// pipelines requests on the stream, which high throughput needs. Open loop [default:
    /// 4096]: a request due while its stream has this many outstanding is sent late.
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
    pub in_flight: Option<u32>,
    /// Open loop: requests per second over all streams, each stream sending on its own
    /// share of the schedule without waiting for answers. Latency runs from each request's
    /// intended send time.
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Closed loop: think time between a stream's requests (after an answer, before that
    /// slot's next request), e.g. 500ms (the k6 script's shape).
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub pause: Option<String>,
    /// How long to send, e.g. 30s, 2m [default: 10s]; not with --ramp (its stages set it).
    #[arg(long, value_name = "D", allow_negative_numbers = true)]
    pub duration: Option<String>,
    /// Load stages, k6-like, e.g. 0:100:10s,hold:60s,0:10s (see the grammar above).
    #[arg(long, value_name = "STAGES", allow_negative_numbers = true)]
    pub ramp: Option<String>,
    /// The pool to draw from (empty: the server's only pool).
    #[arg(long, value_name = "NAME", allow_negative_numbers = true)]
    pub pool: Option<String>,
    /// Send a fresh random 16-byte idempotency key with every request.
    #[arg(long)]
    pub keys: bool,
    /// Runtime threads of the generator (1 to 64).
    #[arg(long, value_name = "T", default_value_t = 2, allow_negative_numbers = true)]
    pub threads: usize,
    /// Print one JSON object instead of text (and no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Latency percentiles and throughput over time as an SVG plot (checked for writing
    /// before the run).
    #[arg(long, value_name = "FILE.svg", allow_negative_numbers = true)]
    pub plot: Option<PathBuf>,
}

/// `rewardpool load --help`'s text.
const LOAD_LONG_ABOUT: &str = "\
gRPC load generator against `rewardpool serve` (or the Go service): Draw streams over HTTP/2
connections, each DrawRequest asking for --count draws.

Closed loop (default): each stream keeps --in-flight requests outstanding, each slot waiting
--pause after its answer before its next request. Latency runs from the send.

Open loop (--rate R, or a --ramp of rates): R requests per second over all streams, each
stream sending its share on schedule whatever the answers. Latency runs from each request's
intended send time (coordinated omission corrected). When the offered rate cannot be sent
(a stream has --in-flight requests outstanding, or the connection pushes back), requests go
out late, as soon as they can, still timed from when they were due. The report says how far
behind schedule requests went out (about 1 ms of it is the generator's own timer tick),
counts those more than 5 ms late and those due before the end that were never sent, and
says whether the rate was sustained (none unsent, at most 1 % late).

Ramp (--ramp), k6's stages:
  RAMP     := STAGE (\",\" STAGE)*
  STAGE    := LEVEL:LEVEL:DURATION   from the first level to the second, linearly
            | LEVEL:DURATION         from where the previous stage ended (0 first)
            | hold:DURATION          stay at the previous stage's end level
  LEVEL    := INTEGER                active streams (closed loop, k6's VUs)
            | NUMBER/s               requests per second (open loop)
  DURATION := NUMBER(ms|s|m|h)       e.g. 500ms, 10s, 1.5m
e.g. --ramp 0:100:10s,hold:60s,0:10s (the k6 shape, with --pause 500ms), or
--ramp 0/s:20000/s:30s,hold:30s. Without --ramp: every stream (or --rate) for --duration.

Report: requests sent, draws asked for, responses (draws answered), empty draws, requests and
draws per second (answered), latency p50/p90/p99/p99.9/max (HDR), requests by how they ended
(gRPC code; UNANSWERED when the stream ended without a status or the 10 s drain after the
end ran out) and stream errors by code. --json prints it as one object; --plot draws latency
percentiles and throughput over time.

Exit codes: 0 when at least one request was answered in full (errors are reported, not
fatal), 1 when every request failed or the target cannot be reached (connect timeout 5 s),
2 for bad arguments.";

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::{parse_key, Cli};

    #[test]
    fn keys_are_32_hex_digits_not_zero() {
        assert_eq!(parse_key("000000000000000000000000000000aB"), Ok(0xab));
        assert_eq!(parse_key("ffffffffffffffffffffffffffffffff"), Ok(u128::MAX));
        for bad in ["", "abc", &"0".repeat(33), &format!("{}g", "0".repeat(31)), &"é".repeat(32)] {
            let e = parse_key(bad).unwrap_err();
            assert!(e.contains("32 hex digits"), "{bad}: {e}");
        }
        assert!(parse_key(&"0".repeat(32)).unwrap_err().contains("all zeros"));
    }

    /// Every flag that takes a value takes a negative number as that value (then refused,
    /// where it is out of range, by a message naming the flag), never as an unknown flag:
    /// `--weight -5` and `--quantity -1` parse alike.
    #[test]
    fn every_value_flag_takes_negative_numbers() {
        fn walk(cmd: &clap::Command, path: &str, checked: &mut usize) {
            for arg in cmd.get_arguments() {
                if arg.get_action().takes_values() && !arg.is_positional() {
                    assert!(
                        arg.is_allow_negative_numbers_set(),
                        "{path} --{} does not take negative numbers",
                        arg.get_id()
                    );
                    *checked += 1;
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), checked);
            }
        }
        let mut checked = 0;
        walk(&Cli::command(), "rewardpool", &mut checked);
        assert!(checked >= 10, "only {checked} value flags found");
    }
}
