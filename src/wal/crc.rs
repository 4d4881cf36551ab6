//! CRC-32C (Castagnoli) for frames, with the SSE4.2 instruction inline for short inputs.
//!
//! MEASURED.md: the crc32c crate costs 16–21 ns on 24–64 bytes (its fixed overhead
//! dominates), the instruction inline ~4 ns on 32 bytes; profiling the buffered-mode core
//! showed the crate's function at 9 % of the core thread. Inputs longer than
//! [`INLINE_LEN_MAX`] go to the crate, whose 3-way parallel loop wins there. Both give the
//! same value (a property test checks it): initial value and final xor `!0`, reflected.

/// Longest input hashed inline.
pub const INLINE_LEN_MAX: usize = 64;

/// CRC-32C of `bytes`.
#[inline]
#[must_use]
pub fn crc32c(bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if bytes.len() <= INLINE_LEN_MAX && std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE4.2 (checked just above; the check is cached), which
            // is the only requirement of `sse42::crc32c`; it reads `bytes` only in bounds.
            #[allow(unsafe_code)]
            return unsafe { sse42::crc32c(bytes) };
        }
    }
    crc32c::crc32c(bytes)
}

/// CRC-32C of the 28 bytes `head_len (u32 LE) ‖ head_kind (u64 LE) ‖ w0 (u64 LE) ‖ w1 (u64 LE)`:
/// bytes 4..32 of a 32-byte fixed frame, computed from the values rather than read back.
///
/// Reading back the frame just written into the mapping cost more than the CRC itself:
/// every 8-byte load there spans several narrower stores (payload length, kind byte, rkyv's
/// u32 fields), and the CPU cannot forward such stores to the load; profiling showed the
/// core thread stalled on those loads (12 % of the buffered run). The caller passes the
/// values it stored; a test and the debug-build decode check prove the bytes match.
#[inline]
#[must_use]
pub fn crc32c_fixed(head_len: u32, head_kind: u64, w0: u64, w1: u64) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE4.2 (checked just above; the check is cached), the
            // only requirement of `sse42::crc32c_words`, which touches no memory.
            #[allow(unsafe_code)]
            return unsafe { sse42::crc32c_words(head_len, head_kind, w0, w1) };
        }
    }
    let mut bytes = [0_u8; 28];
    bytes[..4].copy_from_slice(&head_len.to_le_bytes());
    bytes[4..12].copy_from_slice(&head_kind.to_le_bytes());
    bytes[12..20].copy_from_slice(&w0.to_le_bytes());
    bytes[20..].copy_from_slice(&w1.to_le_bytes());
    crc32c::crc32c(&bytes)
}

#[cfg(target_arch = "x86_64")]
mod sse42 {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};

    /// # Safety
    /// The CPU must support SSE4.2.
    // SAFETY: (contract) the only caller checks `is_x86_feature_detected!("sse4.2")` first.
    #[allow(unsafe_code)]
    #[target_feature(enable = "sse4.2")]
    pub(super) unsafe fn crc32c_words(head_len: u32, head_kind: u64, w0: u64, w1: u64) -> u32 {
        // The instruction consumes little-endian words, the same order as the bytes.
        let crc = _mm_crc32_u32(u32::MAX, head_len);
        let crc = _mm_crc32_u64(u64::from(crc), head_kind);
        let crc = _mm_crc32_u64(crc, w0);
        !(_mm_crc32_u64(crc, w1) as u32)
    }

    /// # Safety
    /// The CPU must support SSE4.2.
    // SAFETY: (contract) the only caller checks `is_x86_feature_detected!("sse4.2")` first.
    #[allow(unsafe_code)]
    #[target_feature(enable = "sse4.2")]
    pub(super) unsafe fn crc32c(bytes: &[u8]) -> u32 {
        let mut crc = u64::from(u32::MAX);
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut le = [0_u8; 8];
            le.copy_from_slice(word);
            crc = _mm_crc32_u64(crc, u64::from_le_bytes(le));
        }
        let mut crc = crc as u32;
        for byte in words.remainder() {
            crc = _mm_crc32_u8(crc, *byte);
        }
        !crc
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::{any, prop_assert_eq, proptest};

    proptest! {
        #[test]
        fn matches_the_crc32c_crate(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(super::crc32c(&bytes), crc32c::crc32c(&bytes));
        }
    }

    proptest! {
        #[test]
        fn fixed_matches_the_bytes(len in any::<u32>(), kind in any::<u64>(), w0 in any::<u64>(), w1 in any::<u64>()) {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(&kind.to_le_bytes());
            bytes.extend_from_slice(&w0.to_le_bytes());
            bytes.extend_from_slice(&w1.to_le_bytes());
            prop_assert_eq!(super::crc32c_fixed(len, kind, w0, w1), crc32c::crc32c(&bytes));
        }
    }

    #[test]
    fn known_value() {
        // The CRC-32C check value (RFC 3720 / iSCSI): "123456789" -> 0xE3069283.
        assert_eq!(super::crc32c(b"123456789"), 0xE306_9283);
    }
}
