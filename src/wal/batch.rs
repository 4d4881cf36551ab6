//! The batch frame (kind 5): a group's draws in one frame, item indices packed at the width
//! the group needs, plus the idempotency keys of its keyed requests.
//!
//! # Payload layout (segment format version 3)
//!
//! Hand-packed little-endian fields, not rkyv: the payload has a variable length and is read
//! in place. The frame around it is an ordinary frame (16-byte header, CRC-32C over the whole
//! frame, zero padding to 16 bytes; see [`super::frame`]) with `kind` 5.
//!
//! ```text
//!  offset size  field
//!  0      8     first_request_id, u64 LE: the batch's draws have ids first, first+1, ...
//!  8      4     count, u32 LE: draws in the batch, >= 1
//!  12     4     unix_s, u32 LE: wall-clock seconds (Unix epoch) when the batch was written
//!  16     1     width: bytes per item index, 1, 2 or 4
//!  17     1     reserved, zero
//!  18     2     keys_len, u16 LE: keyed requests in the batch
//!  20     4     reserved, zero
//!  24     24*k  keys_len x { key u128 LE (16 bytes, never 0),
//!                            offset u32 LE (index in the batch of the request's first draw),
//!                            count u32 LE (the request's draws, >= 1) }
//!               sorted by offset, not overlapping, inside the batch
//!  24+24k w*n   count x item index, `width` bytes LE each; all ones (0xFF, 0xFFFF,
//!               0xFFFF_FFFF) is an empty draw
//!  payload_len = 24 + 24 * keys_len + width * count, exactly
//! ```
//!
//! The writer picks the narrowest width whose all-ones value is above every item index in the
//! batch (1 byte for catalogs of up to 255 items), so a 100-item pool costs one byte per draw
//! plus the batch's fixed 40 bytes (header and fields) and padding, and a keyed request 24
//! bytes more. Keys sit before the items so that a reader meets each key before its draws.
//!
//! # Checks
//!
//! [`decode_payload`] checks (after the frame's CRC matched): the fixed fields are present,
//! the width is 1, 2 or 4, the reserved bytes are zero, `count >= 1`, the payload length is
//! exactly what the fields say, the last request id does not overflow, and every key is
//! non-zero, has `count >= 1`, lies inside the batch and starts at or after the end of the
//! previous one. Whether an item index exists in the catalog is the reader's business
//! (recovery refuses an unknown index). Every failure is a [`BatchError`]; nothing panics on
//! any input.

#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::unwrap_used))]

/// The item word of an empty draw, in every frame kind (`frame` re-exports it).
pub const EMPTY_ITEM: u32 = u32::MAX;

/// Why a batch payload was refused; the frame layer wraps it in its `FrameError` (kind 5),
/// so this module depends on nothing of the frame's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// A field holds a value the format does not allow.
    Field {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// What it may be.
        expected: &'static str,
    },
    /// The payload is not the length its fixed fields imply.
    Length {
        /// The length the fields imply.
        expected: usize,
        /// The payload's length.
        got: usize,
    },
    /// The output buffer cannot hold the payload.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
}

/// Bytes of the batch payload before its keys.
pub const BATCH_FIXED_LEN: usize = 24;

/// Bytes per key entry.
pub const BATCH_KEY_LEN: usize = 24;

/// Most keys one batch frame can list (`keys_len` is a u16).
pub const BATCH_KEYS_MAX: usize = u16::MAX as usize;

/// One keyed request of a batch: the next `count` draws from index `offset` answer the
/// request carrying `key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchKey {
    /// The idempotency key (never 0).
    pub key: u128,
    /// Index, within the batch, of the request's first draw.
    pub offset: u32,
    /// The request's draws.
    pub count: u32,
}

/// A decoded batch frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Request id of the first draw; the others follow one by one.
    pub first_request_id: u64,
    /// Wall-clock seconds when the batch was written.
    pub unix_s: u32,
    /// Bytes per item index on disk: 1, 2 or 4.
    pub width: u8,
    /// The keyed requests, by offset.
    pub keys: Vec<BatchKey>,
    /// One entry per draw: the item index, `None` for an empty draw.
    pub items: Vec<Option<u32>>,
}

/// The narrowest width (1, 2 or 4) whose all-ones value is above `item_max`, the largest
/// (non-empty) item index of a batch (`None`: every draw was empty).
#[inline]
#[must_use]
pub const fn width_for(item_max: Option<u32>) -> u8 {
    match item_max {
        None => 1,
        Some(i) if i < 0xFF => 1,
        Some(i) if i < 0xFFFF => 2,
        Some(_) => 4,
    }
}

/// The payload length of a batch of `count` draws and `keys_len` keys at `width` (saturates).
#[must_use]
pub const fn payload_len(count: usize, keys_len: usize, width: u8) -> usize {
    BATCH_FIXED_LEN
        .saturating_add(keys_len.saturating_mul(BATCH_KEY_LEN))
        .saturating_add(count.saturating_mul(width as usize))
}

/// The all-ones value of a width (the empty draw).
const fn empty_at(width: u8) -> u32 {
    match width {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => u32::MAX,
    }
}

fn bad(field: &'static str, value: u64, expected: &'static str) -> BatchError {
    BatchError::Field { field, value, expected }
}

/// Checks the keys against a batch of `count` draws.
fn check_keys(keys: impl Iterator<Item = BatchKey>, count: u32) -> Result<(), BatchError> {
    let mut next_free = 0_u64;
    for k in keys {
        if k.key == 0 {
            return Err(bad("key", 0, "a non-zero key"));
        }
        if k.count == 0 {
            return Err(bad("key count", 0, "at least 1"));
        }
        let offset = u64::from(k.offset);
        if offset < next_free {
            return Err(bad("key offset", offset, "sorted keys that do not overlap"));
        }
        next_free = offset + u64::from(k.count);
        if next_free > u64::from(count) {
            return Err(bad("key offset + count", next_free, "at most the batch's draw count"));
        }
    }
    Ok(())
}

/// Writes the payload of a batch into `out` (exactly [`payload_len`] bytes): the fixed
/// fields, the keys, the items packed at `width` (`EMPTY_ITEM` = empty draw).
///
/// Called once per group on the core thread: no allocation.
///
/// # Errors
/// A width other than 1, 2, 4; no draws or more than `u32::MAX`; more than
/// [`BATCH_KEYS_MAX`] keys or keys that [`decode_payload`] would refuse; an item index that
/// does not fit the width; `out` of the wrong length.
pub fn encode_payload(
    out: &mut [u8],
    first_request_id: u64,
    unix_s: u32,
    width: u8,
    keys: &[BatchKey],
    items: &[u32],
) -> Result<(), BatchError> {
    if !matches!(width, 1 | 2 | 4) {
        return Err(bad("width", u64::from(width), "1, 2 or 4"));
    }
    let count = u32::try_from(items.len()).map_err(|_| bad("count", u64::MAX, "<= u32::MAX"))?;
    if count == 0 {
        return Err(bad("count", 0, "at least 1"));
    }
    let keys_len =
        u16::try_from(keys.len()).map_err(|_| bad("keys_len", keys.len() as u64, "<= 65535"))?;
    check_keys(keys.iter().copied(), count)?;
    let expected = payload_len(items.len(), keys.len(), width);
    if out.len() != expected {
        return Err(BatchError::BufferTooSmall { needed: expected, available: out.len() });
    }
    let (fixed, rest) = out.split_at_mut(BATCH_FIXED_LEN);
    let mut head = [0_u8; BATCH_FIXED_LEN];
    let fields: [(usize, &[u8]); 5] = [
        (0, &first_request_id.to_le_bytes()),
        (8, &count.to_le_bytes()),
        (12, &unix_s.to_le_bytes()),
        (16, &[width]),
        (18, &keys_len.to_le_bytes()),
    ];
    for (at, bytes) in fields {
        if let Some(dst) = head.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    fixed.copy_from_slice(&head);
    let (key_area, item_area) = rest.split_at_mut(keys.len() * BATCH_KEY_LEN);
    for (k, dst) in keys.iter().zip(key_area.chunks_exact_mut(BATCH_KEY_LEN)) {
        let mut entry = [0_u8; BATCH_KEY_LEN];
        let (key, tail) = entry.split_at_mut(16);
        key.copy_from_slice(&k.key.to_le_bytes());
        let (offset, n) = tail.split_at_mut(4);
        offset.copy_from_slice(&k.offset.to_le_bytes());
        n.copy_from_slice(&k.count.to_le_bytes());
        dst.copy_from_slice(&entry);
    }
    pack(item_area, items, width)
}

/// Packs `items` into `out` at `width` bytes each; `EMPTY_ITEM` becomes all ones.
#[inline]
fn pack(out: &mut [u8], items: &[u32], width: u8) -> Result<(), BatchError> {
    let empty = empty_at(width);
    let too_wide = |i: u32| bad("item", u64::from(i), "an index below the width's all-ones value");
    match width {
        1 => {
            for (dst, &i) in out.iter_mut().zip(items) {
                let v = if i == EMPTY_ITEM { empty } else { i };
                if v > empty || (v == empty && i != EMPTY_ITEM) {
                    return Err(too_wide(i));
                }
                *dst = v as u8;
            }
        }
        2 => {
            for (dst, &i) in out.chunks_exact_mut(2).zip(items) {
                let v = if i == EMPTY_ITEM { empty } else { i };
                if v > empty || (v == empty && i != EMPTY_ITEM) {
                    return Err(too_wide(i));
                }
                dst.copy_from_slice(&(v as u16).to_le_bytes());
            }
        }
        _ => {
            for (dst, &i) in out.chunks_exact_mut(4).zip(items) {
                dst.copy_from_slice(&i.to_le_bytes());
            }
        }
    }
    Ok(())
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    bytes.get(at..).and_then(|b| b.first_chunk::<4>()).map_or(0, |b| u32::from_le_bytes(*b))
}

/// The fixed fields of a batch payload, checked: `(first_request_id, count, unix_s, width,
/// keys_len)`.
pub(crate) fn decode_fixed(payload: &[u8]) -> Result<(u64, u32, u32, u8, usize), BatchError> {
    let Some(fixed) = payload.first_chunk::<BATCH_FIXED_LEN>() else {
        return Err(BatchError::Length { expected: BATCH_FIXED_LEN, got: payload.len() });
    };
    let first = fixed.first_chunk::<8>().map_or(0, |b| u64::from_le_bytes(*b));
    let count = le_u32(fixed, 8);
    let unix_s = le_u32(fixed, 12);
    let [.., width, r17, k0, k1, r20, r21, r22, r23] = *fixed;
    if !matches!(width, 1 | 2 | 4) {
        return Err(bad("width", u64::from(width), "1, 2 or 4"));
    }
    for (offset, value) in [(17, r17), (20, r20), (21, r21), (22, r22), (23, r23)] {
        if value != 0 {
            return Err(bad("reserved byte", offset, "zero reserved bytes (17, 20..24)"));
        }
    }
    if count == 0 {
        return Err(bad("count", 0, "at least 1"));
    }
    if first.checked_add(u64::from(count) - 1).is_none() {
        return Err(bad("first_request_id", first, "a last request id below 2^64"));
    }
    let keys_len = usize::from(u16::from_le_bytes([k0, k1]));
    let expected = payload_len(count as usize, keys_len, width);
    if payload.len() != expected {
        return Err(BatchError::Length { expected, got: payload.len() });
    }
    Ok((first, count, unix_s, width, keys_len))
}

fn key_at(keys: &[u8], i: usize) -> BatchKey {
    let entry = keys.get(i * BATCH_KEY_LEN..).and_then(|b| b.first_chunk::<BATCH_KEY_LEN>());
    let Some(entry) = entry else {
        return BatchKey { key: 0, offset: 0, count: 0 };
    };
    let key = entry.first_chunk::<16>().map_or(0, |b| u128::from_le_bytes(*b));
    BatchKey { key, offset: le_u32(entry, 16), count: le_u32(entry, 20) }
}

/// Decodes and checks a CRC-checked batch payload (see the module docs).
///
/// # Errors
/// Any check in the module docs, as a [`BatchError`]. Never panics.
pub fn decode_payload(payload: &[u8]) -> Result<Batch, BatchError> {
    let (first_request_id, count, unix_s, width, keys_len) = decode_fixed(payload)?;
    let key_bytes = payload.get(BATCH_FIXED_LEN..BATCH_FIXED_LEN + keys_len * BATCH_KEY_LEN);
    let key_bytes = key_bytes.unwrap_or_default();
    check_keys((0..keys_len).map(|i| key_at(key_bytes, i)), count)?;
    let keys = (0..keys_len).map(|i| key_at(key_bytes, i)).collect();
    let item_bytes = payload.get(BATCH_FIXED_LEN + keys_len * BATCH_KEY_LEN..).unwrap_or_default();
    let empty = empty_at(width);
    let items = item_bytes
        .chunks_exact(usize::from(width))
        .map(|b| {
            let v = match *b {
                [a] => u32::from(a),
                [a, b] => u32::from(u16::from_le_bytes([a, b])),
                [a, b, c, d] => u32::from_le_bytes([a, b, c, d]),
                _ => empty,
            };
            (v != empty).then_some(v)
        })
        .collect();
    Ok(Batch { first_request_id, unix_s, width, keys, items })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths() {
        assert_eq!(width_for(None), 1);
        assert_eq!(width_for(Some(0)), 1);
        assert_eq!(width_for(Some(254)), 1);
        assert_eq!(width_for(Some(255)), 2);
        assert_eq!(width_for(Some(0xFFFE)), 2);
        assert_eq!(width_for(Some(0xFFFF)), 4);
        assert_eq!(width_for(Some(u32::MAX - 1)), 4);
    }

    #[test]
    fn payload_is_the_documented_layout() {
        let keys = [BatchKey { key: 0x0102_u128 << 64 | 7, offset: 1, count: 2 }];
        let items = [3, EMPTY_ITEM, 250];
        let mut out = vec![0_u8; payload_len(3, 1, 1)];
        encode_payload(&mut out, 0x0A0B_0C0D_0E0F_1011, 1_700_000_000, 1, &keys, &items).unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(&0x0A0B_0C0D_0E0F_1011_u64.to_le_bytes());
        expected.extend_from_slice(&3_u32.to_le_bytes());
        expected.extend_from_slice(&1_700_000_000_u32.to_le_bytes());
        expected.extend_from_slice(&[1, 0]);
        expected.extend_from_slice(&1_u16.to_le_bytes());
        expected.extend_from_slice(&[0; 4]);
        expected.extend_from_slice(&keys[0].key.to_le_bytes());
        expected.extend_from_slice(&1_u32.to_le_bytes());
        expected.extend_from_slice(&2_u32.to_le_bytes());
        expected.extend_from_slice(&[3, 0xFF, 250]);
        assert_eq!(out, expected);
        let batch = decode_payload(&out).unwrap();
        assert_eq!(batch.items, vec![Some(3), None, Some(250)]);
        assert_eq!(batch.keys, keys.to_vec());
    }

    #[test]
    fn items_that_do_not_fit_the_width_are_refused() {
        let mut out = vec![0_u8; payload_len(1, 0, 1)];
        assert!(encode_payload(&mut out, 1, 0, 1, &[], &[255]).is_err());
        assert!(encode_payload(&mut out, 1, 0, 1, &[], &[254]).is_ok());
        let mut out = vec![0_u8; payload_len(1, 0, 2)];
        assert!(encode_payload(&mut out, 1, 0, 2, &[], &[0xFFFF]).is_err());
        assert!(encode_payload(&mut out, 1, 0, 2, &[], &[0x1_0000]).is_err());
        assert!(encode_payload(&mut out, 1, 0, 3, &[], &[1]).is_err());
        assert!(encode_payload(&mut out, 1, 0, 2, &[], &[]).is_err());
    }
}
