//! A segment's draw seed: 32 random bytes fixed before the segment's first draw, committed
//! to by their hash in the segment's header and revealed there once the segment is closed
//! (`wal::header`). Everything a draw's choice depends on besides the pool's state and the
//! request id ([`super::rng`]).
//!
//! ```text
//!  commitment = SHA-256(seed (32 bytes) || sequence (u64 LE) || pool name (UTF-8))
//!  key        = the first 8 bytes of SHA-256(seed), as a u64 LE (generator 1's key)
//! ```

use sha2::{Digest, Sha256};

use super::Rng;

/// A segment's draw seed. Its `Debug` never shows the bytes: until its segment closes, the
/// seed is a secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DrawSeed([u8; 32]);

impl std::fmt::Debug for DrawSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DrawSeed(..)")
    }
}

impl DrawSeed {
    /// A fresh seed from the operating system.
    ///
    /// # Errors
    /// When the operating system cannot provide entropy.
    pub fn generate() -> Result<DrawSeed, getrandom::Error> {
        let mut seed = [0_u8; 32];
        getrandom::fill(&mut seed)?;
        Ok(DrawSeed(seed))
    }

    /// The seed tests and benchmarks use for segment `sequence` when they fix the
    /// generator with `fixed`: reproducible, and different for every segment.
    #[must_use]
    pub fn fixed(fixed: u64, sequence: u64) -> DrawSeed {
        let mut h = Sha256::new();
        h.update(b"rewardpool fixed draw seed");
        h.update(fixed.to_le_bytes());
        h.update(sequence.to_le_bytes());
        DrawSeed(h.finalize().into())
    }

    /// A seed read back from a closed segment's header.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> DrawSeed {
        DrawSeed(bytes)
    }

    /// The seed's bytes (what a closed segment's header reveals).
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// What segment `sequence` of pool `pool` publishes before its first draw (module docs).
    #[must_use]
    pub fn commitment(&self, sequence: u64, pool: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(sequence.to_le_bytes());
        h.update(pool.as_bytes());
        h.finalize().into()
    }

    /// Generator 1's key (module docs).
    #[must_use]
    pub fn key(&self) -> u64 {
        let digest: [u8; 32] = Sha256::digest(self.0).into();
        let mut key = [0_u8; 8];
        key.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        u64::from_le_bytes(key)
    }

    /// The generator that draws this seed's segment.
    #[must_use]
    pub fn rng(&self) -> Rng {
        Rng::from_key(self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commitment_binds_seed_sequence_and_pool() {
        let a = DrawSeed::fixed(1, 1);
        let c = a.commitment(1, "eu");
        assert_eq!(c, a.commitment(1, "eu"));
        assert_ne!(c, a.commitment(2, "eu"));
        assert_ne!(c, a.commitment(1, "us"));
        assert_ne!(c, DrawSeed::fixed(1, 2).commitment(1, "eu"));
        let mut manual = Sha256::new();
        manual.update(a.to_bytes());
        manual.update(1_u64.to_le_bytes());
        manual.update(b"eu");
        assert_eq!(c, <[u8; 32]>::from(manual.finalize()));
    }

    #[test]
    fn fixed_seeds_differ_per_segment_and_generated_ones_per_call() {
        assert_ne!(DrawSeed::fixed(1, 1), DrawSeed::fixed(1, 2));
        assert_ne!(DrawSeed::fixed(1, 1), DrawSeed::fixed(2, 1));
        assert_ne!(DrawSeed::generate().unwrap(), DrawSeed::generate().unwrap());
    }

    #[test]
    fn key_is_the_digest_prefix_and_debug_hides_the_seed() {
        let s = DrawSeed::from_bytes([7; 32]);
        let d = Sha256::digest([7_u8; 32]);
        assert_eq!(s.key(), u64::from_le_bytes(d[..8].try_into().unwrap()));
        assert_eq!(format!("{s:?}"), "DrawSeed(..)");
    }
}
