//! The wall clock the core thread reads for idempotency keys: their insertion time and
//! their expiry (`pool::keys`). Read at most once per group, never per draw.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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
    }
}
