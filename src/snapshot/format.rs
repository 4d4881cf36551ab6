//! The snapshot file format: the full pool state, rkyv, behind a SHA-256.
//!
//! # Byte layout (format version 2)
//!
//! ```text
//!  offset size field
//!  0      8    magic b"RWPLSNP1"
//!  8      4    format version, u32 LE (2; 1 is still read)
//!  12     4    reserved, zero
//!  16     8    payload_len, u64 LE: the file is exactly 64 + payload_len bytes
//!  24     32   SHA-256 of the payload bytes (64..64 + payload_len)
//!  56     8    reserved, zero
//!  64     ..   payload: rkyv archive of SnapshotState (little-endian, root at the end)
//! ```
//!
//! The payload (rkyv, fields in this order):
//!
//! ```text
//!  version 1  SnapshotStateV1 { sequence u64, last_request_id u64, catalog_fingerprint u64,
//!                               items Vec<SnapshotItem { id String, quantity i64, weight u32 }> }
//!  version 2  SnapshotState   { the four fields of version 1,
//!                               key_window_keys u32, key_window_hours u32,
//!                               keys Vec<SnapshotKey { key_lo u64, key_hi u64,
//!                                    first_request_id u64, count u32, unix_s u32 }>,
//!                               key_items Vec<u32> }
//! ```
//!
//! Version 2 adds the idempotency-key window (`pool::KeyState`): its bounds, its keys oldest
//! first (the 128-bit key as two u64 halves), and every key's `count` outcomes concatenated
//! in key order in `key_items` (an item index, or `u32::MAX` for a draw that found nothing).
//! A version 1 file reads as a window with the default bounds and no keys.
//!
//! The segment that starts from a snapshot records, in its snapshot marker frame, the SHA-256
//! of the *whole file* (header included) as returned by [`encode`]; recovery checks that too.
//!
//! # Checks and what a mismatch means
//!
//! [`decode`] checks magic, version, reserved bytes, the exact file length, and the payload's
//! SHA-256 before any rkyv access; then it copies the payload into a 16-byte aligned buffer
//! and reads it with rkyv's validating `access`. Any failure is a [`SnapshotFormatError`];
//! recovery treats a snapshot that fails to decode, or whose whole-file hash differs from the
//! marker's, as damage (it does not fall back silently). Nothing here panics on any input.
//!
//! Snapshots are written to a temporary file, synced, renamed and the directory synced (by
//! the I/O layer), so a crash leaves either no snapshot file or a complete one; a torn or
//! flipped file fails the length or SHA-256 check.
//!
//! File names: `snapshot.NNNNNN` ([`snapshot_name`], [`parse_snapshot_name`]; both in
//! [`crate::layout`]), same rules as segment names.

#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::unwrap_used))]

use std::fmt;

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pool::{
    ItemIndex, ItemSpec, ItemState, KeyRecord, KeyState, KeyWindow, PoolState, Quantity, RequestId,
};

/// Snapshot file names live with every other name in a data directory; re-exported here
/// where readers of the format look for them.
pub use crate::layout::{parse_snapshot_name, snapshot_name};

/// Size of the snapshot file header; the payload starts here.
pub const SNAPSHOT_HEADER_SIZE: usize = 64;

/// The first 8 bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RWPLSNP1";

/// The snapshot format version this build writes; it reads this one and every earlier one.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 2;

/// A `key_items` word for a draw that found nothing.
const KEY_ITEM_NONE: u32 = u32::MAX;

const _: () = assert!(SNAPSHOT_HEADER_SIZE.is_multiple_of(16));

/// One item in a snapshot.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SnapshotItem {
    /// The item's id.
    pub id: String,
    /// Units left, `-1` for unlimited.
    pub quantity: i64,
    /// Configured weight.
    pub weight: u32,
}

/// One idempotency key in a snapshot (format version 2).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotKey {
    /// The key's low 64 bits.
    pub key_lo: u64,
    /// The key's high 64 bits.
    pub key_hi: u64,
    /// The request id of its first draw.
    pub first_request_id: u64,
    /// Its draws (its outcomes in `key_items`).
    pub count: u32,
    /// When it was first served, seconds since the Unix epoch.
    pub unix_s: u32,
}

/// Everything a snapshot file holds (format version 2).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SnapshotState {
    /// The snapshot's sequence number (the N of `snapshot.NNNNNN`).
    pub sequence: u64,
    /// The last request id applied to this state.
    pub last_request_id: u64,
    /// Fingerprint of the catalog the log was started with ([`catalog_fingerprint`]).
    pub catalog_fingerprint: u64,
    /// Items in index order.
    pub items: Vec<SnapshotItem>,
    /// The key window's bound on keys.
    pub key_window_keys: u32,
    /// The key window's retention, in hours.
    pub key_window_hours: u32,
    /// The window's keys, oldest first.
    pub keys: Vec<SnapshotKey>,
    /// Every key's outcomes in key order: an item index, or `u32::MAX` for nothing.
    pub key_items: Vec<u32>,
}

/// What a format version 1 snapshot holds (read only).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SnapshotStateV1 {
    /// See [`SnapshotState::sequence`].
    pub sequence: u64,
    /// See [`SnapshotState::last_request_id`].
    pub last_request_id: u64,
    /// See [`SnapshotState::catalog_fingerprint`].
    pub catalog_fingerprint: u64,
    /// See [`SnapshotState::items`].
    pub items: Vec<SnapshotItem>,
}

impl From<SnapshotStateV1> for SnapshotState {
    fn from(v1: SnapshotStateV1) -> SnapshotState {
        let window = KeyWindow::default();
        SnapshotState {
            sequence: v1.sequence,
            last_request_id: v1.last_request_id,
            catalog_fingerprint: v1.catalog_fingerprint,
            items: v1.items,
            key_window_keys: window.keys,
            key_window_hours: window.hours,
            keys: Vec::new(),
            key_items: Vec::new(),
        }
    }
}

/// Why a snapshot file was refused. The caller adds the file name.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotFormatError {
    /// Fewer than [`SNAPSHOT_HEADER_SIZE`] bytes.
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// The first 8 bytes are not [`SNAPSHOT_MAGIC`].
    BadMagic {
        /// The bytes found.
        got: [u8; 8],
    },
    /// A format version this build does not read.
    UnsupportedVersion {
        /// The version found.
        got: u32,
        /// The version this build supports.
        supported: u32,
    },
    /// A reserved header byte is not zero.
    ReservedNotZero {
        /// Its offset.
        offset: usize,
    },
    /// The file is not `64 + payload_len` bytes long.
    LengthMismatch {
        /// `64 + payload_len` from the header (saturating).
        expected: u64,
        /// The file's length.
        got: u64,
    },
    /// The payload's SHA-256 differs from the header's.
    ChecksumMismatch {
        /// The SHA-256 in the header.
        expected: [u8; 32],
        /// The SHA-256 of the payload bytes.
        got: [u8; 32],
    },
    /// rkyv refused the payload (or, when encoding, could not write it).
    Payload {
        /// rkyv's message.
        reason: String,
    },
    /// An item's quantity is below -1.
    BadQuantity {
        /// The item's id.
        item: String,
        /// The quantity found.
        quantity: i64,
    },
    /// The key window's outcomes do not add up to its keys' counts.
    KeyItems {
        /// The sum of the keys' counts.
        expected: u64,
        /// Outcome words stored.
        got: u64,
    },
}

/// Lower-case hex of `bytes`, for messages.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Display for SnapshotFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotFormatError::TooShort { len } => write!(
                f,
                "snapshot too short: {len} bytes, the header alone is {SNAPSHOT_HEADER_SIZE}"
            ),
            SnapshotFormatError::BadMagic { got } => write!(
                f,
                "bad magic b\"{}\", expected b\"{}\"",
                got.escape_ascii(),
                SNAPSHOT_MAGIC.escape_ascii()
            ),
            SnapshotFormatError::UnsupportedVersion { got, supported } => write!(
                f,
                "unsupported snapshot format version {got} (this build supports {supported})"
            ),
            SnapshotFormatError::ReservedNotZero { offset } => {
                write!(f, "reserved snapshot header byte {offset} is not zero")
            }
            SnapshotFormatError::LengthMismatch { expected, got } => {
                write!(f, "snapshot is {got} bytes, its header says {expected} (64 + payload_len)")
            }
            SnapshotFormatError::ChecksumMismatch { expected, got } => write!(
                f,
                "snapshot payload checksum mismatch: header says sha256 {}, payload gives {}",
                Hex(expected),
                Hex(got)
            ),
            SnapshotFormatError::Payload { reason } => {
                write!(f, "snapshot payload is not a valid archive: {reason}")
            }
            SnapshotFormatError::BadQuantity { item, quantity } => write!(
                f,
                "item {item:?}: quantity {quantity} is invalid, expected -1 (unlimited) or more"
            ),
            SnapshotFormatError::KeyItems { expected, got } => write!(
                f,
                "the key window's keys have {expected} draws, but {got} outcomes are stored"
            ),
        }
    }
}

impl std::error::Error for SnapshotFormatError {}

impl SnapshotState {
    /// The snapshot of `state`, numbered `sequence`.
    ///
    /// A finite quantity above `i64::MAX` is stored as `i64::MAX` (see [`Quantity::to_i64`]).
    #[must_use]
    pub fn from_pool(state: &PoolState, sequence: u64, catalog_fingerprint: u64) -> Self {
        SnapshotState {
            sequence,
            last_request_id: state.last_request_id.0,
            catalog_fingerprint,
            items: state
                .items
                .iter()
                .map(|i| SnapshotItem {
                    id: i.id.clone(),
                    quantity: i.quantity.to_i64(),
                    weight: i.weight,
                })
                .collect(),
            key_window_keys: state.keys.window.keys,
            key_window_hours: state.keys.window.hours,
            keys: state
                .keys
                .records
                .iter()
                .map(|r| SnapshotKey {
                    key_lo: r.key as u64,
                    key_hi: (r.key >> 64) as u64,
                    first_request_id: r.first.0,
                    count: r.count,
                    unix_s: r.unix_s,
                })
                .collect(),
            key_items: state.keys.items.iter().map(|i| i.map_or(KEY_ITEM_NONE, |i| i.0)).collect(),
        }
    }

    /// The pool state this snapshot holds.
    ///
    /// # Errors
    /// [`SnapshotFormatError::BadQuantity`] naming the first item whose quantity is below -1;
    /// [`SnapshotFormatError::KeyItems`] when the key window's outcomes do not add up.
    pub fn to_pool(&self) -> Result<PoolState, SnapshotFormatError> {
        let items = self
            .items
            .iter()
            .map(|i| {
                let quantity = Quantity::from_i64(i.quantity).ok_or_else(|| {
                    SnapshotFormatError::BadQuantity { item: i.id.clone(), quantity: i.quantity }
                })?;
                Ok(ItemState { id: i.id.clone(), quantity, weight: i.weight })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let expected: u64 = self.keys.iter().map(|k| u64::from(k.count)).sum();
        let got = self.key_items.len() as u64;
        if expected != got {
            return Err(SnapshotFormatError::KeyItems { expected, got });
        }
        let keys = KeyState {
            window: KeyWindow { keys: self.key_window_keys, hours: self.key_window_hours },
            records: self
                .keys
                .iter()
                .map(|k| KeyRecord {
                    key: u128::from(k.key_lo) | (u128::from(k.key_hi) << 64),
                    first: RequestId(k.first_request_id),
                    count: k.count,
                    unix_s: k.unix_s,
                })
                .collect(),
            items: self
                .key_items
                .iter()
                .map(|&i| (i != KEY_ITEM_NONE).then_some(ItemIndex(i)))
                .collect(),
        };
        Ok(PoolState { last_request_id: RequestId(self.last_request_id), items, keys })
    }
}

/// SHA-256 of `bytes`.
#[must_use]
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Encodes a snapshot file. Returns the file's bytes and the SHA-256 of the whole file (what
/// the segment's snapshot marker frame records).
///
/// # Panics
/// If rkyv cannot archive the state (its relative pointers are 32-bit, so only for a state
/// over about 2 GiB); see [`try_encode`].
#[must_use]
pub fn encode(state: &SnapshotState) -> (Vec<u8>, [u8; 32]) {
    match try_encode(state) {
        Ok(out) => out,
        Err(e) => panic!("snapshot encode: {e}"),
    }
}

/// [`encode`], returning an error instead of panicking.
///
/// # Errors
/// [`SnapshotFormatError::Payload`] if rkyv cannot archive the state.
pub fn try_encode(state: &SnapshotState) -> Result<(Vec<u8>, [u8; 32]), SnapshotFormatError> {
    let payload = rkyv::to_bytes::<rancor::Error>(state)
        .map_err(|e| SnapshotFormatError::Payload { reason: e.to_string() })?;
    let mut file = Vec::with_capacity(SNAPSHOT_HEADER_SIZE + payload.len());
    file.extend_from_slice(&SNAPSHOT_MAGIC);
    file.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    file.extend_from_slice(&[0; 4]);
    file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    file.extend_from_slice(&sha256(&payload));
    file.extend_from_slice(&[0; 8]);
    debug_assert_eq!(file.len(), SNAPSHOT_HEADER_SIZE, "header layout");
    file.extend_from_slice(&payload);
    let hash = sha256(&file);
    debug_assert_eq!(decode(&file).as_ref(), Ok(state), "snapshot pair assertion");
    Ok((file, hash))
}

/// Decodes a snapshot file (all of it).
///
/// # Errors
/// See [`SnapshotFormatError`]: too short, bad magic, unsupported version, non-zero reserved
/// bytes, wrong length, SHA-256 mismatch (all checked before rkyv sees a byte), or a payload
/// rkyv's validation refuses. Never panics.
pub fn decode(bytes: &[u8]) -> Result<SnapshotState, SnapshotFormatError> {
    let Some(h) = bytes.first_chunk::<SNAPSHOT_HEADER_SIZE>() else {
        return Err(SnapshotFormatError::TooShort { len: bytes.len() });
    };
    let magic = read::<8>(h, 0);
    if magic != SNAPSHOT_MAGIC {
        return Err(SnapshotFormatError::BadMagic { got: magic });
    }
    let version = u32::from_le_bytes(read(h, 8));
    if version == 0 || version > SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotFormatError::UnsupportedVersion {
            got: version,
            supported: SNAPSHOT_FORMAT_VERSION,
        });
    }
    for range in [12..16, 56..64] {
        let start = range.start;
        if let Some(i) = h.get(range).and_then(|r| r.iter().position(|&b| b != 0)) {
            return Err(SnapshotFormatError::ReservedNotZero { offset: start + i });
        }
    }
    let payload_len = u64::from_le_bytes(read(h, 16));
    let expected_len = payload_len.saturating_add(SNAPSHOT_HEADER_SIZE as u64);
    let got_len = bytes.len() as u64;
    if expected_len != got_len {
        return Err(SnapshotFormatError::LengthMismatch { expected: expected_len, got: got_len });
    }
    let payload = bytes.get(SNAPSHOT_HEADER_SIZE..).unwrap_or_default();
    let expected = read::<32>(h, 24);
    let got = sha256(payload);
    if expected != got {
        return Err(SnapshotFormatError::ChecksumMismatch { expected, got });
    }
    // The file buffer may sit anywhere in memory: rkyv needs the payload aligned.
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    let payload_error = |e: rancor::Error| SnapshotFormatError::Payload { reason: e.to_string() };
    if version == 1 {
        let archived = rkyv::access::<ArchivedSnapshotStateV1, rancor::Error>(&aligned)
            .map_err(payload_error)?;
        return rkyv::deserialize::<SnapshotStateV1, rancor::Error>(archived)
            .map(SnapshotState::from)
            .map_err(payload_error)
            .and_then(last_id_leaves_room);
    }
    let archived =
        rkyv::access::<ArchivedSnapshotState, rancor::Error>(&aligned).map_err(payload_error)?;
    let state =
        rkyv::deserialize::<SnapshotState, rancor::Error>(archived).map_err(payload_error)?;
    last_id_leaves_room(state)
}

/// Refuses a state whose last request id is u64::MAX: no id could follow it (a restart
/// would hand out ids from 0 again). Only damaged or crafted bytes say so.
fn last_id_leaves_room(state: SnapshotState) -> Result<SnapshotState, SnapshotFormatError> {
    if state.last_request_id == u64::MAX {
        return Err(SnapshotFormatError::Payload {
            reason: "last request id u64::MAX leaves no id to follow it".to_owned(),
        });
    }
    Ok(state)
}

/// Encodes a snapshot in format version 1 (no key window): what earlier releases wrote, for
/// the tests that read such files.
///
/// # Errors
/// [`SnapshotFormatError::Payload`] if rkyv cannot archive the state.
#[cfg(any(test, feature = "testing"))]
pub fn encode_v1(state: &SnapshotStateV1) -> Result<Vec<u8>, SnapshotFormatError> {
    let payload = rkyv::to_bytes::<rancor::Error>(state)
        .map_err(|e| SnapshotFormatError::Payload { reason: e.to_string() })?;
    let mut file = Vec::with_capacity(SNAPSHOT_HEADER_SIZE + payload.len());
    file.extend_from_slice(&SNAPSHOT_MAGIC);
    file.extend_from_slice(&1_u32.to_le_bytes());
    file.extend_from_slice(&[0; 4]);
    file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    file.extend_from_slice(&sha256(&payload));
    file.extend_from_slice(&[0; 8]);
    file.extend_from_slice(&payload);
    Ok(file)
}

/// `N` bytes of `h` from `offset` (zeros if out of range, which the constant offsets rule
/// out).
fn read<const N: usize>(h: &[u8; SNAPSHOT_HEADER_SIZE], offset: usize) -> [u8; N] {
    h.get(offset..).and_then(|rest| rest.first_chunk::<N>()).copied().unwrap_or([0; N])
}

/// A fingerprint of a catalog: the first 8 bytes (little-endian) of a SHA-256 over a
/// canonical encoding of the items in order (a domain tag, the item count, then per item the
/// id's length and bytes, the quantity as i64 and the weight, all integers u64/i64 LE).
///
/// Segment headers and snapshots carry it so a log is never replayed against a different
/// catalog by mistake.
#[must_use]
pub fn catalog_fingerprint(items: &[ItemSpec]) -> u64 {
    let mut h = Sha256::new();
    h.update(b"rewardpool catalog v1\0");
    h.update((items.len() as u64).to_le_bytes());
    for item in items {
        h.update((item.id.len() as u64).to_le_bytes());
        h.update(item.id.as_bytes());
        h.update(item.quantity.to_i64().to_le_bytes());
        h.update(u64::from(item.weight).to_le_bytes());
    }
    let digest: [u8; 32] = h.finalize().into();
    let mut first = [0_u8; 8];
    if let Some(head) = digest.first_chunk::<8>() {
        first = *head;
    }
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> SnapshotState {
        SnapshotState {
            sequence: 3,
            last_request_id: 1234,
            catalog_fingerprint: 0xFEED,
            items: vec![
                SnapshotItem { id: "gold".into(), quantity: 10, weight: 20 },
                SnapshotItem { id: "mud, plenty of it".into(), quantity: -1, weight: 70 },
                SnapshotItem { id: "gone".into(), quantity: 0, weight: 5 },
            ],
            key_window_keys: 1000,
            key_window_hours: 2,
            keys: vec![
                SnapshotKey {
                    key_lo: 7,
                    key_hi: u64::MAX,
                    first_request_id: 1200,
                    count: 2,
                    unix_s: 1_700_000_000,
                },
                SnapshotKey {
                    key_lo: 1,
                    key_hi: 0,
                    first_request_id: 1230,
                    count: 1,
                    unix_s: 1_700_000_009,
                },
            ],
            key_items: vec![0, KEY_ITEM_NONE, 1],
        }
    }

    fn v1(state: &SnapshotState) -> SnapshotStateV1 {
        SnapshotStateV1 {
            sequence: state.sequence,
            last_request_id: state.last_request_id,
            catalog_fingerprint: state.catalog_fingerprint,
            items: state.items.clone(),
        }
    }

    fn arb_state() -> impl Strategy<Value = SnapshotState> {
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(("\\PC{0,24}", -1_i64..i64::MAX, any::<u32>()), 0..20),
            prop::collection::vec((any::<u128>(), any::<u64>(), 1_u32..4, any::<u32>()), 0..6),
            any::<u32>(),
        )
            .prop_map(
                |(sequence, last_request_id, catalog_fingerprint, items, keys, item)| {
                    let key_items =
                        keys.iter().flat_map(|k| (0..k.2).map(move |j| item ^ j)).collect();
                    SnapshotState {
                        sequence,
                        last_request_id,
                        catalog_fingerprint,
                        items: items
                            .into_iter()
                            .map(|(id, quantity, weight)| SnapshotItem { id, quantity, weight })
                            .collect(),
                        key_window_keys: 10,
                        key_window_hours: 24,
                        keys: keys
                            .into_iter()
                            .map(|(key, first, count, unix_s)| SnapshotKey {
                                key_lo: key as u64,
                                key_hi: (key >> 64) as u64,
                                first_request_id: first,
                                count,
                                unix_s,
                            })
                            .collect(),
                        key_items,
                    }
                },
            )
    }

    /// Re-hashes the payload so only the edited field is wrong.
    fn rehash(file: &mut [u8]) {
        let h = sha256(&file[64..]);
        file[24..56].copy_from_slice(&h);
    }

    #[test]
    fn layout_is_as_documented() {
        let (file, hash) = encode(&sample());
        assert_eq!(&file[..8], b"RWPLSNP1");
        assert_eq!(&file[8..12], &2_u32.to_le_bytes());
        assert_eq!(&file[12..16], &[0; 4]);
        let payload_len = u64::from_le_bytes(file[16..24].try_into().unwrap());
        assert_eq!(payload_len as usize + 64, file.len());
        assert_eq!(&file[24..56], &sha256(&file[64..]));
        assert_eq!(&file[56..64], &[0; 8]);
        assert_eq!(hash, sha256(&file));
    }

    #[test]
    fn round_trip_and_determinism() {
        let (file, hash) = encode(&sample());
        assert_eq!(decode(&file), Ok(sample()));
        assert_eq!(encode(&sample()), (file, hash));
        let empty = SnapshotState {
            sequence: 0,
            last_request_id: 0,
            catalog_fingerprint: 0,
            items: vec![],
            key_window_keys: 1,
            key_window_hours: 1,
            keys: vec![],
            key_items: vec![],
        };
        assert_eq!(decode(&encode(&empty).0), Ok(empty));
    }

    #[test]
    fn decodes_from_a_misaligned_buffer() {
        let (file, _) = encode(&sample());
        let mut shifted = vec![0_u8; 1];
        shifted.extend_from_slice(&file);
        assert_eq!(decode(&shifted[1..]), Ok(sample()));
    }

    #[test]
    fn every_bit_flip_is_an_error() {
        let (file, _) = encode(&sample());
        for bit in 0..file.len() * 8 {
            let mut bad = file.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&bad).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let (file, _) = encode(&sample());
        for cut in 0..file.len() {
            assert!(decode(&file[..cut]).is_err(), "cut {cut}");
        }
        let mut longer = file.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer),
            Err(SnapshotFormatError::LengthMismatch {
                expected: file.len() as u64,
                got: file.len() as u64 + 1
            })
        );
    }

    #[test]
    fn each_error() {
        let (file, _) = encode(&sample());
        assert_eq!(decode(&file[..10]), Err(SnapshotFormatError::TooShort { len: 10 }));
        let mut bad = file.clone();
        bad[..8].copy_from_slice(b"RWPLWAL1");
        assert_eq!(decode(&bad), Err(SnapshotFormatError::BadMagic { got: *b"RWPLWAL1" }));
        let mut bad = file.clone();
        bad[8] = 3;
        assert_eq!(
            decode(&bad),
            Err(SnapshotFormatError::UnsupportedVersion { got: 3, supported: 2 })
        );
        bad[8] = 0;
        assert_eq!(
            decode(&bad),
            Err(SnapshotFormatError::UnsupportedVersion { got: 0, supported: 2 })
        );
        let mut bad = file.clone();
        bad[13] = 1;
        assert_eq!(decode(&bad), Err(SnapshotFormatError::ReservedNotZero { offset: 13 }));
        let mut bad = file.clone();
        bad[63] = 1;
        assert_eq!(decode(&bad), Err(SnapshotFormatError::ReservedNotZero { offset: 63 }));
        let mut bad = file.clone();
        bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            decode(&bad),
            Err(SnapshotFormatError::LengthMismatch { expected: u64::MAX, got: file.len() as u64 })
        );
        let mut bad = file.clone();
        *bad.last_mut().unwrap() ^= 0x10;
        assert!(matches!(decode(&bad), Err(SnapshotFormatError::ChecksumMismatch { .. })));
        // A payload with a correct hash that rkyv refuses.
        let mut bad = file.clone();
        let n = bad.len();
        bad[n - 8..].fill(0xFF);
        rehash(&mut bad);
        assert!(matches!(decode(&bad), Err(SnapshotFormatError::Payload { .. })));
        // An empty payload with a correct hash.
        let mut bad = file[..64].to_vec();
        bad[16..24].fill(0);
        rehash(&mut bad);
        assert!(matches!(decode(&bad), Err(SnapshotFormatError::Payload { .. })));
    }

    #[test]
    fn errors_display_what_is_wrong() {
        let text = SnapshotFormatError::ChecksumMismatch { expected: [0xAB; 32], got: [0x01; 32] }
            .to_string();
        assert!(text.contains(&"ab".repeat(32)) && text.contains(&"01".repeat(32)), "{text}");
        let text =
            SnapshotFormatError::BadQuantity { item: "gold".into(), quantity: -5 }.to_string();
        assert!(text.contains("\"gold\"") && text.contains("-5"), "{text}");
        let text = SnapshotFormatError::LengthMismatch { expected: 100, got: 90 }.to_string();
        assert!(text.contains("90 bytes") && text.contains("says 100"), "{text}");
    }

    /// A version 1 file (what earlier releases wrote) still reads: no keys, the default
    /// window.
    #[test]
    fn version_1_files_still_read() {
        let old = v1(&sample());
        let file = encode_v1(&old).unwrap();
        assert_eq!(&file[8..12], &1_u32.to_le_bytes());
        let state = decode(&file).unwrap();
        assert_eq!(state, SnapshotState::from(old));
        let pool = state.to_pool().unwrap();
        assert_eq!(pool.keys, KeyState::default());
        assert_eq!(pool.items.len(), 3);
    }

    /// The key window survives the file: keys (both halves), ids, counts, times, outcomes.
    #[test]
    fn the_key_window_round_trips() {
        let state = sample().to_pool().unwrap();
        assert_eq!(state.keys.window, KeyWindow { keys: 1000, hours: 2 });
        assert_eq!(state.keys.records[0].key, (u128::from(u64::MAX) << 64) | 7);
        assert_eq!(state.keys.items, vec![Some(ItemIndex(0)), None, Some(ItemIndex(1))]);
        let back = SnapshotState::from_pool(&state, 3, 0xFEED);
        assert_eq!(back, sample());
        let (file, _) = encode(&back);
        assert_eq!(decode(&file).unwrap().to_pool(), Ok(state));
        let mut bad = sample();
        bad.key_items.pop();
        assert_eq!(bad.to_pool(), Err(SnapshotFormatError::KeyItems { expected: 3, got: 2 }));
    }

    #[test]
    fn pool_conversions() {
        let pool = PoolState {
            last_request_id: RequestId(77),
            items: vec![
                ItemState { id: "a".into(), quantity: Quantity::Finite(3), weight: 1 },
                ItemState { id: "b".into(), quantity: Quantity::Unlimited, weight: 2 },
            ],
            keys: KeyState::default(),
        };
        let snap = SnapshotState::from_pool(&pool, 9, 42);
        assert_eq!(snap.sequence, 9);
        assert_eq!(snap.catalog_fingerprint, 42);
        assert_eq!(snap.last_request_id, 77);
        assert_eq!(snap.items[1].quantity, -1);
        assert_eq!(snap.to_pool(), Ok(pool.clone()));
        let (file, _) = encode(&snap);
        assert_eq!(decode(&file).unwrap().to_pool(), Ok(pool));
        let mut bad = snap;
        bad.items[1].quantity = -2;
        assert_eq!(
            bad.to_pool(),
            Err(SnapshotFormatError::BadQuantity { item: "b".into(), quantity: -2 })
        );
    }

    #[test]
    fn catalog_fingerprints() {
        let a = [ItemSpec::new("gold", 10, 20), ItemSpec::new("mud", -1, 70)];
        let fp = catalog_fingerprint(&a);
        assert_eq!(fp, catalog_fingerprint(&a.clone()));
        let variants = [
            vec![ItemSpec::new("gold", 11, 20), ItemSpec::new("mud", -1, 70)],
            vec![ItemSpec::new("gold", 10, 21), ItemSpec::new("mud", -1, 70)],
            vec![ItemSpec::new("gold", 10, 20), ItemSpec::new("mud", 0, 70)],
            vec![ItemSpec::new("mud", -1, 70), ItemSpec::new("gold", 10, 20)],
            vec![ItemSpec::new("gold", 10, 20)],
            // Id boundaries are part of the encoding.
            vec![ItemSpec::new("goldm", 10, 20), ItemSpec::new("ud", -1, 70)],
            vec![],
        ];
        for v in variants {
            assert_ne!(catalog_fingerprint(&v), fp, "{v:?}");
        }
    }

    proptest! {
        #[test]
        fn state_round_trip(state in arb_state()) {
            let (file, hash) = encode(&state);
            prop_assert_eq!(hash, sha256(&file));
            prop_assert_eq!(decode(&file), Ok(state));
        }

        #[test]
        fn bit_flip_is_an_error(state in arb_state(), bit in any::<prop::sample::Index>()) {
            let (mut file, _) = encode(&state);
            let bit = bit.index(file.len() * 8);
            file[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&file).is_err());
        }

        #[test]
        fn truncation_is_an_error(state in arb_state(), cut in any::<prop::sample::Index>()) {
            let (file, _) = encode(&state);
            let cut = cut.index(file.len());
            prop_assert!(decode(&file[..cut]).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&bytes);
        }

        /// Random payloads behind a valid header and hash reach rkyv: refused or accepted,
        /// never a panic.
        #[test]
        fn arbitrary_payloads_never_panic(
            payload in prop::collection::vec(any::<u8>(), 0..400),
            version in 1_u32..3,
        ) {
            let mut file = vec![0_u8; 64];
            file[..8].copy_from_slice(&SNAPSHOT_MAGIC);
            file[8..12].copy_from_slice(&version.to_le_bytes());
            file[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
            file.extend_from_slice(&payload);
            rehash(&mut file);
            let _ = decode(&file);
        }
    }
}
