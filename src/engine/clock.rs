//! The wall clock the core thread reads for idempotency keys: their insertion time and
//! their expiry (`pool::keys`). The core reads the system clock once, at start, and then
//! derives the time from the monotonic instant it reads per group anyway (measured: a
//! clock read per keyed group was 6 % of a keyed benchmark's samples).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, from the system or set by hand (tests of expiry do not
/// sleep for hours).
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// A clock that moves only when told ([`Clock::set`], [`Clock::advance`]); clones share
    /// it.
    Manual(Arc<AtomicU32>),
}

impl PartialEq for Clock {
    fn eq(&self, other: &Clock) -> bool {
        match (self, other) {
            (Clock::System, Clock::System) => true,
            (Clock::Manual(a), Clock::Manual(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Clock {}

impl Clock {
    /// A manual clock showing `unix_s`.
    #[must_use]
    pub fn manual(unix_s: u32) -> Clock {
        Clock::Manual(Arc::new(AtomicU32::new(unix_s)))
    }

    /// The time in seconds since the Unix epoch (saturating at `u32::MAX`, in 2106).
    #[must_use]
    pub fn unix_s(&self) -> u32 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
            // Relaxed: a value on its own; the core reads it once per group.
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }

    /// Sets a manual clock to `unix_s`.
    ///
    /// # Panics
    /// On the system clock.
    pub fn set(&self, unix_s: u32) {
        match self {
            Clock::System => panic!("the system clock cannot be set"),
            // Relaxed: see `unix_s`.
            Clock::Manual(t) => t.store(unix_s, Ordering::Relaxed),
        }
    }

    /// The time at `at` in seconds since the Unix epoch, given `base` (an instant and the
    /// time then, from [`Clock::base`]): the system clock's time derived from the monotonic
    /// clock the caller already read, so the core reads no clock for keys (drift between
    /// the two is nothing at the scale of a key's hours); a manual clock's own time.
    #[must_use]
    pub fn unix_s_at(&self, base: (Instant, u32), at: Instant) -> u32 {
        match self {
            Clock::System => {
                let since = at.saturating_duration_since(base.0).as_secs();
                base.1.saturating_add(u32::try_from(since).unwrap_or(u32::MAX))
            }
            Clock::Manual(_) => self.unix_s(),
        }
    }

    /// An instant and the time then, for [`Clock::unix_s_at`].
    #[must_use]
    pub fn base(&self) -> (Instant, u32) {
        (Instant::now(), self.unix_s())
    }

    /// Moves a manual clock `seconds` forward.
    ///
    /// # Panics
    /// On the system clock.
    pub fn advance(&self, seconds: u32) {
        self.set(self.unix_s().saturating_add(seconds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks() {
        assert!(Clock::System.unix_s() > 1_700_000_000);
        let c = Clock::manual(5);
        let shared = c.clone();
        c.advance(10);
        assert_eq!(shared.unix_s(), 15);
        assert_eq!(c, shared);
        assert_ne!(c, Clock::manual(15));
        assert_ne!(c, Clock::System);
        let base = Clock::System.base();
        let later = base.0 + std::time::Duration::from_secs(7200);
        assert_eq!(Clock::System.unix_s_at(base, later), base.1 + 7200);
        assert_eq!(c.unix_s_at(base, later), 15, "a manual clock shows its own time");
    }
}
