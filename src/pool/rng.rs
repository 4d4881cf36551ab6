//! The pool's pseudo-random source: xoshiro256++ (rand_xoshiro), seeded from the operating
//! system at every start unless a fixed seed is asked for (tests and benchmarks).
//!
//! Outcomes are logged, so replay never needs the generator's state.

use rand_xoshiro::rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// A fast PRNG with a bounded draw in multiply form (MEASURED.md: `x % n` costs 10–25 ns, the
/// multiply 2–3 ns).
#[derive(Clone, Debug)]
pub struct Rng {
    inner: Xoshiro256PlusPlus,
}

impl Rng {
    /// Deterministic generator for tests and benchmarks.
    #[must_use]
    pub fn from_seed(seed: u64) -> Rng {
        Rng { inner: Xoshiro256PlusPlus::seed_from_u64(seed) }
    }

    /// Seeded from the operating system's entropy, so outcomes differ at every start.
    ///
    /// # Errors
    /// When the operating system cannot provide entropy.
    pub fn from_entropy() -> Result<Rng, getrandom::Error> {
        let mut seed = [0_u8; 32];
        getrandom::fill(&mut seed)?;
        Ok(Rng { inner: Xoshiro256PlusPlus::from_seed(seed) })
    }

    /// A uniform value in `0..bound` (`bound > 0`). The bias is at most `bound / 2^64`.
    #[inline]
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        let x = self.inner.next_u64();
        // The high half of the 128-bit product maps [0, 2^64) onto [0, bound) (Lemire).
        ((u128::from(x) * u128::from(bound)) >> 64) as u64
    }
}
