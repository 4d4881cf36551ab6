//! What the machine took from a benchmark run, so a tail can be told apart from the engine:
//! the hypervisor's steal time over the run (`/proc/stat`), and how often the run's threads
//! were preempted (involuntary context switches, `/proc/self/task/*/status` and
//! `getrusage(RUSAGE_THREAD)`). Linux only; elsewhere every figure is absent.
//!
//! Read once before and once after the run, never during it. The machine's stall floor
//! (spinning threads, so measured beside a run, never during it) is in [`floor`].

#[allow(dead_code, reason = "shared with rewardpool-hiccup: each binary uses part of it")]
pub(crate) mod floor;

use std::fs;

/// Involuntary context switches of the calling thread so far (0 where unknown).
pub(crate) fn own_preemptions() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
        // SAFETY: getrusage writes a `rusage` into the buffer it is given, which is valid
        // and writable; it is read only after the call reports success.
        #[allow(unsafe_code)]
        let ok = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) } == 0;
        if ok {
            // SAFETY: initialised by the successful getrusage above.
            #[allow(unsafe_code)]
            let usage = unsafe { usage.assume_init() };
            return u64::try_from(usage.ru_nivcsw).unwrap_or(0);
        }
    }
    0
}

/// A reading of the machine's counters.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sample {
    /// Steal time summed over all CPUs, in clock ticks (`None`: not readable).
    steal_ticks: Option<u64>,
    /// Involuntary switches of this process's threads whose name starts with
    /// `rewardpool-core`, and with `rewardpool-` otherwise (the log's helper threads).
    core_thread: Option<u64>,
    helper_threads: Option<u64>,
}

/// What happened between two samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Taken {
    pub(crate) steal_ms: Option<f64>,
    pub(crate) core_thread: Option<u64>,
    pub(crate) helper_threads: Option<u64>,
}

impl Sample {
    /// Reads the counters now.
    pub(crate) fn now() -> Sample {
        let (core_thread, helper_threads) = thread_switches();
        Sample { steal_ticks: steal_ticks(), core_thread, helper_threads }
    }

    /// The change from `self` (earlier) to `later`.
    pub(crate) fn until(&self, later: &Sample) -> Taken {
        let diff = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
        Taken {
            steal_ms: diff(self.steal_ticks, later.steal_ticks)
                .map(|t| t as f64 * 1000.0 / clock_ticks_per_sec()),
            core_thread: diff(self.core_thread, later.core_thread),
            helper_threads: diff(self.helper_threads, later.helper_threads),
        }
    }
}

/// The `steal` column of `/proc/stat`'s `cpu` line (all CPUs), in clock ticks.
fn steal_ticks() -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // cpu user nice system idle iowait irq softirq steal ...
    line.split_whitespace().nth(8)?.parse().ok()
}

fn clock_ticks_per_sec() -> f64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf only reads its integer argument.
        #[allow(unsafe_code)]
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if hz > 0 {
            return hz as f64;
        }
    }
    100.0
}

/// Involuntary switches summed over this process's threads named `rewardpool-core`, and
/// over its other `rewardpool-*` threads (thread names are cut to 15 bytes by the kernel).
fn thread_switches() -> (Option<u64>, Option<u64>) {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return (None, None);
    };
    let (mut core, mut helpers) = (0_u64, 0_u64);
    for task in tasks.flatten() {
        let path = task.path();
        let Ok(comm) = fs::read_to_string(path.join("comm")) else {
            continue;
        };
        let comm = comm.trim_end();
        if !comm.starts_with("rewardpool-") {
            continue;
        }
        let Some(n) = fs::read_to_string(path.join("status")).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        }) else {
            continue;
        };
        if comm.starts_with("rewardpool-core") {
            core += n;
        } else {
            helpers += n;
        }
    }
    (Some(core), Some(helpers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn samples_count_this_threads_preemptions_and_steal() {
        let before = Sample::now();
        let t = std::thread::Builder::new()
            .name("rewardpool-core".into())
            .spawn(|| {
                // Runnable for a while: on a busy machine it gets preempted, on an idle one
                // not; either way the count is readable.
                let start = std::time::Instant::now();
                while start.elapsed() < std::time::Duration::from_millis(30) {
                    std::hint::spin_loop();
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            })
            .unwrap();
        // Sample until the thread shows (it lives for 230 ms), not after a fixed sleep.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
        let taken = loop {
            let taken = before.until(&Sample::now());
            if taken.core_thread.is_some() || std::time::Instant::now() > deadline {
                break taken;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        t.join().unwrap();
        assert!(taken.core_thread.is_some(), "the named thread was found");
        // Readable on Linux (the values themselves are unsigned differences: any is valid).
        assert!(taken.steal_ms.is_some(), "steal time read from /proc/stat");
    }
}
