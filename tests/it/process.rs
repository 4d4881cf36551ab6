//! Running the real `rewardpool` binary from tests: one finished run, bounded waits.

use std::fmt;
use std::io::Read as _;
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

/// One finished run.
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head: String = self.stdout.lines().take(20).collect::<Vec<_>>().join("\n");
        write!(
            f,
            "exit {:?}\n--- stderr ---\n{}\n--- stdout (first 20 lines of {}) ---\n{head}",
            self.code,
            self.stderr,
            self.stdout.lines().count()
        )
    }
}

/// Collects a spawned child's output and waits at most `deadline` for it to end (then
/// kills it and fails the test: a hang is a failure, not a stuck CI).
pub(crate) fn finish(mut child: Child, args: &[&str], deadline: Duration) -> Run {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut s);
            }
            s
        })
    };
    let out = read(stdout.map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let err = read(stderr.map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rewardpool {args:?} did not finish within {deadline:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Run { code, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// A test's deadline as a guard, for tests that run library code in their own thread
/// (recovery, the log's readers): `engine::bounded` without moving the body into a
/// closure. If the guard is still alive `limit` after it was made, the test process aborts
/// naming the test: a loop (a regression, or a mutant of tools/mutants.sh) fails the run
/// within a bounded time instead of hanging CI. The library's unit tests use the same guard.
pub(crate) use rewardpool::pool::deadline::deadline;

/// Longest a recovery test may take (each takes a few seconds on a loaded machine).
pub(crate) const RECOVERY_DEADLINE: Duration = Duration::from_secs(120);
