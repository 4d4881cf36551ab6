//! Log frames: one record each (a batch frame: a group's draws), a CRC-32C per frame.
//!
//! # Byte layout
//!
//! ```text
//!  offset size field
//!  0      4    crc32c, u32 LE, over bytes 4..frame_len (header rest + payload + zero padding)
//!  4      4    payload_len, u32 LE: payload bytes before padding, at most FRAME_LEN_MAX
//!  8      1    kind: 1 draw, 2 update, 3 snapshot marker, 4 commit, 5 batch, 6 seed
//!  9      1    flags: 0 (any set bit is refused, see "Versions")
//!  10     6    reserved, zero
//!  16     ..   payload: an rkyv archived root (kind 5: hand-packed fields, see
//!              super::batch), zero-padded to a multiple of 16
//!  frame_len = 16 + round_up(payload_len, 16)
//! ```
//!
//! All integers are little-endian, both in the header and inside the rkyv payloads (rkyv's
//! default `little_endian` format, 32-bit relative pointers, natural alignment).
//!
//! Frames start at 16-byte aligned offsets of a 16-byte aligned buffer (a memory map, or an
//! `rkyv::util::AlignedVec<16>` holding the file), so every payload starts 16-byte aligned and
//! rkyv can read it in place. [`decode`] refuses a misaligned start with an error.
//!
//! A frame whose 16 header bytes are all zero marks the end of written data: segments are
//! created zero-filled, and a valid frame never has an all-zero header (its `kind` is non-zero).
//!
//! Payloads by kind (sizes are those of the archived root; strings longer than 8 bytes are
//! stored before the root, rkyv style):
//!
//! ```text
//!  kind 1 draw      DrawRecord   { request_id u64, item u32 (u32::MAX = empty draw), flags u32 (0) }
//!                   16 bytes, frame 32 bytes (DRAW_FRAME_SIZE)
//!  kind 2 update    UpdateRecord { quantity i64 (-1 = unlimited), index u32, weight u32, item_id String }
//!                   24-byte root + id bytes, id at most ITEM_ID_LEN_MAX bytes
//!  kind 3 snapshot  SnapshotMarker { sequence u64, last_request_id u64, sha256 [u8; 32], file_name String }
//!                   56-byte root + name bytes, name at most FILE_NAME_LEN_MAX bytes
//!  kind 4 commit    CommitRecord { last_request_id u64, group u64 }
//!                   16 bytes, frame 32 bytes (COMMIT_FRAME_SIZE)
//!  kind 5 batch     a group's draws: first request id, count, time, item width, keys, then
//!                   the item indices packed at 1, 2 or 4 bytes (layout in super::batch);
//!                   24 + 24 * keys + width * count bytes
//!  kind 6 seed      SeedRecord   { first_request_id u64, segment u64, generator u32,
//!                                  revealed u32 (0 or 1), commitment [u8; 32], seed [u8; 32] }
//!                   88 bytes, frame 112 bytes (SEED_FRAME_SIZE): a commitment (revealed 0,
//!                   seed zero) or a reveal (revealed 1) of the draw seed used from request id
//!                   first_request_id on; see "Seed frames"
//! ```
//!
//! # Seed frames
//!
//! Every run of draws comes from a seed fixed before it (`pool::DrawSeed`, `pool::rng`). A
//! journal that draws writes, each time in a group of its own (the seed frame, then a commit
//! frame with the unchanged last request id):
//!
//! - a **commitment** before the first draw of a new seed: right after a new segment's
//!   snapshot marker, and where a restart continues an existing segment. `commitment` is
//!   SHA-256(seed || segment u64 LE || pool name), `segment` the sequence number of the
//!   segment the commitment was first written in, `first_request_id` the first request id
//!   that may draw from it;
//! - a **reveal** once no more draws come from that seed: at the end of a segment closed by a
//!   rotation, and before a clean shutdown closes the segment. It repeats the commitment's
//!   fields, with `revealed` 1 and the seed.
//!
//! Draws between a commitment and the next seed frame come from that commitment's seed. A
//! crash loses the seed (it is in memory only until the reveal): the run then ends
//! unrevealed, and the restart commits to a new seed. Generator: 1 (`pool::rng`).
//!
//! # Checks on the way in, and what a mismatch means
//!
//! [`decode`] checks, in this order: alignment of the start; the all-zero header (end of data,
//! `Ok(None)`); `payload_len` against [`FRAME_LEN_MAX`]; that the whole frame is present; the
//! CRC (before any other byte is trusted, and before rkyv touches the payload); then the
//! reserved bytes, the flags, the kind, the zero padding, the exact payload size of
//! fixed-size records, rkyv's checked `access` (bytecheck), and the record's own fields
//! (reserved draw flags, string length limits; for a batch, every field as listed in
//! [`super::batch`]). A batch decodes as one [`Record::Batch`]; the walkers in
//! [`super::reader`] hand it out as keys and draws. Every failure is a [`FrameError`]; nothing
//! panics on any input. The frame layer does not decide what a bad frame means: recovery does
//! (a bad frame after the last commit of an open segment is a torn tail and is trimmed; so
//! is one followed by a later commit when a lost sector lies between, which only a torn
//! write leaves, see [`super::reader::torn_write_between`]; any other bad frame before a
//! commit, or anywhere in a closed segment, is damage and recovery refuses, see
//! [`super::reader::find_commit_after`]).
//!
//! # Media assumptions
//!
//! A crash can leave any suffix of the unsynced writes missing or partly written, at any byte
//! granularity (a torn write); synced bytes stay as written. A device that writes 512-byte
//! sectors whole (the usual promise) may still keep a later sector of an unsynced write and
//! lose an earlier one: recovery reads such a hole (zeros to a sector boundary, or a zero
//! sector) in the open segment as the end of the log, dropping the unacknowledged groups
//! after it. The price: a lost write of *synced* data that reads back as zeros would be taken
//! for a torn tail too (a flipped bit, or any non-zero garbage, is still damage). Bits can also flip at rest. The
//! per-frame CRC-32C detects every torn or flipped frame with probability 1 - 2^-32 (all
//! single-bit errors for certain); the segment file is zero-filled when created, so an
//! untouched region reads as "end of data".
//!
//! # Versions
//!
//! The segment header's format version (see [`super::header`]) says which kinds a segment
//! may hold:
//!
//! ```text
//!  segment version  frames it may hold                                written by
//!  1, 2             kinds 1-4: one 32-byte kind-1 frame per draw      earlier releases
//!  3                kinds 1-5: a group's draws in one kind-5 batch    the previous release
//!  4                kinds 1-6: seed frames (kind 6)                   this release (kinds 2-6)
//! ```
//!
//! This release writes only version-3 segments and never writes a kind-1 frame; it reads
//! versions 1 and 2 as they are (a restart that resumes appending to such a segment rewrites
//! its header as version 3 first, so the kind-1 frames already in it stay valid). A kind-5
//! frame inside a version-1 or version-2 segment is refused
//! ([`FrameError::KindNotInVersion`]): the walkers in [`super::reader`] take the segment's
//! version. An older binary refuses a version-3 segment up front ("unsupported segment
//! format version") instead of stopping at the first batch frame. Any non-zero `flags` byte
//! is refused ([`FrameError::UnsupportedFlags`], reported only after the CRC matched, so it
//! means "written by a newer version", not damage): a later format that needs a per-frame
//! choice sets a flag bit and raises the segment version.

#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::unwrap_used))]

use std::fmt;

use rkyv::rancor::{self, Source, Strategy};
use rkyv::ser::writer::Buffer;
use rkyv::ser::Serializer;
use rkyv::{Archive, Deserialize, Serialize};

use super::batch::{self, Batch};

/// Frames start at offsets that are multiples of this, and their lengths are multiples of it.
pub const FRAME_ALIGN: usize = 16;

/// Size of the fixed frame header (CRC, payload length, kind, flags, reserved).
pub const FRAME_HEADER_SIZE: usize = 16;

/// Length of every draw frame: header plus the 16-byte `DrawRecord` archive.
pub const DRAW_FRAME_SIZE: usize = FRAME_HEADER_SIZE + DRAW_PAYLOAD_LEN;

/// Length of every commit frame: header plus the 16-byte `CommitRecord` archive.
pub const COMMIT_FRAME_SIZE: usize = FRAME_HEADER_SIZE + COMMIT_PAYLOAD_LEN;

/// Largest `payload_len` a frame may declare; [`decode`] refuses larger ones.
pub const FRAME_LEN_MAX: usize = 1 << 20;

/// Longest item id (in bytes) an update frame may carry.
pub const ITEM_ID_LEN_MAX: usize = 1024;

/// Longest snapshot file name (in bytes) a snapshot marker frame may carry.
pub const FILE_NAME_LEN_MAX: usize = 255;

pub use super::batch::EMPTY_ITEM;

/// Byte range of the reserved header bytes.
const RESERVED: std::ops::Range<usize> = 10..16;

const DRAW_PAYLOAD_LEN: usize = std::mem::size_of::<ArchivedDrawRecord>();
const COMMIT_PAYLOAD_LEN: usize = std::mem::size_of::<ArchivedCommitRecord>();

// The fixed-size frames are exactly one header plus one 16-byte archive, and every archived
// root fits the 16-byte alignment the frame layout guarantees.
const _: () = assert!(FRAME_HEADER_SIZE.is_multiple_of(FRAME_ALIGN));
const _: () = assert!(FRAME_ALIGN.is_power_of_two());
const _: () = assert!(DRAW_PAYLOAD_LEN == 16);
const _: () = assert!(COMMIT_PAYLOAD_LEN == 16);
const _: () = assert!(DRAW_FRAME_SIZE == 32);
const _: () = assert!(COMMIT_FRAME_SIZE == 32);
const _: () = assert!(std::mem::align_of::<ArchivedDrawRecord>() <= FRAME_ALIGN);
const _: () = assert!(std::mem::align_of::<ArchivedCommitRecord>() <= FRAME_ALIGN);
const _: () = assert!(std::mem::align_of::<ArchivedUpdateRecord>() <= FRAME_ALIGN);
const _: () = assert!(std::mem::align_of::<ArchivedSnapshotMarker>() <= FRAME_ALIGN);
const _: () = assert!(std::mem::size_of::<ArchivedUpdateRecord>() == UPDATE_ROOT_LEN);
const _: () = assert!(std::mem::size_of::<ArchivedSnapshotMarker>() == SNAPSHOT_ROOT_LEN);
const _: () = assert!(FRAME_LEN_MAX <= u32::MAX as usize);
const _: () = assert!(update_frame_len(ITEM_ID_LEN_MAX) <= FRAME_HEADER_SIZE + FRAME_LEN_MAX);
const _: () = assert!(snapshot_frame_len(FILE_NAME_LEN_MAX) <= FRAME_HEADER_SIZE + FRAME_LEN_MAX);

const UPDATE_ROOT_LEN: usize = 24;

/// Length of every seed frame: header plus the 88-byte `SeedRecord` archive, padded.
pub const SEED_FRAME_SIZE: usize = FRAME_HEADER_SIZE + 96;
const SEED_PAYLOAD_LEN: usize = std::mem::size_of::<ArchivedSeedRecord>();
const _: () = assert!(SEED_PAYLOAD_LEN == 88);
const _: () = assert!(frame_len(SEED_PAYLOAD_LEN) == SEED_FRAME_SIZE);
const _: () = assert!(std::mem::align_of::<ArchivedSeedRecord>() <= FRAME_ALIGN);
const SNAPSHOT_ROOT_LEN: usize = 56;

/// Payload of a draw frame (kind 1).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
struct DrawRecord {
    request_id: u64,
    /// Item index, or [`EMPTY_ITEM`].
    item: u32,
    /// Reserved for per-draw flags; 0 in version 1.
    flags: u32,
}

/// Payload of a commit frame (kind 4).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
struct CommitRecord {
    last_request_id: u64,
    group: u64,
}

/// Payload of an update frame (kind 2). Fields are ordered so the archive has no padding.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
struct UpdateRecord {
    quantity: i64,
    index: u32,
    weight: u32,
    item_id: String,
}

/// Payload of a snapshot marker frame (kind 3). Fields are ordered so the archive has no
/// padding.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
struct SnapshotMarker {
    sequence: u64,
    last_request_id: u64,
    sha256: [u8; 32],
    file_name: String,
}

/// Payload of a seed frame (kind 6). Fields are ordered so the archive has no padding.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
struct SeedRecord {
    first_request_id: u64,
    segment: u64,
    generator: u32,
    revealed: u32,
    commitment: [u8; 32],
    seed: [u8; 32],
}

/// One decoded log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The outcome of one draw.
    Draw {
        /// The request id the core assigned.
        request_id: u64,
        /// The item's index, or `None` for an empty draw.
        item: Option<u32>,
    },
    /// An item's new quantity and weight (also adds an item when `index` is new).
    Update {
        /// The item's index.
        index: u32,
        /// The item's id.
        item_id: String,
        /// The new quantity, `-1` for unlimited.
        quantity: i64,
        /// The new weight.
        weight: u32,
    },
    /// The snapshot this segment starts from.
    Snapshot {
        /// The snapshot's sequence number.
        sequence: u64,
        /// The snapshot's file name (`snapshot.NNNNNN`).
        file_name: String,
        /// SHA-256 of the whole snapshot file.
        sha256: [u8; 32],
        /// The last request id the snapshot includes.
        last_request_id: u64,
    },
    /// Closes a group: everything before it up to `last_request_id` is committed.
    Commit {
        /// The last request id in the group.
        last_request_id: u64,
        /// The group's number.
        group: u64,
    },
    /// A group's draws in one frame (kind 5), as [`decode`] returns it. The walkers in
    /// [`super::reader`] never yield it: they expand it into a [`Record::Key`] before each
    /// keyed request and one [`Record::Draw`] per draw.
    Batch(Batch),
    /// A commitment to, or the reveal of, the seed that draws from `first_request_id` on
    /// (kind 6; "Seed frames" above).
    Seed {
        /// The first request id that may draw from this seed.
        first_request_id: u64,
        /// The segment the commitment was first written in (part of the commitment).
        segment: u64,
        /// The generator the draws use (`pool::GENERATOR`).
        generator: u32,
        /// SHA-256(seed || segment || pool name).
        commitment: [u8; 32],
        /// The seed, in a reveal; `None` in a commitment.
        revealed: Option<[u8; 32]>,
    },
    /// The next `count` draws (request ids `first_request_id..`) answer one request that
    /// carried the idempotency key `key`; yielded by the walkers right before those draws,
    /// with their batch frame's offset.
    Key {
        /// The idempotency key (never 0).
        key: u128,
        /// The request id of the request's first draw.
        first_request_id: u64,
        /// The request's draws.
        count: u32,
        /// Wall-clock seconds when the batch holding the request was written.
        unix_s: u32,
    },
}

impl Record {
    /// The kind byte this record is framed with.
    #[must_use]
    pub fn kind(&self) -> FrameKind {
        match self {
            Record::Draw { .. } => FrameKind::Draw,
            Record::Update { .. } => FrameKind::Update,
            Record::Snapshot { .. } => FrameKind::Snapshot,
            Record::Commit { .. } => FrameKind::Commit,
            Record::Batch(_) | Record::Key { .. } => FrameKind::Batch,
            Record::Seed { .. } => FrameKind::Seed,
        }
    }

    /// Encodes this record with the matching `encode_*` function.
    ///
    /// # Errors
    /// As the matching `encode_*` function; a draw or commit that does not fit is
    /// [`FrameError::BufferTooSmall`] here instead of a panic.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, FrameError> {
        match self {
            Record::Draw { request_id, item } => {
                check_room(buf, DRAW_FRAME_SIZE)?;
                if *item == Some(EMPTY_ITEM) {
                    return Err(FrameError::BadField {
                        kind: FrameKind::Draw,
                        field: "item",
                        value: u64::from(EMPTY_ITEM),
                    });
                }
                Ok(encode_draw(buf, *request_id, *item))
            }
            Record::Commit { last_request_id, group } => {
                check_room(buf, COMMIT_FRAME_SIZE)?;
                Ok(encode_commit(buf, *last_request_id, *group))
            }
            Record::Update { index, item_id, quantity, weight } => {
                encode_update(buf, *index, item_id, *quantity, *weight)
            }
            Record::Snapshot { sequence, file_name, sha256, last_request_id } => {
                encode_snapshot(buf, *sequence, file_name, sha256, *last_request_id)
            }
            Record::Batch(b) => {
                let items: Vec<u32> = b.items.iter().map(|i| i.unwrap_or(EMPTY_ITEM)).collect();
                encode_batch(buf, b.first_request_id, b.unix_s, b.width, &b.keys, &items)
            }
            Record::Seed { first_request_id, segment, generator, commitment, revealed } => {
                let seed = SeedFields {
                    first_request_id: *first_request_id,
                    segment: *segment,
                    generator: *generator,
                    commitment: *commitment,
                    revealed: *revealed,
                };
                encode_seed(buf, &seed)
            }
            Record::Key { .. } => Err(FrameError::Batch {
                field: "record",
                value: 0,
                expected: "a whole batch (a key is part of a batch frame)",
            }),
        }
    }
}

/// The frame kinds (byte 8 of the frame header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A draw outcome.
    Draw = 1,
    /// An item update.
    Update = 2,
    /// A snapshot marker.
    Snapshot = 3,
    /// A group commit.
    Commit = 4,
    /// A group's draws (segment format version 3).
    Batch = 5,
    /// A seed's commitment or reveal (segment format version 4).
    Seed = 6,
}

impl FrameKind {
    /// The kind for a header byte, `None` for an unknown one.
    #[must_use]
    pub fn from_u8(byte: u8) -> Option<FrameKind> {
        match byte {
            1 => Some(FrameKind::Draw),
            2 => Some(FrameKind::Update),
            3 => Some(FrameKind::Snapshot),
            4 => Some(FrameKind::Commit),
            5 => Some(FrameKind::Batch),
            6 => Some(FrameKind::Seed),
            _ => None,
        }
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameKind::Draw => "draw",
            FrameKind::Update => "update",
            FrameKind::Snapshot => "snapshot marker",
            FrameKind::Commit => "commit",
            FrameKind::Batch => "batch",
            FrameKind::Seed => "seed",
        })
    }
}

/// Why a frame could not be encoded or decoded. The caller adds the file and offset.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame does not start at a 16-byte aligned address.
    Misaligned {
        /// The start address modulo [`FRAME_ALIGN`].
        misalignment: usize,
    },
    /// The bytes end before the frame does.
    Truncated {
        /// Bytes the frame needs (16 for the header, else the frame length).
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// `payload_len` is over [`FRAME_LEN_MAX`].
    PayloadTooLong {
        /// The declared payload length.
        payload_len: u32,
    },
    /// The CRC-32C stored in the frame does not match its bytes.
    ChecksumMismatch {
        /// The CRC stored in the frame header.
        expected: u32,
        /// The CRC computed over the frame's bytes.
        got: u32,
    },
    /// A reserved header byte is not zero.
    ReservedNotZero {
        /// Offset of the byte within the frame.
        offset: usize,
        /// Its value.
        value: u8,
    },
    /// The flags byte has bits version 1 does not know (a newer writer).
    UnsupportedFlags {
        /// The flags byte.
        flags: u8,
    },
    /// The kind byte is not one of version 1's kinds.
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
    /// A padding byte after the payload is not zero.
    PaddingNotZero {
        /// Offset of the byte within the frame.
        offset: usize,
    },
    /// A fixed-size record has the wrong payload length.
    PayloadLength {
        /// The frame's kind.
        kind: FrameKind,
        /// The only length this kind may have.
        expected: usize,
        /// The declared payload length.
        got: usize,
    },
    /// rkyv's validation refused the payload.
    Payload {
        /// The frame's kind.
        kind: FrameKind,
        /// rkyv's message.
        reason: String,
    },
    /// A record field has a value version 1 does not allow.
    BadField {
        /// The frame's kind.
        kind: FrameKind,
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// An item id (update frame) is longer than [`ITEM_ID_LEN_MAX`].
    ItemIdTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A snapshot file name is longer than [`FILE_NAME_LEN_MAX`].
    FileNameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A batch frame field (see [`super::batch`]) has a value the format does not allow.
    Batch {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// What it should be.
        expected: &'static str,
    },
    /// A frame kind the segment's format version does not allow (a batch frame in a segment
    /// of version 1 or 2).
    KindNotInVersion {
        /// The frame's kind.
        kind: FrameKind,
        /// The segment's format version.
        version: u32,
    },
    /// The output buffer is too small for the frame (encoders only).
    BufferTooSmall {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Misaligned { misalignment } => write!(
                f,
                "frame start is not {FRAME_ALIGN}-byte aligned (address % {FRAME_ALIGN} = \
                 {misalignment})"
            ),
            FrameError::Truncated { needed, available } => {
                write!(f, "truncated frame: needs {needed} bytes, only {available} remain")
            }
            FrameError::PayloadTooLong { payload_len } => {
                write!(f, "payload_len is {payload_len}: at most {FRAME_LEN_MAX} is allowed")
            }
            FrameError::ChecksumMismatch { expected, got } => write!(
                f,
                "frame checksum mismatch: header says crc32c {expected:#010x}, bytes give \
                 {got:#010x}"
            ),
            FrameError::ReservedNotZero { offset, value } => {
                write!(f, "reserved header byte {offset} is {value:#04x}, expected 0")
            }
            FrameError::UnsupportedFlags { flags } => write!(
                f,
                "frame flags {flags:#04x} are not supported (version 1 expects 0; written by a \
                 newer version?)"
            ),
            FrameError::UnknownKind { kind } => write!(
                f,
                "unknown frame kind {kind} (expected 1 draw, 2 update, 3 snapshot marker, 4 \
                 commit or 5 batch)"
            ),
            FrameError::PaddingNotZero { offset } => {
                write!(f, "padding byte {offset} of the frame is not zero")
            }
            FrameError::PayloadLength { kind, expected, got } => {
                write!(f, "{kind} frame payload_len is {got}, expected {expected}")
            }
            FrameError::Payload { kind, reason } => {
                write!(f, "{kind} frame payload is not a valid archive: {reason}")
            }
            FrameError::BadField { kind, field, value } => {
                write!(f, "{kind} frame field {field} has invalid value {value}")
            }
            FrameError::ItemIdTooLong { len } => {
                write!(f, "item_id is {len} bytes long: at most {ITEM_ID_LEN_MAX} are allowed")
            }
            FrameError::FileNameTooLong { len } => write!(
                f,
                "snapshot file name is {len} bytes long: at most {FILE_NAME_LEN_MAX} are allowed"
            ),
            FrameError::Batch { field, value, expected } => {
                write!(f, "batch frame field {field} is {value}, expected {expected}")
            }
            FrameError::KindNotInVersion { kind, version } => write!(
                f,
                "{kind} frame in a segment of format version {version} (such frames need \
                 version {})",
                if *kind == FrameKind::Seed { 4 } else { 3 }
            ),
            FrameError::BufferTooSmall { needed, available } => {
                write!(f, "buffer too small for the frame: needs {needed} bytes, has {available}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

impl From<batch::BatchError> for FrameError {
    fn from(e: batch::BatchError) -> FrameError {
        match e {
            batch::BatchError::Field { field, value, expected } => {
                FrameError::Batch { field, value, expected }
            }
            batch::BatchError::Length { expected, got } => {
                FrameError::PayloadLength { kind: FrameKind::Batch, expected, got }
            }
            batch::BatchError::BufferTooSmall { needed, available } => {
                FrameError::BufferTooSmall { needed, available }
            }
        }
    }
}

/// Frame length for a payload of `payload_len` bytes: the header plus the payload rounded up
/// to [`FRAME_ALIGN`]. Saturates instead of overflowing.
#[must_use]
pub const fn frame_len(payload_len: usize) -> usize {
    let padded = match payload_len.checked_next_multiple_of(FRAME_ALIGN) {
        Some(p) => p,
        None => usize::MAX,
    };
    FRAME_HEADER_SIZE.saturating_add(padded)
}

/// An upper bound on the length of an update frame whose item id is `item_id_len` bytes long
/// (exact when rkyv stores the id out of line, that is for ids longer than 8 bytes whose
/// length is a multiple of 8; at most 16 bytes over otherwise).
#[must_use]
pub const fn update_frame_len(item_id_len: usize) -> usize {
    // rkyv writes out-of-line string bytes first, then pads to the root's alignment (8), then
    // the root. Rounding the id up to 8 covers both the inline and the out-of-line case.
    let id = match item_id_len.checked_next_multiple_of(8) {
        Some(n) => n,
        None => usize::MAX,
    };
    frame_len(id.saturating_add(UPDATE_ROOT_LEN))
}

/// An upper bound on the length of a snapshot marker frame whose file name is
/// `file_name_len` bytes long (see [`update_frame_len`]).
#[must_use]
pub const fn snapshot_frame_len(file_name_len: usize) -> usize {
    let name = match file_name_len.checked_next_multiple_of(8) {
        Some(n) => n,
        None => usize::MAX,
    };
    frame_len(name.saturating_add(SNAPSHOT_ROOT_LEN))
}

/// The length of a batch frame of `count` draws and `keys_len` keys at `width` bytes per
/// item (saturates).
#[must_use]
pub const fn batch_frame_len(count: usize, keys_len: usize, width: u8) -> usize {
    frame_len(batch::payload_len(count, keys_len, width))
}

/// Encodes a batch frame (kind 5) into the start of `buf`: draws with request ids
/// `first_request_id..` and item indices `items` (`EMPTY_ITEM` = empty draw) packed at
/// `width` bytes, the keyed requests `keys`, the time `unix_s`. Returns its length,
/// [`batch_frame_len`]`(items.len(), keys.len(), width)`.
///
/// Called once per group on the core thread: no allocation; the CRC is one pass over the
/// frame.
///
/// # Errors
/// [`FrameError::Batch`] for what [`super::batch::encode_payload`] refuses (bad width, no
/// draws, bad keys, an item that does not fit the width), [`FrameError::PayloadTooLong`]
/// over [`FRAME_LEN_MAX`], [`FrameError::BufferTooSmall`] if the frame does not fit in `buf`.
pub fn encode_batch(
    buf: &mut [u8],
    first_request_id: u64,
    unix_s: u32,
    width: u8,
    keys: &[batch::BatchKey],
    items: &[u32],
) -> Result<usize, FrameError> {
    let payload_len = batch::payload_len(items.len(), keys.len(), width);
    if payload_len > FRAME_LEN_MAX {
        return Err(FrameError::PayloadTooLong {
            payload_len: u32::try_from(payload_len).unwrap_or(u32::MAX),
        });
    }
    let len = frame_len(payload_len);
    let available = buf.len();
    let frame = buf.get_mut(..len).ok_or(FrameError::BufferTooSmall { needed: len, available })?;
    let (payload, padding) = frame
        .get_mut(FRAME_HEADER_SIZE..)
        .unwrap_or_default()
        .split_at_mut(payload_len.min(len - FRAME_HEADER_SIZE));
    batch::encode_payload(payload, first_request_id, unix_s, width, keys, items)?;
    padding.fill(0);
    // Cannot fail: at most FRAME_LEN_MAX, checked above.
    let payload_len = u32::try_from(payload_len).unwrap_or(u32::MAX);
    seal(frame, payload_len, FrameKind::Batch);
    #[cfg(debug_assertions)]
    debug_check_batch(frame, first_request_id, keys.len(), items.len());
    Ok(len)
}

/// Encodes a draw frame into `buf[..DRAW_FRAME_SIZE]` and returns [`DRAW_FRAME_SIZE`].
///
/// Hot path: no allocation, no formatting. The frame must end up at a 16-byte aligned offset
/// of a 16-byte aligned buffer to be readable (the segment writer guarantees that: it is a
/// slice of the mapping at a 16-aligned offset); encoding itself does not depend on `buf`'s
/// address.
///
/// # Panics
/// If `buf.len() < DRAW_FRAME_SIZE` (the caller checks for room first). In debug builds, also
/// if `item == Some(u32::MAX)` (that value means "empty"), and if the frame does not decode
/// back to the same record (pair assertion).
pub fn encode_draw(buf: &mut [u8], request_id: u64, item: Option<u32>) -> usize {
    debug_assert!(item != Some(EMPTY_ITEM), "item index u32::MAX is reserved");
    let frame: &mut [u8; DRAW_FRAME_SIZE] =
        buf.first_chunk_mut().expect("encode_draw: buffer shorter than DRAW_FRAME_SIZE");
    let record = DrawRecord { request_id, item: item.unwrap_or(EMPTY_ITEM), flags: 0 };
    // The archived words: request_id, then item and flags (u32 LE each).
    let words = [request_id, u64::from(record.item) | (u64::from(record.flags) << 32)];
    encode_fixed(frame, FrameKind::Draw, &record, words);
    #[cfg(debug_assertions)]
    debug_check_pair(frame, &Record::Draw { request_id, item });
    DRAW_FRAME_SIZE
}

/// Encodes a commit frame into `buf[..COMMIT_FRAME_SIZE]` and returns [`COMMIT_FRAME_SIZE`].
///
/// Hot path, same contract as [`encode_draw`].
///
/// # Panics
/// If `buf.len() < COMMIT_FRAME_SIZE`; in debug builds also if the frame does not decode back
/// to the same record.
pub fn encode_commit(buf: &mut [u8], last_request_id: u64, group: u64) -> usize {
    let frame: &mut [u8; COMMIT_FRAME_SIZE] =
        buf.first_chunk_mut().expect("encode_commit: buffer shorter than COMMIT_FRAME_SIZE");
    let record = CommitRecord { last_request_id, group };
    encode_fixed(frame, FrameKind::Commit, &record, [last_request_id, group]);
    #[cfg(debug_assertions)]
    debug_check_pair(frame, &Record::Commit { last_request_id, group });
    COMMIT_FRAME_SIZE
}

/// Encodes an update frame into the start of `buf` and returns its length (a multiple of 16,
/// at most [`update_frame_len`]`(item_id.len())`).
///
/// # Errors
/// [`FrameError::ItemIdTooLong`] over [`ITEM_ID_LEN_MAX`] bytes,
/// [`FrameError::BufferTooSmall`] if the frame does not fit in `buf`.
pub fn encode_update(
    buf: &mut [u8],
    index: u32,
    item_id: &str,
    quantity: i64,
    weight: u32,
) -> Result<usize, FrameError> {
    if item_id.len() > ITEM_ID_LEN_MAX {
        return Err(FrameError::ItemIdTooLong { len: item_id.len() });
    }
    let record = UpdateRecord { quantity, index, weight, item_id: item_id.to_owned() };
    let bound = update_frame_len(item_id.len());
    let len = encode_variable(buf, FrameKind::Update, &record, bound)?;
    debug_assert!(len <= bound, "len={len} bound={bound}");
    Ok(len)
}

/// Encodes a snapshot marker frame into the start of `buf` and returns its length (a multiple
/// of 16, at most [`snapshot_frame_len`]`(file_name.len())`).
///
/// # Errors
/// [`FrameError::FileNameTooLong`] over [`FILE_NAME_LEN_MAX`] bytes,
/// [`FrameError::BufferTooSmall`] if the frame does not fit in `buf`.
pub fn encode_snapshot(
    buf: &mut [u8],
    sequence: u64,
    file_name: &str,
    sha256: &[u8; 32],
    last_request_id: u64,
) -> Result<usize, FrameError> {
    if file_name.len() > FILE_NAME_LEN_MAX {
        return Err(FrameError::FileNameTooLong { len: file_name.len() });
    }
    let record = SnapshotMarker {
        sequence,
        last_request_id,
        sha256: *sha256,
        file_name: file_name.to_owned(),
    };
    let bound = snapshot_frame_len(file_name.len());
    let len = encode_variable(buf, FrameKind::Snapshot, &record, bound)?;
    debug_assert!(len <= bound, "len={len} bound={bound}");
    Ok(len)
}

/// The fields of a seed frame ([`Record::Seed`]), for [`encode_seed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedFields {
    /// The first request id that may draw from the seed.
    pub first_request_id: u64,
    /// The segment the commitment was first written in.
    pub segment: u64,
    /// The generator.
    pub generator: u32,
    /// SHA-256(seed || segment || pool name).
    pub commitment: [u8; 32],
    /// The seed (a reveal), or `None` (a commitment).
    pub revealed: Option<[u8; 32]>,
}

/// Encodes a seed frame into `buf[..SEED_FRAME_SIZE]` and returns [`SEED_FRAME_SIZE`].
///
/// # Errors
/// [`FrameError::BufferTooSmall`] if `buf` is shorter than [`SEED_FRAME_SIZE`].
pub fn encode_seed(buf: &mut [u8], seed: &SeedFields) -> Result<usize, FrameError> {
    check_room(buf, SEED_FRAME_SIZE)?;
    let record = SeedRecord {
        first_request_id: seed.first_request_id,
        segment: seed.segment,
        generator: seed.generator,
        revealed: u32::from(seed.revealed.is_some()),
        commitment: seed.commitment,
        seed: seed.revealed.unwrap_or([0; 32]),
    };
    let len = encode_variable(buf, FrameKind::Seed, &record, SEED_FRAME_SIZE)?;
    debug_assert_eq!(len, SEED_FRAME_SIZE);
    Ok(len)
}

/// Decodes the frame that starts at `bytes[0]`.
///
/// `bytes` must start at a 16-byte aligned address (a 16-aligned offset of an aligned
/// buffer); it may extend past the frame. Returns `Ok(None)` at the end of written data: an
/// all-zero header, or fewer than 16 bytes left that are all zero. Otherwise returns the
/// record and the frame's length (where the next frame starts).
///
/// # Errors
/// A misaligned start, a truncated frame, `payload_len` over [`FRAME_LEN_MAX`], a CRC
/// mismatch, non-zero reserved or padding bytes, unknown flags or kind, a payload of the
/// wrong size, a payload rkyv's validation refuses, or a field version 1 does not allow. See
/// [`FrameError`]. Never panics.
pub fn decode(bytes: &[u8]) -> Result<Option<(Record, usize)>, FrameError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let misalignment = bytes.as_ptr().addr() % FRAME_ALIGN;
    if misalignment != 0 {
        return Err(FrameError::Misaligned { misalignment });
    }
    let Some(header) = bytes.first_chunk::<FRAME_HEADER_SIZE>() else {
        if bytes.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        return Err(FrameError::Truncated { needed: FRAME_HEADER_SIZE, available: bytes.len() });
    };
    if header.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let [c0, c1, c2, c3, p0, p1, p2, p3, kind, flags, ..] = *header;
    let expected_crc = u32::from_le_bytes([c0, c1, c2, c3]);
    let payload_len_u32 = u32::from_le_bytes([p0, p1, p2, p3]);
    let payload_len = payload_len_u32 as usize;
    if payload_len > FRAME_LEN_MAX {
        return Err(FrameError::PayloadTooLong { payload_len: payload_len_u32 });
    }
    let len = frame_len(payload_len);
    let Some(frame) = bytes.get(..len) else {
        return Err(FrameError::Truncated { needed: len, available: bytes.len() });
    };
    // Nothing but the length is trusted before the CRC matches.
    let got_crc = super::crc::crc32c(frame.get(4..).unwrap_or_default());
    if got_crc != expected_crc {
        return Err(FrameError::ChecksumMismatch { expected: expected_crc, got: got_crc });
    }
    for offset in RESERVED {
        match header.get(offset) {
            Some(0) | None => {}
            Some(&value) => return Err(FrameError::ReservedNotZero { offset, value }),
        }
    }
    if flags != 0 {
        return Err(FrameError::UnsupportedFlags { flags });
    }
    let Some(kind) = FrameKind::from_u8(kind) else {
        return Err(FrameError::UnknownKind { kind });
    };
    let payload_end = FRAME_HEADER_SIZE + payload_len;
    let (Some(payload), Some(padding)) =
        (frame.get(FRAME_HEADER_SIZE..payload_end), frame.get(payload_end..))
    else {
        return Err(FrameError::Truncated { needed: len, available: bytes.len() });
    };
    if let Some(i) = padding.iter().position(|&b| b != 0) {
        return Err(FrameError::PaddingNotZero { offset: payload_end + i });
    }
    let record = decode_payload(kind, payload)?;
    Ok(Some((record, len)))
}

/// The replay fast path: decodes the frame at `bytes[0]` if it is a valid draw frame and
/// returns `(request_id, item)`; `None` for anything else (another kind, damage, too few
/// bytes), for which [`decode`] gives the full answer. It checks everything `decode` checks
/// for a draw (CRC first, then rkyv's validation), but builds no [`Record`].
#[inline]
#[must_use]
pub fn decode_draw(bytes: &[u8]) -> Option<(u64, Option<u32>)> {
    let frame = bytes.get(..DRAW_FRAME_SIZE)?;
    if frame.as_ptr().addr() % FRAME_ALIGN != 0 {
        return None;
    }
    let header = frame.first_chunk::<FRAME_HEADER_SIZE>()?;
    let [c0, c1, c2, c3, p0, p1, p2, p3, kind, rest @ ..] = *header;
    if kind != FrameKind::Draw as u8
        || rest != [0; 7]
        || u32::from_le_bytes([p0, p1, p2, p3]) as usize != DRAW_PAYLOAD_LEN
    {
        return None;
    }
    if super::crc::crc32c(frame.get(4..)?) != u32::from_le_bytes([c0, c1, c2, c3]) {
        return None;
    }
    let r = rkyv::access::<ArchivedDrawRecord, rancor::Failure>(frame.get(FRAME_HEADER_SIZE..)?)
        .ok()?;
    if r.flags.to_native() != 0 {
        return None;
    }
    let item = r.item.to_native();
    Some((r.request_id.to_native(), (item != EMPTY_ITEM).then_some(item)))
}

/// Decodes a CRC-checked payload of `kind`.
fn decode_payload(kind: FrameKind, payload: &[u8]) -> Result<Record, FrameError> {
    let payload_error = |e: rancor::Error| FrameError::Payload { kind, reason: e.to_string() };
    match kind {
        FrameKind::Draw => {
            check_fixed_len(kind, payload, DRAW_PAYLOAD_LEN)?;
            let r = rkyv::access::<ArchivedDrawRecord, rancor::Error>(payload)
                .map_err(payload_error)?;
            let flags = r.flags.to_native();
            if flags != 0 {
                return Err(FrameError::BadField { kind, field: "flags", value: u64::from(flags) });
            }
            let item = r.item.to_native();
            Ok(Record::Draw {
                request_id: r.request_id.to_native(),
                item: (item != EMPTY_ITEM).then_some(item),
            })
        }
        FrameKind::Commit => {
            check_fixed_len(kind, payload, COMMIT_PAYLOAD_LEN)?;
            let r = rkyv::access::<ArchivedCommitRecord, rancor::Error>(payload)
                .map_err(payload_error)?;
            Ok(Record::Commit {
                last_request_id: r.last_request_id.to_native(),
                group: r.group.to_native(),
            })
        }
        FrameKind::Update => {
            let r = rkyv::access::<ArchivedUpdateRecord, rancor::Error>(payload)
                .map_err(payload_error)?;
            let item_id = r.item_id.as_str();
            if item_id.len() > ITEM_ID_LEN_MAX {
                return Err(FrameError::ItemIdTooLong { len: item_id.len() });
            }
            Ok(Record::Update {
                index: r.index.to_native(),
                item_id: item_id.to_owned(),
                quantity: r.quantity.to_native(),
                weight: r.weight.to_native(),
            })
        }
        FrameKind::Snapshot => {
            let r = rkyv::access::<ArchivedSnapshotMarker, rancor::Error>(payload)
                .map_err(payload_error)?;
            let file_name = r.file_name.as_str();
            if file_name.len() > FILE_NAME_LEN_MAX {
                return Err(FrameError::FileNameTooLong { len: file_name.len() });
            }
            Ok(Record::Snapshot {
                sequence: r.sequence.to_native(),
                file_name: file_name.to_owned(),
                sha256: r.sha256,
                last_request_id: r.last_request_id.to_native(),
            })
        }
        FrameKind::Batch => Ok(Record::Batch(batch::decode_payload(payload)?)),
        FrameKind::Seed => {
            check_fixed_len(kind, payload, SEED_PAYLOAD_LEN)?;
            let r = rkyv::access::<ArchivedSeedRecord, rancor::Error>(payload)
                .map_err(payload_error)?;
            let revealed = match r.revealed.to_native() {
                0 if r.seed.iter().any(|&b| b != 0) => {
                    return Err(FrameError::BadField { kind, field: "seed", value: 1 })
                }
                0 => None,
                1 => Some(r.seed),
                other => {
                    return Err(FrameError::BadField {
                        kind,
                        field: "revealed",
                        value: u64::from(other),
                    })
                }
            };
            Ok(Record::Seed {
                first_request_id: r.first_request_id.to_native(),
                segment: r.segment.to_native(),
                generator: r.generator.to_native(),
                commitment: r.commitment,
                revealed,
            })
        }
    }
}

/// The payload length a commit frame declares.
pub(crate) const COMMIT_PAYLOAD_LEN_U32: u32 = 16;
const _: () = assert!(COMMIT_PAYLOAD_LEN_U32 as usize == COMMIT_PAYLOAD_LEN);

fn check_fixed_len(kind: FrameKind, payload: &[u8], expected: usize) -> Result<(), FrameError> {
    if payload.len() == expected {
        Ok(())
    } else {
        Err(FrameError::PayloadLength { kind, expected, got: payload.len() })
    }
}

fn check_room(buf: &[u8], needed: usize) -> Result<(), FrameError> {
    if buf.len() < needed {
        Err(FrameError::BufferTooSmall { needed, available: buf.len() })
    } else {
        Ok(())
    }
}

/// Serializes `value` at the start of `out` with rkyv, without allocating, and returns the
/// number of bytes written (the archived root is the last bytes of them).
fn serialize_into<T, E>(value: &T, out: &mut [u8]) -> Result<usize, E>
where
    T: for<'b> Serialize<Strategy<Serializer<Buffer<'b>, (), ()>, E>>,
    E: Source,
{
    let mut serializer = Serializer::new(Buffer::from(out), (), ());
    rkyv::api::serialize_using::<_, E>(value, &mut serializer)?;
    Ok(serializer.into_writer().len())
}

/// Writes the header fields after the CRC (payload length, kind, zero flags and reserved),
/// then the CRC over `frame[4..]`. `frame` is exactly the frame.
fn seal(frame: &mut [u8], payload_len: u32, kind: FrameKind) {
    if let Some(header) = frame.first_chunk_mut::<FRAME_HEADER_SIZE>() {
        let [_, _, _, _, p0, p1, p2, p3, k, rest @ ..] = header;
        [*p0, *p1, *p2, *p3] = payload_len.to_le_bytes();
        *k = kind as u8;
        // Flags and reserved bytes: zero in version 1.
        rest.fill(0);
    }
    let crc = super::crc::crc32c(frame.get(4..).unwrap_or_default());
    if let Some(c) = frame.first_chunk_mut::<4>() {
        *c = crc.to_le_bytes();
    }
}

/// Encodes a 32-byte frame holding a 16-byte archive whose bytes are the little-endian
/// `words` (rkyv's archived layout of the record: `repr(C)`, little-endian; the debug-build
/// decode check and the tests compare). The CRC is computed from the values, not read back
/// from the frame (see [`super::crc::crc32c_fixed`]).
#[inline]
fn encode_fixed<T>(frame: &mut [u8; 32], kind: FrameKind, record: &T, words: [u64; 2])
where
    T: for<'b> Serialize<Strategy<Serializer<Buffer<'b>, (), ()>, rancor::Panic>>,
{
    let (_, payload) = frame.split_at_mut(FRAME_HEADER_SIZE);
    // Cannot fail: the archive is exactly 16 bytes (checked at compile time) and the buffer
    // holds 16; `Panic` keeps the hot path free of error allocation.
    let written = match serialize_into::<T, rancor::Panic>(record, payload) {
        Ok(n) => n,
        Err(never) => match never {},
    };
    debug_assert_eq!(written, 16, "fixed-size archive");
    // Header: the CRC, payload length 16, the kind, zero flags and reserved bytes; one store.
    let head_kind = u64::from(kind as u8);
    let [w0, w1] = words;
    let crc = super::crc::crc32c_fixed(16, head_kind, w0, w1);
    let header = u128::from(crc) | (16_u128 << 32) | (u128::from(head_kind) << 64);
    if let Some(h) = frame.first_chunk_mut::<FRAME_HEADER_SIZE>() {
        *h = header.to_le_bytes();
    }
}

/// Encodes a frame with a variable-size payload at the start of `buf`; `bound` is an upper
/// bound on the frame length, reported as `needed` when the payload does not fit.
fn encode_variable<T>(
    buf: &mut [u8],
    kind: FrameKind,
    record: &T,
    bound: usize,
) -> Result<usize, FrameError>
where
    T: for<'b> Serialize<Strategy<Serializer<Buffer<'b>, (), ()>, rancor::Failure>>,
{
    let available = buf.len();
    let too_small = |needed| FrameError::BufferTooSmall { needed, available };
    let payload_area = buf.get_mut(FRAME_HEADER_SIZE..).ok_or(too_small(bound))?;
    let payload_len =
        serialize_into::<T, rancor::Failure>(record, payload_area).map_err(|_| too_small(bound))?;
    let len = frame_len(payload_len);
    let frame = buf.get_mut(..len).ok_or(too_small(len))?;
    // Padding: zero, so the CRC is deterministic whatever the buffer held before.
    if let Some(padding) = frame.get_mut(FRAME_HEADER_SIZE + payload_len..) {
        padding.fill(0);
    }
    let payload_len = u32::try_from(payload_len).map_err(|_| too_small(len))?;
    seal(frame, payload_len, kind);
    Ok(len)
}

/// Pair assertion for [`encode_batch`], without allocating (the core thread calls it): the
/// CRC matches and the fixed fields decode to the same shape.
#[cfg(debug_assertions)]
fn debug_check_batch(frame: &[u8], first_request_id: u64, keys_len: usize, count: usize) {
    let stored = frame.first_chunk::<4>().map(|c| u32::from_le_bytes(*c));
    debug_assert_eq!(stored, Some(super::crc::crc32c(frame.get(4..).unwrap_or_default())));
    let payload_len = frame
        .get(4..)
        .and_then(|h| h.first_chunk::<4>())
        .map_or(0, |p| u32::from_le_bytes(*p) as usize);
    let payload = frame.get(FRAME_HEADER_SIZE..FRAME_HEADER_SIZE + payload_len).unwrap_or_default();
    let fixed = batch::decode_fixed(payload);
    debug_assert!(
        matches!(fixed, Ok((first, n, _, _, k)) if first == first_request_id
            && n as usize == count && k == keys_len),
        "batch frame does not decode to its shape: {fixed:?}"
    );
}

/// Pair assertion for the hot-path encoders: the frame just written decodes to `expected`.
#[cfg(debug_assertions)]
fn debug_check_pair(frame: &[u8; 32], expected: &Record) {
    #[repr(C, align(16))]
    struct Aligned([u8; 32]);
    let copy = Aligned(*frame);
    let decoded = decode(&copy.0);
    debug_assert_eq!(
        decoded,
        Ok(Some((expected.clone(), 32))),
        "frame does not decode to what was encoded"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::batch::BatchKey;
    use proptest::prelude::*;
    use proptest::strategy::Strategy;
    use rkyv::util::AlignedVec;

    proptest! {
        /// The replay fast path agrees with `decode` on every draw frame, and on any bytes
        /// (a bit flip included) it accepts only what `decode` accepts as the same draw.
        #[test]
        fn decode_draw_agrees_with_decode(
            request_id in any::<u64>(),
            item in proptest::option::of(0_u32..u32::MAX),
            flip in proptest::option::of(0_usize..DRAW_FRAME_SIZE * 8),
        ) {
            let mut buf = AlignedVec::<16>::new();
            buf.resize(DRAW_FRAME_SIZE, 0);
            encode_draw(&mut buf, request_id, item);
            if let Some(bit) = flip {
                buf[bit / 8] ^= 1 << (bit % 8);
            }
            let fast = decode_draw(&buf);
            let full = decode(&buf);
            match (fast, full) {
                (Some((r, i)), Ok(Some((Record::Draw { request_id: r2, item: i2 }, len)))) => {
                    prop_assert_eq!((r, i, len), (r2, i2, DRAW_FRAME_SIZE));
                }
                (None, Ok(Some((Record::Draw { .. }, _)))) => {
                    prop_assert!(false, "fast path refused a valid draw");
                }
                (Some(_), other) => prop_assert!(false, "fast path accepted what decode gives as {:?}", other),
                (None, _) => prop_assert!(flip.is_some(), "an intact frame must decode"),
            }
            if flip.is_none() {
                prop_assert_eq!(fast, Some((request_id, item)));
            }
        }
    }

    /// A 16-aligned copy of `bytes`.
    fn aligned(bytes: &[u8]) -> AlignedVec<16> {
        let mut v = AlignedVec::<16>::with_capacity(bytes.len());
        v.extend_from_slice(bytes);
        v
    }

    /// Encodes `record` into a buffer pre-filled with `fill`, returns exactly the frame.
    fn encode_with_fill(record: &Record, fill: u8) -> AlignedVec<16> {
        let mut buf = AlignedVec::<16>::new();
        buf.resize(4096, fill);
        let len = record.encode(&mut buf).expect("encodes");
        assert_eq!(len % FRAME_ALIGN, 0, "len={len}");
        buf.resize(len, 0);
        buf
    }

    fn encode(record: &Record) -> AlignedVec<16> {
        encode_with_fill(record, 0xA5)
    }

    /// Recomputes the CRC of a hand-made frame.
    fn reseal(frame: &mut [u8]) {
        let crc = crc32c::crc32c(&frame[4..]);
        frame[..4].copy_from_slice(&crc.to_le_bytes());
    }

    fn samples() -> Vec<Record> {
        vec![
            Record::Draw { request_id: 1, item: Some(0) },
            Record::Draw { request_id: u64::MAX, item: None },
            Record::Draw { request_id: 42, item: Some(u32::MAX - 1) },
            Record::Commit { last_request_id: 7, group: 3 },
            Record::Update { index: 0, item_id: String::new(), quantity: -1, weight: 0 },
            Record::Update { index: 5, item_id: "gold".into(), quantity: 10, weight: 20 },
            Record::Update {
                index: 9,
                item_id: "a much longer item id, stored out of line".into(),
                quantity: i64::MIN,
                weight: u32::MAX,
            },
            Record::Update {
                index: 1,
                item_id: "x".repeat(ITEM_ID_LEN_MAX),
                quantity: i64::MAX,
                weight: 1,
            },
            Record::Snapshot {
                sequence: 1,
                file_name: "snapshot.000001".into(),
                sha256: [0xEE; 32],
                last_request_id: 0,
            },
            Record::Snapshot {
                sequence: 2,
                file_name: "s".into(),
                sha256: [0; 32],
                last_request_id: 99,
            },
            Record::Batch(Batch {
                first_request_id: 1,
                unix_s: 1_700_000_000,
                width: 1,
                keys: vec![],
                items: vec![Some(0), None, Some(254)],
            }),
            Record::Batch(Batch {
                first_request_id: 1000,
                unix_s: 0,
                width: 2,
                keys: vec![
                    BatchKey { key: 1, offset: 0, count: 1 },
                    BatchKey { key: u128::MAX, offset: 2, count: 10 },
                ],
                items: (0..12).map(|i| (i != 3).then_some(i * 5000)).collect(),
            }),
            Record::Batch(Batch {
                first_request_id: u64::MAX,
                unix_s: u32::MAX,
                width: 4,
                keys: vec![BatchKey { key: 0xABCD << 100, offset: 0, count: 1 }],
                items: vec![Some(u32::MAX - 1)],
            }),
        ]
    }

    fn arb_batch() -> impl Strategy<Value = Batch> {
        let width = prop_oneof![Just(1_u8), Just(2_u8), Just(4_u8)];
        (width, 1_usize..60, any::<u64>(), any::<u32>()).prop_flat_map(
            |(width, n, first, unix_s)| {
                let top = match width {
                    1 => 0xFE,
                    2 => 0xFFFE,
                    _ => u32::MAX - 1,
                };
                let first = first.min(u64::MAX - n as u64 + 1);
                let items = prop::collection::vec(prop::option::of(0..=top), n);
                let keys = prop::collection::vec((0_u32..3, 1_u32..5, 1_u128..), 0..8);
                (items, keys).prop_map(move |(items, raw)| {
                    let mut keys = Vec::new();
                    let mut at = 0_u32;
                    for (gap, count, key) in raw {
                        let offset = at + gap;
                        if (offset + count) as usize > n {
                            break;
                        }
                        keys.push(BatchKey { key, offset, count });
                        at = offset + count;
                    }
                    Batch { first_request_id: first, unix_s, width, keys, items }
                })
            },
        )
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        prop_oneof![
            (any::<u64>(), prop::option::of(0..u32::MAX))
                .prop_map(|(request_id, item)| Record::Draw { request_id, item }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(last_request_id, group)| Record::Commit { last_request_id, group }),
            (
                any::<u32>(),
                prop_oneof!["\\PC{0,40}", "[a-z0-9_]{0,1024}"],
                any::<i64>(),
                any::<u32>()
            )
                .prop_map(|(index, item_id, quantity, weight)| Record::Update {
                    index,
                    item_id,
                    quantity,
                    weight
                }),
            (any::<u64>(), "[a-z0-9.]{0,255}", any::<[u8; 32]>(), any::<u64>()).prop_map(
                |(sequence, file_name, sha256, last_request_id)| {
                    Record::Snapshot { sequence, file_name, sha256, last_request_id }
                }
            ),
            arb_batch().prop_map(Record::Batch),
        ]
    }

    #[test]
    fn samples_round_trip() {
        for record in samples() {
            let frame = encode(&record);
            assert_eq!(decode(&frame), Ok(Some((record.clone(), frame.len()))), "{record:?}");
            assert_eq!(frame[8], record.kind() as u8);
        }
    }

    #[test]
    fn fixed_frames_have_fixed_sizes() {
        let mut buf = AlignedVec::<16>::new();
        buf.resize(64, 0xFF);
        assert_eq!(encode_draw(&mut buf, 1, Some(2)), DRAW_FRAME_SIZE);
        assert_eq!(encode_commit(&mut buf, 1, 2), COMMIT_FRAME_SIZE);
        assert_eq!(DRAW_FRAME_SIZE, 32);
        assert_eq!(COMMIT_FRAME_SIZE, 32);
        // Bytes past the frame are left alone.
        assert!(buf[32..].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn draw_payload_is_the_documented_layout() {
        let mut buf = AlignedVec::<16>::new();
        buf.resize(DRAW_FRAME_SIZE, 0);
        encode_draw(&mut buf, 0x0102_0304_0506_0708, Some(0x0A0B_0C0D));
        let mut expected = Vec::new();
        expected.extend_from_slice(&0x0102_0304_0506_0708_u64.to_le_bytes());
        expected.extend_from_slice(&0x0A0B_0C0D_u32.to_le_bytes());
        expected.extend_from_slice(&0_u32.to_le_bytes());
        assert_eq!(&buf[16..32], &expected[..]);
        assert_eq!(&buf[4..8], &16_u32.to_le_bytes());
        assert_eq!(buf[8], 1);
        assert_eq!(&buf[9..16], &[0; 7]);
        assert_eq!(&buf[..4], &crc32c::crc32c(&buf[4..32]).to_le_bytes());
        // The same bytes rkyv's high-level API produces.
        let rkyv_bytes = rkyv::to_bytes::<rancor::Error>(&DrawRecord {
            request_id: 0x0102_0304_0506_0708,
            item: 0x0A0B_0C0D,
            flags: 0,
        })
        .unwrap();
        assert_eq!(&buf[16..32], &rkyv_bytes[..]);
    }

    #[test]
    fn empty_draw_is_u32_max() {
        let frame = encode(&Record::Draw { request_id: 5, item: None });
        assert_eq!(&frame[24..28], &u32::MAX.to_le_bytes());
        let err = Record::Draw { request_id: 5, item: Some(u32::MAX) }.encode(&mut [0; 64]);
        assert!(matches!(err, Err(FrameError::BadField { field: "item", .. })));
    }

    #[test]
    fn end_of_data() {
        let zeros = aligned(&[0; 64]);
        assert_eq!(decode(&zeros), Ok(None));
        for k in 0..16 {
            assert_eq!(decode(&zeros[..k]), Ok(None), "k={k}");
        }
        assert_eq!(decode(&[]), Ok(None));
        let short = aligned(&[0, 0, 1]);
        assert_eq!(decode(&short), Err(FrameError::Truncated { needed: 16, available: 3 }));
    }

    #[test]
    fn misaligned_start_is_an_error() {
        let frame = encode(&samples()[0]);
        let mut bigger = aligned(&[0; 1]);
        bigger.extend_from_slice(&frame);
        assert_eq!(decode(&bigger[1..]), Err(FrameError::Misaligned { misalignment: 1 }));
    }

    #[test]
    fn every_truncation_is_an_error_or_end() {
        for record in samples() {
            let frame = encode(&record);
            for k in 0..frame.len() {
                match decode(&frame[..k]) {
                    Err(_) | Ok(None) => {}
                    Ok(Some(r)) => panic!("{record:?} cut at {k} decoded as {r:?}"),
                }
            }
        }
    }

    #[test]
    fn every_bit_flip_is_an_error() {
        for record in samples() {
            let frame = encode(&record);
            for bit in 0..frame.len() * 8 {
                let mut bad = aligned(&frame);
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(decode(&bad).is_err(), "{record:?} bit {bit}");
            }
        }
    }

    #[test]
    fn encoding_is_deterministic_whatever_the_buffer_held() {
        for record in samples() {
            assert_eq!(
                &encode_with_fill(&record, 0)[..],
                &encode_with_fill(&record, 0xFF)[..],
                "{record:?}"
            );
        }
    }

    #[test]
    fn frame_len_bounds_hold() {
        for len in 0..=ITEM_ID_LEN_MAX {
            let id = "i".repeat(len);
            let frame = encode(&Record::Update { index: 1, item_id: id, quantity: 1, weight: 1 });
            assert!(frame.len() <= update_frame_len(len), "len={len}");
            assert!(update_frame_len(len) - frame.len() <= 16, "len={len}");
        }
        for len in 0..=FILE_NAME_LEN_MAX {
            let frame = encode(&Record::Snapshot {
                sequence: 1,
                file_name: "n".repeat(len),
                sha256: [1; 32],
                last_request_id: 1,
            });
            assert!(frame.len() <= snapshot_frame_len(len), "len={len}");
        }
        assert_eq!(frame_len(0), 16);
        assert_eq!(frame_len(1), 32);
        assert_eq!(frame_len(16), 32);
        assert_eq!(frame_len(usize::MAX), usize::MAX);
        assert_eq!(update_frame_len(usize::MAX), usize::MAX);
    }

    #[test]
    fn encoders_refuse_bad_input() {
        let mut buf = [0_u8; 4096];
        let long = "x".repeat(ITEM_ID_LEN_MAX + 1);
        assert_eq!(
            encode_update(&mut buf, 0, &long, 1, 1),
            Err(FrameError::ItemIdTooLong { len: ITEM_ID_LEN_MAX + 1 })
        );
        let long = "x".repeat(FILE_NAME_LEN_MAX + 1);
        assert_eq!(
            encode_snapshot(&mut buf, 0, &long, &[0; 32], 1),
            Err(FrameError::FileNameTooLong { len: FILE_NAME_LEN_MAX + 1 })
        );
        let needed = update_frame_len(4);
        for small in 0..needed {
            let r = encode_update(&mut buf[..small], 0, "gold", 1, 1);
            if let Ok(len) = r {
                assert!(len <= small, "small={small} len={len}");
            } else {
                assert!(matches!(r, Err(FrameError::BufferTooSmall { .. })), "{r:?}");
            }
        }
        assert!(encode_snapshot(&mut buf[..20], 0, "snapshot.000001", &[0; 32], 1).is_err());
        assert!(matches!(
            Record::Commit { last_request_id: 1, group: 1 }.encode(&mut buf[..31]),
            Err(FrameError::BufferTooSmall { needed: 32, available: 31 })
        ));
    }

    #[test]
    #[should_panic(expected = "shorter than DRAW_FRAME_SIZE")]
    fn encode_draw_panics_without_room() {
        encode_draw(&mut [0; 31], 1, None);
    }

    /// A draw frame with its header bytes edited and the CRC recomputed.
    fn edited_draw(edit: impl FnOnce(&mut [u8])) -> AlignedVec<16> {
        let mut frame = encode(&samples()[0]);
        edit(&mut frame);
        reseal(&mut frame);
        frame
    }

    /// The replay fast path refuses every resealed header or payload edit that `decode`
    /// refuses (a valid CRC over bytes a newer version wrote): flags, each reserved byte, a
    /// short payload length, the payload's own flags. Bit flips alone break the CRC first.
    #[test]
    fn decode_draw_refuses_what_decode_refuses_with_a_valid_crc() {
        let intact = encode(&samples()[0]);
        assert_eq!(decode_draw(&intact), Some((1, Some(0))));
        let mut edits: Vec<(String, AlignedVec<16>)> = vec![
            ("flags".into(), edited_draw(|f| f[9] = 1)),
            ("payload length 15".into(), edited_draw(|f| f[4] = 15)),
            ("payload flags".into(), edited_draw(|f| f[28] = 1)),
        ];
        for offset in 10..16 {
            edits.push((format!("reserved byte {offset}"), edited_draw(|f| f[offset] = 1)));
        }
        for (what, frame) in &edits {
            assert!(decode(frame).is_err(), "{what}: decode refuses it");
            assert_eq!(decode_draw(frame), None, "{what}: the fast path must refuse it too");
        }
    }

    /// `Record::encode` fits a draw or a commit into a buffer of exactly its size, and says
    /// how much is missing in one byte less.
    #[test]
    fn encode_into_a_buffer_of_exactly_the_frame_size() {
        for (record, size) in [
            (Record::Draw { request_id: 9, item: Some(1) }, DRAW_FRAME_SIZE),
            (Record::Commit { last_request_id: 9, group: 2 }, COMMIT_FRAME_SIZE),
        ] {
            let mut buf = AlignedVec::<16>::new();
            buf.resize(size, 0);
            assert_eq!(record.encode(&mut buf), Ok(size), "{record:?}");
            assert_eq!(decode(&buf), Ok(Some((record.clone(), size))));
            assert_eq!(
                record.encode(&mut buf[..size - 1]),
                Err(FrameError::BufferTooSmall { needed: size, available: size - 1 })
            );
        }
    }

    /// The offset a `PaddingNotZero` names is the first nonzero padding byte's, not the
    /// padding's start.
    #[test]
    fn padding_not_zero_names_the_first_nonzero_byte() {
        let e = decode(&edited_draw(|f| {
            f[4] = 14;
            f[30] = 0;
            f[31] = 1;
        }));
        assert_eq!(e, Err(FrameError::PaddingNotZero { offset: 31 }));
        let e = decode(&edited_draw(|f| {
            f[4] = 13;
            f[29] = 0;
            f[30] = 0;
            f[31] = 2;
        }));
        assert_eq!(e, Err(FrameError::PaddingNotZero { offset: 31 }));
    }

    #[test]
    fn each_header_error() {
        let e = decode(&edited_draw(|f| f[10] = 1));
        assert_eq!(e, Err(FrameError::ReservedNotZero { offset: 10, value: 1 }));
        let e = decode(&edited_draw(|f| f[15] = 0x80));
        assert_eq!(e, Err(FrameError::ReservedNotZero { offset: 15, value: 0x80 }));
        let e = decode(&edited_draw(|f| f[9] = 1));
        assert_eq!(e, Err(FrameError::UnsupportedFlags { flags: 1 }));
        let e = decode(&edited_draw(|f| f[8] = 7));
        assert_eq!(e, Err(FrameError::UnknownKind { kind: 7 }));
        let e = decode(&edited_draw(|f| f[8] = 0));
        assert_eq!(e, Err(FrameError::UnknownKind { kind: 0 }));
        // Draw flags inside the payload are reserved.
        let e = decode(&edited_draw(|f| f[28] = 1));
        assert!(matches!(
            e,
            Err(FrameError::BadField { kind: FrameKind::Draw, field: "flags", value: 1 })
        ));
        // A 15-byte draw payload: the last byte becomes padding.
        let e = decode(&edited_draw(|f| {
            f[4] = 15;
            f[31] = 0;
        }));
        assert_eq!(
            e,
            Err(FrameError::PayloadLength { kind: FrameKind::Draw, expected: 16, got: 15 })
        );
        let e = decode(&edited_draw(|f| {
            f[4] = 15;
            f[31] = 1;
        }));
        assert_eq!(e, Err(FrameError::PaddingNotZero { offset: 31 }));
        // A commit-sized payload under a draw kind... and over-long payloads.
        let mut frame = encode(&samples()[0]);
        frame[4..8].copy_from_slice(&(FRAME_LEN_MAX as u32 + 1).to_le_bytes());
        assert_eq!(
            decode(&frame),
            Err(FrameError::PayloadTooLong { payload_len: FRAME_LEN_MAX as u32 + 1 })
        );
        let mut frame = encode(&samples()[0]);
        frame[4..8].copy_from_slice(&(FRAME_LEN_MAX as u32).to_le_bytes());
        assert!(matches!(decode(&frame), Err(FrameError::Truncated { available: 32, .. })));
        let mut frame = encode(&samples()[0]);
        frame[0] ^= 1;
        assert!(matches!(decode(&frame), Err(FrameError::ChecksumMismatch { .. })));
    }

    /// A batch frame (`samples()[11]`: width 2, two keys, 12 draws) with payload bytes
    /// edited and the CRC recomputed.
    fn edited_batch(edit: impl FnOnce(&mut [u8])) -> Result<Option<(Record, usize)>, FrameError> {
        let mut frame = encode(&samples()[11]);
        edit(&mut frame[16..]);
        reseal(&mut frame);
        decode(&frame)
    }

    fn batch_field(r: Result<Option<(Record, usize)>, FrameError>) -> &'static str {
        match r {
            Err(FrameError::Batch { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_batch_error() {
        assert!(matches!(edited_batch(|_| {}), Ok(Some((Record::Batch(_), _)))));
        assert_eq!(batch_field(edited_batch(|p| p[16] = 3)), "width");
        assert_eq!(batch_field(edited_batch(|p| p[16] = 0)), "width");
        assert_eq!(batch_field(edited_batch(|p| p[17] = 1)), "reserved byte");
        assert_eq!(batch_field(edited_batch(|p| p[23] = 1)), "reserved byte");
        assert_eq!(batch_field(edited_batch(|p| p[8..12].fill(0))), "count");
        // A first id whose last draw would overflow.
        assert_eq!(batch_field(edited_batch(|p| p[..8].fill(0xFF))), "first_request_id");
        // Keys: zero, zero count, past the batch, overlapping.
        assert_eq!(batch_field(edited_batch(|p| p[24..40].fill(0))), "key");
        assert_eq!(batch_field(edited_batch(|p| p[44..48].fill(0))), "key count");
        assert_eq!(batch_field(edited_batch(|p| p[68] = 11)), "key offset + count");
        assert_eq!(batch_field(edited_batch(|p| p[64] = 0)), "key offset");
        // Count and keys_len that disagree with payload_len.
        let e = edited_batch(|p| p[8] = 13);
        assert_eq!(
            e,
            Err(FrameError::PayloadLength { kind: FrameKind::Batch, expected: 98, got: 96 })
        );
        let e = edited_batch(|p| p[18] = 1);
        assert!(matches!(e, Err(FrameError::PayloadLength { kind: FrameKind::Batch, .. })));
        // Too short for the fixed fields.
        let mut frame = aligned(&[0; 32]);
        frame[4] = 16;
        frame[8] = FrameKind::Batch as u8;
        frame[16] = 1;
        reseal(&mut frame);
        assert_eq!(
            decode(&frame),
            Err(FrameError::PayloadLength { kind: FrameKind::Batch, expected: 24, got: 16 })
        );
        // The messages say what is wrong.
        let text = batch_field_text(edited_batch(|p| p[16] = 3));
        assert!(text.contains("width is 3, expected 1, 2 or 4"), "{text}");
    }

    fn batch_field_text(r: Result<Option<(Record, usize)>, FrameError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn batch_encoder_refuses_bad_input() {
        let mut buf = AlignedVec::<16>::new();
        buf.resize(4096, 0);
        let key = |key, offset, count| BatchKey { key, offset, count };
        let bad = |keys: &[BatchKey], items: &[u32], width| {
            let mut b = buf.clone();
            matches!(encode_batch(&mut b, 1, 0, width, keys, items), Err(FrameError::Batch { .. }))
        };
        assert!(bad(&[], &[], 1), "no draws");
        assert!(bad(&[], &[1], 3), "width 3");
        assert!(bad(&[], &[255], 1), "255 at width 1");
        assert!(bad(&[key(0, 0, 1)], &[1], 1), "key 0");
        assert!(bad(&[key(1, 0, 2)], &[1], 1), "key past the batch");
        assert!(bad(&[key(1, 0, 2), key(2, 1, 1)], &[1, 2], 1), "overlap");
        assert!(bad(&[key(1, 0, 0)], &[1], 1), "zero count");
        assert!(!bad(&[key(1, 0, 1), key(2, 1, 1)], &[1, EMPTY_ITEM], 1));
        let len = batch_frame_len(3, 0, 2);
        assert_eq!(
            encode_batch(&mut buf[..len - 1], 1, 0, 2, &[], &[1, 2, 3]),
            Err(FrameError::BufferTooSmall { needed: len, available: len - 1 })
        );
        assert_eq!(encode_batch(&mut buf[..len], 1, 0, 2, &[], &[1, 2, 3]), Ok(len));
        assert!(matches!(
            Record::Key { key: 1, first_request_id: 1, count: 1, unix_s: 0 }.encode(&mut buf),
            Err(FrameError::Batch { .. })
        ));
        assert_eq!(batch_frame_len(100, 0, 1), 16 + 128);
        assert_eq!(batch_frame_len(1000, 0, 1), 16 + 1024);
    }

    /// The payload bound is inclusive: a batch whose payload is exactly [`FRAME_LEN_MAX`]
    /// bytes encodes, one byte more is `PayloadTooLong` even with room in the buffer.
    #[test]
    fn a_batch_payload_of_exactly_the_maximum_encodes_one_byte_more_does_not() {
        let count = FRAME_LEN_MAX - batch::payload_len(0, 0, 1);
        let items = vec![7_u32; count + 1];
        let mut buf = AlignedVec::<16>::new();
        buf.resize(frame_len(FRAME_LEN_MAX) + 64, 0);
        assert_eq!(batch::payload_len(count, 0, 1), FRAME_LEN_MAX);
        assert_eq!(
            encode_batch(&mut buf, 1, 0, 1, &[], &items[..count]),
            Ok(frame_len(FRAME_LEN_MAX))
        );
        let too_long = u32::try_from(FRAME_LEN_MAX + 1).unwrap();
        assert_eq!(
            encode_batch(&mut buf, 1, 0, 1, &[], &items),
            Err(FrameError::PayloadTooLong { payload_len: too_long })
        );
    }

    /// A seed frame, commitment and reveal, is [`SEED_FRAME_SIZE`] bytes and decodes to the
    /// record it was made from; a buffer a byte short is refused.
    #[test]
    fn seed_frames_round_trip() {
        for revealed in [None, Some([0xA5; 32])] {
            let fields = SeedFields {
                first_request_id: 1 << 40,
                segment: 7,
                generator: 2,
                commitment: [0x3C; 32],
                revealed,
            };
            let mut buf = AlignedVec::<16>::new();
            buf.resize(SEED_FRAME_SIZE + 16, 0xEE);
            assert_eq!(
                encode_seed(&mut buf[..SEED_FRAME_SIZE - 1], &fields),
                Err(FrameError::BufferTooSmall {
                    needed: SEED_FRAME_SIZE,
                    available: SEED_FRAME_SIZE - 1
                })
            );
            assert_eq!(encode_seed(&mut buf, &fields), Ok(SEED_FRAME_SIZE));
            let record = Record::Seed {
                first_request_id: 1 << 40,
                segment: 7,
                generator: 2,
                commitment: [0x3C; 32],
                revealed,
            };
            assert_eq!(decode(&buf), Ok(Some((record, SEED_FRAME_SIZE))), "{revealed:?}");
        }
    }

    /// A commitment carries no seed and a seed frame is a commitment or a reveal: a
    /// commitment with a seed byte set, or `revealed` other than 0 and 1, is refused (the
    /// checksum resealed, so that the field checks are what refuses it).
    #[test]
    fn a_commitment_with_a_seed_or_an_unknown_revealed_is_refused() {
        let reveal = SeedFields {
            first_request_id: 1,
            segment: 1,
            generator: 1,
            commitment: [0x3C; 32],
            revealed: Some([0xA5; 32]),
        };
        let mut buf = AlignedVec::<16>::new();
        buf.resize(SEED_FRAME_SIZE, 0);
        encode_seed(&mut buf, &reveal).unwrap();
        // Where the archive keeps `revealed` (u32 LE) and the seed.
        let (revealed_at, seed_at) = (FRAME_HEADER_SIZE + 20, FRAME_HEADER_SIZE + 56);
        assert_eq!(buf[revealed_at..revealed_at + 4], [1, 0, 0, 0]);
        assert_eq!(buf[seed_at..seed_at + 32], [0xA5; 32]);
        let commitment = SeedFields { revealed: None, ..reveal };
        for at in [0, 31] {
            encode_seed(&mut buf, &commitment).unwrap();
            assert!(decode(&buf).is_ok());
            buf[seed_at + at] = 1;
            reseal(&mut buf);
            assert_eq!(
                decode(&buf),
                Err(FrameError::BadField { kind: FrameKind::Seed, field: "seed", value: 1 })
            );
        }
        encode_seed(&mut buf, &reveal).unwrap();
        buf[revealed_at] = 2;
        reseal(&mut buf);
        assert_eq!(
            decode(&buf),
            Err(FrameError::BadField { kind: FrameKind::Seed, field: "revealed", value: 2 })
        );
    }

    /// Every kind's header byte reads back as that kind; the bytes around them as none.
    #[test]
    fn every_frame_kind_reads_back_from_its_byte() {
        let kinds = [
            FrameKind::Draw,
            FrameKind::Update,
            FrameKind::Snapshot,
            FrameKind::Commit,
            FrameKind::Batch,
            FrameKind::Seed,
        ];
        for kind in kinds {
            assert_eq!(FrameKind::from_u8(kind as u8), Some(kind), "{kind}");
        }
        assert_eq!(FrameKind::from_u8(0), None);
        assert_eq!(FrameKind::from_u8(FrameKind::Seed as u8 + 1), None);
    }

    #[test]
    fn update_with_garbage_payload_is_a_payload_error() {
        // A valid CRC over a root whose out-of-line string points far outside the payload.
        let mut frame = aligned(&[0; 48]);
        frame[4] = 24;
        frame[8] = FrameKind::Update as u8;
        frame[32..40].copy_from_slice(&[0x85, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F]);
        reseal(&mut frame);
        let e = decode(&frame);
        assert!(matches!(e, Err(FrameError::Payload { kind: FrameKind::Update, .. })), "{e:?}");
        // An inline id that is not UTF-8.
        let mut frame =
            encode(&Record::Update { index: 1, item_id: "gold".into(), quantity: 1, weight: 1 });
        assert_eq!(&frame[32..36], b"gold");
        frame[32] = 0xC3;
        frame[33] = 0x28;
        reseal(&mut frame);
        assert!(matches!(decode(&frame), Err(FrameError::Payload { .. })));
        // Too short for the root.
        let mut frame = aligned(&[0; 32]);
        frame[4] = 8;
        frame[8] = FrameKind::Snapshot as u8;
        frame[16..24].fill(1);
        reseal(&mut frame);
        assert!(matches!(decode(&frame), Err(FrameError::Payload { .. })));
    }

    #[test]
    fn errors_display_what_is_wrong() {
        let cases = [
            (FrameError::ChecksumMismatch { expected: 0xDEAD_BEEF, got: 1 }, "0xdeadbeef"),
            (FrameError::Truncated { needed: 32, available: 7 }, "needs 32 bytes, only 7"),
            (FrameError::UnknownKind { kind: 9 }, "kind 9"),
            (
                FrameError::PayloadLength { kind: FrameKind::Commit, expected: 16, got: 8 },
                "commit frame payload_len is 8, expected 16",
            ),
            (FrameError::PayloadTooLong { payload_len: 5 }, "payload_len is 5"),
            (FrameError::Misaligned { misalignment: 3 }, "= 3"),
            (FrameError::ItemIdTooLong { len: 2000 }, "2000 bytes"),
        ];
        for (e, needle) in cases {
            let text = e.to_string();
            assert!(text.contains(needle), "{text:?} lacks {needle:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(record in arb_record()) {
            let frame = encode(&record);
            prop_assert_eq!(decode(&frame), Ok(Some((record.clone(), frame.len()))));
            // Followed by zeros, the next decode reports the end of data.
            let mut padded = aligned(&frame);
            padded.extend_from_slice(&[0; 16]);
            prop_assert_eq!(decode(&padded[frame.len()..]), Ok(None));
        }

        #[test]
        fn bit_flip_is_an_error(record in arb_record(), bit in any::<prop::sample::Index>()) {
            let mut frame = encode(&record);
            let bit = bit.index(frame.len() * 8);
            frame[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&frame).is_err(), "bit {}", bit);
        }

        #[test]
        fn truncation_is_an_error_or_end(record in arb_record(), cut in any::<prop::sample::Index>()) {
            let frame = encode(&record);
            let cut = cut.index(frame.len());
            prop_assert!(!matches!(decode(&frame[..cut]), Ok(Some(_))));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&aligned(&bytes));
        }

        /// Random payloads under a valid header and CRC reach rkyv's validation: it must
        /// refuse or accept, never panic, and what it accepts re-encodes to the same bytes
        /// when the encoder would have written it (fuzz property of `frame_decode`).
        #[test]
        fn arbitrary_payloads_with_valid_crc_never_panic(
            kind in 1_u8..=5,
            payload in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut frame = aligned(&[0; 16]);
            frame.extend_from_slice(&payload);
            frame.resize(frame_len(payload.len()), 0);
            frame[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
            frame[8] = kind;
            reseal(&mut frame);
            if let Ok(Some((record, len))) = decode(&frame) {
                prop_assert_eq!(len, frame.len());
                let again = encode(&record);
                let again2 = decode(&again);
                prop_assert_eq!(again2, Ok(Some((record, again.len()))));
            }
        }
    }
}
