//! Test support: a deadline for unit tests whose code under test could loop.
//!
//! A regression (or a mutant, tools/mutants.sh) that makes `Selector::sample`, a Fenwick
//! update or a frame walker loop would otherwise hang `cargo test` until CI's own limit.
//! The guard aborts the test process instead, naming the test: a failure within a bounded
//! time. It lives in `pool` (the lowest layer) so every module's tests may use it without an
//! upward import; the integration tests use it through the `testing` feature.

use std::io::Write as _;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// Default deadline of a unit test (each takes well under a second on a quiet machine).
pub const UNIT_TEST_DEADLINE: Duration = Duration::from_secs(60);

/// Aborts the process if it is still alive `limit` after [`deadline`] made it.
#[derive(Debug)]
pub struct Deadline {
    done: Arc<(Mutex<bool>, Condvar)>,
}

/// A guard for the test `name`: dropping it (the test ended, or panicked) disarms it.
#[must_use = "the deadline is disarmed when the guard drops"]
pub fn deadline(name: &'static str, limit: Duration) -> Deadline {
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    let watched = Arc::clone(&done);
    std::thread::spawn(move || {
        let (lock, ended) = &*watched;
        let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = ended
            .wait_timeout_while(guard, limit, |done| !*done)
            .unwrap_or_else(PoisonError::into_inner);
        if !*guard {
            // Straight to the process's stderr: `eprintln!` from a test's thread is captured,
            // and the capture is lost when the process aborts.
            let _ = writeln!(
                std::io::stderr(),
                "{name}: still running after {limit:?}: a hang; aborting the tests"
            );
            std::process::abort();
        }
    });
    Deadline { done }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        let (lock, ended) = &*self.done;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        ended.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::deadline;
    use std::time::Duration;

    #[test]
    fn a_guard_dropped_in_time_does_nothing() {
        let guard = deadline("in_time", Duration::from_millis(50));
        drop(guard);
        std::thread::sleep(Duration::from_millis(100));
    }
}
