//! `rewardpool-hiccup`: what this machine takes from any thread, measured with nothing of
//! rewardpool running, so a latency figure can be read against the machine's own floor.
//!
//! - **CPU** (default): one thread pinned to each core spins reading the clock and records
//!   every gap between two consecutive reads in an HDR histogram (the jHiccup method). A gap
//!   is time the thread did not run: an interrupt, a kernel thread, another process, or the
//!   hypervisor running something else (steal).
//! - **Disk** (`--disk DIR`): one thread appends `--write-kib` blocks to files allocated up
//!   front in DIR (fallocate, 64 MiB each, a fresh one when full, as the log's segments) and
//!   calls `fdatasync` after each write (what `sync` durability does per group), recording
//!   each sync's latency.
//!
//! CPU mode spins on every core, as a benchmark run with a producer and a core thread does on
//! this 2-core machine; on a larger machine, kernel work that idle cores would take then
//! lands on a spinner (an overestimate of what an engine using fewer cores would see).
//!
//! Why a stall bounds an open-loop p99 from below, and the floor p99 (the smallest bound
//! whose excess is at most 1 %): src/bin/rewardpool/machine/floor.rs, shared with
//! `rewardpool bench`, which prints the same floor beside an open-loop run's p99. The
//! report prints each core's floor and its excess for the issue targets' bounds.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

#[allow(dead_code, reason = "shared with rewardpool bench: each binary uses part of it")]
#[path = "../src/bin/rewardpool/machine/floor.rs"]
mod floor;

/// Latency bounds the report gives the excess for (ns): the issue targets' p99 bounds.
const BOUNDS_NS: [u64; 4] = [20_000, 50_000, 1_000_000, 2_000_000];

#[derive(Debug, Parser)]
#[command(
    name = "rewardpool-hiccup",
    about = "Measure this machine's stalls (CPU) or fdatasync latency (disk)"
)]
struct Args {
    /// How long to measure.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Measure fdatasync latency in this directory (never tmpfs) instead of CPU stalls.
    #[arg(long)]
    disk: Option<PathBuf>,
    /// Disk mode: bytes written before each fdatasync, in KiB.
    #[arg(long, default_value_t = 64)]
    write_kib: usize,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

fn main() {
    let args = Args::parse();
    if !(args.seconds > 0.0 && args.seconds <= 3600.0) {
        eprintln!("rewardpool-hiccup: --seconds is {}: it must be in (0, 3600]", args.seconds);
        std::process::exit(2);
    }
    let result = match &args.disk {
        Some(dir) => disk(dir, &args),
        None => {
            cpu(&args);
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("rewardpool-hiccup: {e}");
        std::process::exit(1);
    }
}

fn cpu(args: &Args) {
    let Some(cores) = floor::measure(Duration::from_secs_f64(args.seconds)) else {
        eprintln!("rewardpool-hiccup: a measuring thread could not start or panicked");
        std::process::exit(1);
    };
    for r in &cores {
        print_core(r, args.json);
    }
}

fn print_core(r: &floor::Gaps, json: bool) {
    let total_ns = r.seconds * 1e9;
    let share = |ns: u64| 100.0 * ns as f64 / total_ns;
    let excess = |bound: u64| 100.0 * r.excess_share(bound);
    let floor_ns = r.floor_ns(floor::P99_SHARE);
    // Time in gaps longer than each bound (the gap's whole length), from the histogram.
    let in_gaps_over = |bound: u64| -> u64 {
        r.hist
            .iter_recorded()
            .filter(|v| v.value_iterated_to() > bound)
            .map(|v| v.value_iterated_to() * v.count_at_value())
            .sum()
    };
    let core = r.core.map_or_else(|| "unpinned".to_owned(), |c| c.to_string());
    if json {
        let excess: serde_json::Map<String, serde_json::Value> = BOUNDS_NS
            .iter()
            .map(|b| ((b / 1000).to_string(), serde_json::json!(excess(*b))))
            .collect();
        let report = serde_json::json!({
            "mode": "cpu",
            "core": core,
            "seconds": r.seconds,
            "gaps_over_1us": r.hist.len(),
            "gap_max_ns": r.hist.max(),
            "percent_in_gaps_over_1ms": share(in_gaps_over(1_000_000)),
            "excess_percent_by_bound_us": excess,
            "floor_p99_ns": floor_ns,
        });
        println!("{report}");
        return;
    }
    println!(
        "core {core}: {:.1} s, {} gaps > 1 µs, longest {:.2} ms; time in gaps > 20 µs {:.2} %, > 1 ms {:.2} %",
        r.seconds,
        r.hist.len(),
        r.hist.max() as f64 / 1e6,
        share(in_gaps_over(20_000)),
        share(in_gaps_over(1_000_000)),
    );
    for b in BOUNDS_NS {
        let e = excess(b);
        let verdict = if e > 1.0 {
            "  -> an open-loop p99 <= this bound is below this machine's floor"
        } else {
            ""
        };
        println!("  excess over {:>5} µs: {e:6.3} % of the run{verdict}", b / 1000);
    }
    println!(
        "  floor p99 {:.1} µs (the smallest bound whose excess is at most 1 %)",
        floor_ns as f64 / 1e3
    );
}

/// Sequential writes of `write_kib` KiB, each followed by fdatasync, into a file allocated
/// up front (as segments are), for `args.seconds`.
fn disk(dir: &std::path::Path, args: &Args) -> Result<(), String> {
    if is_tmpfs(dir) {
        return Err(format!(
            "{} is on tmpfs: fdatasync is a no-op there, nothing to measure",
            dir.display()
        ));
    }
    let block = vec![0x5a_u8; args.write_kib.clamp(1, 1 << 16) * 1024];
    let size: u64 = 64 << 20;
    let mut syncs = floor::histogram();
    let (mut files, mut bytes) = (0_u64, 0_u64);
    let run = Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    // Like the log: each file allocated up front (fallocate), written once front to back,
    // and a fresh file when one is full, so every sync converts newly written blocks.
    while start.elapsed() < run {
        let path = dir.join(format!("hiccup-disk.{}.{files}.tmp", std::process::id()));
        files += 1;
        let file = Probe::create(path, size)?;
        let mut offset = 0_u64;
        while offset + block.len() as u64 <= size && start.elapsed() < run {
            file.file
                .write_all_at(&block, offset)
                .map_err(|e| format!("write at {offset}: {e}"))?;
            let t = Instant::now();
            file.file.sync_data().map_err(|e| format!("fdatasync: {e}"))?;
            syncs.saturating_record(
                u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1),
            );
            offset += block.len() as u64;
            bytes += block.len() as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let us = |q: f64| syncs.value_at_quantile(q) as f64 / 1e3;
    let (p50, p90, p99, p999, max) =
        (us(0.5), us(0.9), us(0.99), us(0.999), syncs.max() as f64 / 1e3);
    let mb_per_sec = bytes as f64 / secs / 1e6;
    if args.json {
        let report = serde_json::json!({
            "mode": "disk",
            "dir": dir.display().to_string(),
            "write_kib": args.write_kib,
            "seconds": secs,
            "syncs": syncs.len(),
            "mb_per_sec": mb_per_sec,
            "fdatasync_us": { "p50": p50, "p90": p90, "p99": p99, "p999": p999, "max": max },
        });
        println!("{report}");
    } else {
        println!(
            "disk {}: {} writes of {} KiB + fdatasync in {secs:.1} s ({mb_per_sec:.0} MB/s)",
            dir.display(),
            syncs.len(),
            args.write_kib,
        );
        println!("  fdatasync p50 {p50:.0} µs  p90 {p90:.0} µs  p99 {p99:.0} µs  p99.9 {p999:.0} µs  max {max:.0} µs");
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

/// A probe file, removed when dropped.
struct Probe {
    file: std::fs::File,
    path: PathBuf,
}

impl Probe {
    /// Creates `path` (it must not exist) at `size` bytes, allocated (fallocate), synced.
    fn create(path: PathBuf, size: u64) -> Result<Probe, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let probe = Probe { file, path };
        allocate(&probe.file, size)
            .map_err(|e| format!("cannot allocate {}: {e}", probe.path.display()))?;
        probe.file.sync_all().map_err(|e| format!("cannot sync {}: {e}", probe.path.display()))?;
        Ok(probe)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// fallocate where there is one (blocks allocated, reading as zeros), else a plain length.
fn allocate(file: &std::fs::File, size: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd as _;
        let len =
            libc::off_t::try_from(size).map_err(|_| std::io::Error::other("size too large"))?;
        // SAFETY: fallocate only reads its integer arguments; the descriptor is owned by
        // `file`, open for writing, for the duration of the call.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    file.set_len(size)
}

fn is_tmpfs(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut s = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path that outlives the call; `s` is a writable
    // statfs buffer, read only after statfs reports success (it filled it).
    #[allow(unsafe_code)]
    let ok = unsafe { libc::statfs(c.as_ptr(), s.as_mut_ptr()) } == 0;
    // SAFETY: initialised by the successful statfs above.
    #[allow(unsafe_code)]
    let ty = ok.then(|| unsafe { s.assume_init() }.f_type);
    ty == Some(libc::TMPFS_MAGIC)
}
