//! The draws' generator: a pure function of a key and the draw's request id (format
//! "generator 1"), so that every choice can be recomputed by anyone who knows the key.
//!
//! # Generator 1
//!
//! A draw with request id `n` over a live weight `total` picks the value `v` in
//! `0..total`, then the item whose cumulative range holds it (items in index order, each
//! covering `weight` values while it has a unit left; [`super::selector`]):
//!
//! ```text
//!  C = 0xa0761d6478bd642f   D = 0xe7037ed1a0b428db   E = 0x8ebc6af09c88c6e3
//!  mum(a, b)   = lo ^ hi, where hi:lo is the 128-bit product a * b
//!  word(n, j)  = mum(s, s ^ D), where s = key + n * C + j * E   (all mod 2^64)
//!  value(n)    = for j = 0, 1, 2, ...: x = word(n, j); p = x * total (128 bits);
//!                the first j with lo(p) >= (2^64 - total) mod total gives hi(p)
//! ```
//!
//! `word(n, 0)` is the wyrand generator's output for the state `key + n * C`: the stream
//! of a segment is wyrand's, started at the segment's key. `value` is Lemire's bounded
//! draw with its rejection step, so every value in `0..total` has exactly the same chance
//! (a retry, `j > 0`, happens with probability below `total / 2^64`).
//!
//! A durable pool's key is derived from its segment's seed ([`super::DrawSeed::key`]): a
//! draw's choice is a function of the seed, the pool's state before it and its request id.
//! An idempotent replay has no request id of its own, so it consumes nothing.
//!
//! The generator is statistically strong (wyrand passes PractRand and BigCrush) but not a
//! cryptographic one: what makes the draws fair is that the seed is committed before its
//! segment's first draw and revealed after its last (`wal::header`), not that the key
//! cannot be guessed from outcomes by cryptanalysis.

/// The generator this build draws with, as segment headers record it.
pub const GENERATOR: u32 = 1;

const C: u64 = 0xa076_1d64_78bd_642f;
const D: u64 = 0xe703_7ed1_a0b4_28db;
const E: u64 = 0x8ebc_6af0_9c88_c6e3;

/// The high and low halves of `a * b`, folded by XOR.
#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Generator 1 (module docs) under one key.
#[derive(Clone, Copy)]
pub struct Rng {
    key: u64,
}

impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is as secret as the seed it comes from.
        f.write_str("Rng { .. }")
    }
}

impl Rng {
    /// A generator under `key` (a segment's: [`super::DrawSeed::key`]).
    #[must_use]
    pub fn from_key(key: u64) -> Rng {
        Rng { key }
    }

    /// Deterministic generator for tests and benchmarks.
    #[must_use]
    pub fn from_seed(seed: u64) -> Rng {
        Rng { key: mum(seed ^ D, C).wrapping_add(seed) }
    }

    /// Seeded from the operating system's entropy, so outcomes differ at every start.
    ///
    /// # Errors
    /// When the operating system cannot provide entropy.
    pub fn from_entropy() -> Result<Rng, getrandom::Error> {
        let mut key = [0_u8; 8];
        getrandom::fill(&mut key)?;
        Ok(Rng { key: u64::from_le_bytes(key) })
    }

    /// `word(n, j)` of the module docs.
    #[inline(always)]
    fn word(self, n: u64, j: u64) -> u64 {
        let s = self.key.wrapping_add(n.wrapping_mul(C)).wrapping_add(j.wrapping_mul(E));
        mum(s, s ^ D)
    }

    /// `value(n)` of the module docs: a uniform value in `0..bound` (`bound > 0`) for the
    /// draw with request id `n`. Pure: the same key, `n` and `bound` always give the same.
    #[inline(always)]
    #[must_use]
    pub fn below(self, bound: u64, n: u64) -> u64 {
        debug_assert!(bound > 0);
        let p = u128::from(self.word(n, 0)) * u128::from(bound);
        if (p as u64) < bound {
            // Only here can the low half fall below the threshold (which is < bound).
            return self.below_retry(bound, n, p);
        }
        (p >> 64) as u64
    }

    #[cold]
    #[inline(never)]
    fn below_retry(self, bound: u64, n: u64, mut p: u128) -> u64 {
        let threshold = bound.wrapping_neg() % bound;
        let mut j = 0_u64;
        while (p as u64) < threshold {
            j += 1;
            p = u128::from(self.word(n, j)) * u128::from(bound);
        }
        (p >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::deadline::{deadline, UNIT_TEST_DEADLINE};

    /// The module docs' definition, written as plainly as possible.
    fn reference(key: u64, n: u64, total: u64) -> u64 {
        let threshold = (u128::from(u64::MAX) + 1 - u128::from(total)) % u128::from(total);
        for j in 0_u64.. {
            let s = key.wrapping_add(n.wrapping_mul(C)).wrapping_add(j.wrapping_mul(E));
            let p = u128::from(s) * u128::from(s ^ D);
            let x = (p as u64) ^ ((p >> 64) as u64);
            let q = u128::from(x) * u128::from(total);
            if (q as u64) as u128 >= threshold {
                return (q >> 64) as u64;
            }
        }
        unreachable!()
    }

    #[test]
    fn below_is_the_documented_function() {
        let _deadline = deadline("below_is_the_documented_function", UNIT_TEST_DEADLINE);
        for key in [0, 1, 0xdead_beef, u64::MAX] {
            let rng = Rng::from_key(key);
            for n in [0, 1, 2, 1000, u64::MAX - 1, u64::MAX] {
                for total in [1, 2, 3, 7, 100, 1 << 32, (1 << 63) + 1, u64::MAX] {
                    assert_eq!(rng.below(total, n), reference(key, n, total), "{key} {n} {total}");
                }
            }
        }
    }

    #[test]
    fn the_first_words_of_key_zero_are_pinned() {
        let _deadline = deadline("the_first_words_of_key_zero_are_pinned", UNIT_TEST_DEADLINE);
        // Pins generator 1: an auditor's implementation can check itself against these.
        let rng = Rng::from_key(0);
        let got: Vec<u64> = (0..4).map(|n| rng.word(n, 0)).collect();
        let expected: Vec<u64> = (0..4_u64)
            .map(|n| {
                let s = n.wrapping_mul(C);
                let p = u128::from(s) * u128::from(s ^ D);
                (p as u64) ^ ((p >> 64) as u64)
            })
            .collect();
        assert_eq!(got, expected);
        assert_eq!(got[0], 0, "s = 0: the product is 0");
        assert_eq!(rng.below(100, 1), reference(0, 1, 100));
    }

    #[test]
    fn a_retry_happens_only_below_the_threshold_and_stays_in_range() {
        let _deadline = deadline(
            "a_retry_happens_only_below_the_threshold_and_stays_in_range",
            UNIT_TEST_DEADLINE,
        );
        // With a bound just over 2^63 the threshold is ~2^63: about half the words retry.
        let bound = (1_u64 << 63) + 12345;
        let rng = Rng::from_key(42);
        for n in 0..10_000 {
            let v = rng.below(bound, n);
            assert!(v < bound);
            assert_eq!(v, reference(42, n, bound));
        }
    }

    /// Draws for the chi-square tests: 10^7 by default (about a second in a debug build),
    /// 10^8 with `REWARDPOOL_LONG=1`.
    fn chi_square_draws() -> u64 {
        if std::env::var_os("REWARDPOOL_LONG").is_some() {
            100_000_000
        } else {
            10_000_000
        }
    }

    /// P(χ² ≥ statistic) over `counts` against `expected` (same length, expected > 0).
    fn p_value(counts: &[u64], expected: &[f64]) -> f64 {
        use statrs::distribution::{ChiSquared, ContinuousCDF};
        let statistic: f64 =
            counts.iter().zip(expected).map(|(&c, &e)| (c as f64 - e).powi(2) / e).sum();
        let dof = (counts.len() - 1) as f64;
        1.0 - ChiSquared::new(dof).unwrap().cdf(statistic)
    }

    /// Generator 1 over 100 equal bins, at 10^6 draws and at the full count (10^7, or 10^8
    /// with `REWARDPOOL_LONG=1`), under two keys: p >= 0.001 each time.
    #[test]
    fn chi_square_equal_bins() {
        let _deadline = deadline("chi_square_equal_bins", UNIT_TEST_DEADLINE);
        const BINS: usize = 100;
        for key in [0x5eed_u64, 0xfeed_f00d_dead_beef] {
            let rng = Rng::from_key(key);
            for n in [1_000_000, chi_square_draws()] {
                let mut counts = [0_u64; BINS];
                for id in 1..=n {
                    counts[rng.below(BINS as u64, id) as usize] += 1;
                }
                let expected = [n as f64 / BINS as f64; BINS];
                let p = p_value(&counts, &expected);
                assert!(p >= 0.001, "key {key:#x}, {n} draws: p = {p}");
            }
        }
    }

    /// Generator 1 through the pool's selection ([`super::super::Pool::choice_at`], what a
    /// draw and the audit compute) over skewed weights 1, 2, 4, ... 512 and 1000: each item
    /// is chosen in proportion to its weight, p >= 0.001 at 10^6 and the full count.
    #[test]
    fn chi_square_skewed_weights_through_choice_at() {
        let _deadline = deadline("chi_square_skewed_weights_through_choice_at", UNIT_TEST_DEADLINE);
        use super::super::{ItemSpec, Pool, RequestId};
        let weights: Vec<u32> = (0..10).map(|i| 1 << i).chain([1000]).collect();
        let items: Vec<ItemSpec> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| ItemSpec::new(&format!("item{i}"), -1, *w))
            .collect();
        let pool = Pool::new(&items, Rng::from_seed(0)).unwrap();
        let total: u32 = weights.iter().sum();
        let rng = Rng::from_key(0x0dd5_0ff1_1e00);
        for n in [1_000_000, chi_square_draws()] {
            let mut counts = vec![0_u64; weights.len()];
            for id in 1..=n {
                counts[pool.choice_at(rng, RequestId(id)).unwrap().0 as usize] += 1;
            }
            let expected: Vec<f64> =
                weights.iter().map(|&w| n as f64 * f64::from(w) / f64::from(total)).collect();
            let p = p_value(&counts, &expected);
            assert!(p >= 0.001, "{n} draws: p = {p}, counts {counts:?}");
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let _deadline = deadline("debug_hides_the_key", UNIT_TEST_DEADLINE);
        assert_eq!(format!("{:?}", Rng::from_key(77)), "Rng { .. }");
    }
}
