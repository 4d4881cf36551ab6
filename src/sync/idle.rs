//! The idle policy: spin, then yield, then sleep; bounded at every step. One policy, three
//! users with their own bounds: the core thread between empty passes ([`IdleConfig`], set
//! by `EngineConfig::idle`), a client waiting for an outcome, and the flusher waiting for
//! a job (each sleeps on a [`Doorbell`](super::Doorbell)).
//!
//! What each step costs a request that arrives while the core idles (2-core KVM guest):
//! - spinning: the core notices within one pass (tens of ns), but burns its CPU;
//! - yielding: `sched_yield` takes ~0.3–1 µs, and another runnable thread may run first;
//! - parking: a client that finds the core parked unparks it (futex wake, ~5–20 µs until the
//!   core runs); if a wake-up were missed the park still ends after `park_max`.
//!
//! So an idle engine costs nothing after `spin_passes + yield_passes` empty passes, and a
//! loaded engine never leaves the spin phase.

use std::time::Duration;

/// Bounds of each idle phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleConfig {
    /// Empty passes that only spin (`spin_loop` hint).
    pub spin_passes: u32,
    /// Further empty passes that call `yield_now`.
    pub yield_passes: u32,
    /// Longest single park once both are used up.
    pub park_max: Duration,
}

impl Default for IdleConfig {
    fn default() -> IdleConfig {
        IdleConfig { spin_passes: 20_000, yield_passes: 200, park_max: Duration::from_millis(1) }
    }
}

/// What to do after an empty pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IdleStep {
    Spin,
    Yield,
    Park(Duration),
}

/// Counts empty passes and says which phase the waiting thread is in.
#[derive(Debug)]
pub(crate) struct Idle {
    config: IdleConfig,
    empty_passes: u32,
}

impl Idle {
    pub(crate) const fn new(config: IdleConfig) -> Idle {
        Idle { config, empty_passes: 0 }
    }

    /// Work was done: start over from spinning.
    #[inline]
    pub(crate) fn reset(&mut self) {
        self.empty_passes = 0;
    }

    /// An empty pass: spins or yields here, or returns how long the caller may sleep (on
    /// its doorbell) once both phases are used up. `may_park` false keeps the caller in the
    /// yield phase (the core while groups await durability: the flusher does not wake it).
    #[inline]
    pub(crate) fn pause(&mut self, may_park: bool) -> Option<Duration> {
        match self.step(may_park) {
            IdleStep::Spin => std::hint::spin_loop(),
            IdleStep::Yield => std::thread::yield_now(),
            IdleStep::Park(timeout) => return Some(timeout),
        }
        None
    }

    /// Which phase an empty pass is in (see [`Idle::pause`]).
    #[inline]
    fn step(&mut self, may_park: bool) -> IdleStep {
        self.empty_passes = self.empty_passes.saturating_add(1);
        let spin = self.config.spin_passes;
        if self.empty_passes <= spin {
            IdleStep::Spin
        } else if self.empty_passes <= spin.saturating_add(self.config.yield_passes) || !may_park {
            IdleStep::Yield
        } else {
            IdleStep::Park(self.config.park_max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_their_bounds() {
        let mut idle = Idle::new(IdleConfig {
            spin_passes: 2,
            yield_passes: 1,
            park_max: Duration::from_micros(5),
        });
        assert_eq!(idle.step(true), IdleStep::Spin);
        assert_eq!(idle.step(true), IdleStep::Spin);
        assert_eq!(idle.step(true), IdleStep::Yield);
        assert_eq!(idle.step(false), IdleStep::Yield);
        assert_eq!(idle.step(true), IdleStep::Park(Duration::from_micros(5)));
        idle.reset();
        assert_eq!(idle.step(true), IdleStep::Spin);
    }
}
