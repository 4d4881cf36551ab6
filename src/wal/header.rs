//! The 256-byte segment header at the start of every `wal.NNNNNN` file, and segment names.
//!
//! # Byte layout (format version 4)
//!
//! Plain little-endian fields (not rkyv), so the header can be read before anything else is
//! trusted:
//!
//! ```text
//!  offset size field
//!  0      8    magic b"RWPLWAL1"
//!  8      4    format version, u32 LE (4; 1 to 3 are read, see "Versions")
//!  12     4    status, u32 LE: 1 open, 2 closed
//!  16     8    sequence, u64 LE: the N of the file name wal.NNNNNN
//!  24     8    first_request_id, u64 LE: the first request id this segment may contain
//!              (the last id before it + 1)
//!  32     8    catalog_fingerprint, u64 LE (see snapshot::format::catalog_fingerprint)
//!  40     8    end_offset, u64 LE: closed: the byte offset just past the last commit frame;
//!              open: 0
//!  48     8    segment_size, u64 LE: the file's size in bytes, a multiple of 16, >= 256
//!  56     4    close_reason, u32 LE: open: 0; closed: 1 rotation, 2 shutdown, 3 recovery,
//!              4 repair (see [`CloseReason`])
//!  60     4    reserved, zero
//!  64     8    next_request_id, u64 LE: closed: the first request id a later segment may
//!              use (>= the last committed id + 1; higher after a repair); open: 0
//!  72     180  reserved, zero
//!  252    4    crc32c, u32 LE, over bytes 0..252
//! ```
//!
//! # How the log proves its own end
//!
//! A segment is closed with [`CloseReason::Rotation`] only once its successor is installed
//! under its final name (the flusher installs the next segment, then the preparer closes
//! the old one; a restart that starts a new segment re-marks the previous one after the
//! install). So a newest segment closed by a rotation means its successor was deleted or
//! lost: recovery refuses it as damage instead of reading a silently shorter history. A
//! clean shutdown, the recovery of a crash and a repair close with a reason that marks the
//! end of the log as it was then; the next start either continues in that segment or
//! installs a successor and then re-marks it `Rotation`.
//!
//! `next_request_id` carries a floor for request ids across a close: recovery never issues
//! an id below the newest closed segment's `next_request_id`, which is how `wal repair`
//! keeps ids that may have been acknowledged in bytes it dropped from ever being re-issued.
//!
//! Frames (see [`super::frame`]) start at offset 256 ([`SEGMENT_HEADER_SIZE`]).
//!
//! # Versions
//!
//! ```text
//!  version  header                                    frames in the segment
//!  1        bytes 56..252 reserved (no close reason,  kinds 1-4: one 32-byte frame per draw
//!           no request-id floor)
//!  2        close_reason, next_request_id             kinds 1-4
//!  3        as version 2                              kinds 1-5: a group's draws in one batch
//!                                                     frame (super::batch)
//!  4        as version 2                              kinds 1-6: seed frames commit to and
//!                                                     reveal the draws' seeds (super::frame)
//! ```
//!
//! This build writes version 4 for every segment it creates, and rewrites an older header
//! as version 4 before it appends to that segment again (a restart that resumes it), so
//! batch and seed frames only ever follow a header that allows them. Closing or re-marking
//! an older segment it does not append to keeps its version (version 1 becomes 2: the close
//! reason needs the version-2 fields). A build that predates version 3 refuses a version-3
//! segment up front with "unsupported segment format version 3" rather than stopping at the
//! first batch frame.
//!
//! # Checks and what a mismatch means
//!
//! [`SegmentHeader::decode`] checks, in order: length; all zero (a segment whose header was
//! never written: [`HeaderError::Zeroed`]); magic; version (before the CRC, so a header from a
//! newer version says so instead of reporting a checksum mismatch); CRC; status; reserved
//! bytes; and that the fields agree with each other. Any failure is a [`HeaderError`];
//! recovery decides what it means (SPEC §4: a bad header is damage, and recovery refuses).
//! Segments are created under a temporary name and renamed into place only once the header
//! is durable, so a zeroed header under a final `wal.NNNNNN` name is damage too.
//!
//! The header is rewritten in place once, when the segment is closed (`status`,
//! `end_offset`). It lies inside the file's first 512-byte sector; the format assumes the
//! device does not tear a single-sector write (what a torn rewrite would look like: a CRC
//! mismatch). The I/O layer syncs the frames before it rewrites the header.

#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::unwrap_used))]

use std::fmt;

/// Segment file names live with every other name in a data directory; re-exported here
/// where readers of the header look for them.
pub use crate::layout::{parse_segment_name, segment_name};

/// Size of the segment header; the first frame starts here.
pub const SEGMENT_HEADER_SIZE: usize = 256;

/// The first 8 bytes of every segment.
pub const WAL_MAGIC: [u8; 8] = *b"RWPLWAL1";

/// The segment format version this build writes (4: segments may hold seed frames). It also
/// reads versions 1 (`CloseReason::Unrecorded`), 2 and 3; see "Versions" above.
pub const WAL_FORMAT_VERSION: u32 = 4;

/// Byte offset of the header CRC.
const CRC_OFFSET: usize = 252;
/// Reserved byte ranges (must be zero).
const RESERVED: [(usize, usize); 2] = [(60, 64), (72, CRC_OFFSET)];

const _: () = assert!(SEGMENT_HEADER_SIZE.is_multiple_of(super::frame::FRAME_ALIGN));
const _: () = assert!(CRC_OFFSET + 4 == SEGMENT_HEADER_SIZE);

/// Whether a segment is still being appended to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SegmentStatus {
    /// Being written (or the process stopped while writing it): may have a torn tail.
    Open,
    /// Closed by rotation or a graceful shutdown: `end_offset` is exact, no torn tail.
    Closed,
}

impl SegmentStatus {
    /// The on-disk value: 1 open, 2 closed.
    #[must_use]
    pub fn to_u32(self) -> u32 {
        match self {
            SegmentStatus::Open => 1,
            SegmentStatus::Closed => 2,
        }
    }

    /// The status for an on-disk value, `None` for anything but 1 or 2.
    #[must_use]
    pub fn from_u32(value: u32) -> Option<SegmentStatus> {
        match value {
            1 => Some(SegmentStatus::Open),
            2 => Some(SegmentStatus::Closed),
            _ => None,
        }
    }
}

impl fmt::Display for SegmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SegmentStatus::Open => "open",
            SegmentStatus::Closed => "closed",
        })
    }
}

/// Why a closed segment was closed: whether the log goes on after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Closed after its successor was installed: a newer segment must exist.
    Rotation,
    /// Closed by a clean shutdown: the end of the log at that time.
    Shutdown,
    /// Closed at its last commit by the recovery of a crash: the end of the log then.
    Recovery,
    /// Cut by `wal repair`: the end of the log then.
    Repair,
    /// Closed by a format-1 build, which did not record why (read only: recovery re-marks
    /// such a segment when a successor follows, and a restart reopens or re-marks the newest).
    Unrecorded,
}

impl CloseReason {
    /// The on-disk value: 1 rotation, 2 shutdown, 3 recovery, 4 repair (`Unrecorded` has
    /// none: format 1 wrote no reason, and it is never written).
    #[must_use]
    pub fn to_u32(self) -> u32 {
        match self {
            CloseReason::Rotation => 1,
            CloseReason::Shutdown => 2,
            CloseReason::Recovery => 3,
            CloseReason::Repair => 4,
            CloseReason::Unrecorded => 0,
        }
    }

    /// The reason for an on-disk value, `None` for 0 (open) or an unknown value.
    #[must_use]
    pub fn from_u32(value: u32) -> Option<CloseReason> {
        match value {
            1 => Some(CloseReason::Rotation),
            2 => Some(CloseReason::Shutdown),
            3 => Some(CloseReason::Recovery),
            4 => Some(CloseReason::Repair),
            _ => None,
        }
    }

    /// True when a newer segment must follow (a rotation installed it first).
    #[must_use]
    pub fn has_successor(self) -> bool {
        self == CloseReason::Rotation
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::Rotation => "rotation",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Recovery => "recovery",
            CloseReason::Repair => "repair",
            CloseReason::Unrecorded => "unrecorded (format 1)",
        })
    }
}

/// The decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The format version (1 to 4): from version 3 on the segment may hold batch frames,
    /// from version 4 on seed frames.
    pub version: u32,
    /// Open or closed.
    pub status: SegmentStatus,
    /// The segment's sequence number (the N of `wal.NNNNNN`).
    pub sequence: u64,
    /// The first request id this segment may contain.
    pub first_request_id: u64,
    /// Fingerprint of the catalog the log was started with.
    pub catalog_fingerprint: u64,
    /// Closed: the offset just past the last commit frame. Open: 0.
    pub end_offset: u64,
    /// The segment file's size in bytes.
    pub segment_size: u64,
    /// Closed: why (whether a successor must exist). Open: `None`.
    pub close_reason: Option<CloseReason>,
    /// Closed: the first request id a later segment may use. Open: 0.
    pub next_request_id: u64,
}

/// Why a segment header was refused. The caller adds the file name.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer than [`SEGMENT_HEADER_SIZE`] bytes.
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// All 256 bytes are zero: the header was never written.
    Zeroed,
    /// The first 8 bytes are not [`WAL_MAGIC`].
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
    /// The stored CRC does not match the header bytes.
    ChecksumMismatch {
        /// The CRC stored at offset 252.
        expected: u32,
        /// The CRC computed over bytes 0..252.
        got: u32,
    },
    /// The status is neither 1 (open) nor 2 (closed).
    BadStatus {
        /// The value found.
        got: u32,
    },
    /// The close reason is not 0 (open) or 1..=4 (closed).
    BadCloseReason {
        /// The value found.
        got: u32,
    },
    /// A reserved byte is not zero.
    ReservedNotZero {
        /// Its offset in the header.
        offset: usize,
    },
    /// The fields contradict each other.
    Inconsistent {
        /// The field at fault.
        field: &'static str,
        /// Its value.
        value: u64,
        /// What it should have been.
        expected: &'static str,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::TooShort { len } => {
                write!(f, "segment header too short: {len} bytes, expected {SEGMENT_HEADER_SIZE}")
            }
            HeaderError::Zeroed => {
                f.write_str("zeroed header: the segment header was never written")
            }
            HeaderError::BadMagic { got } => write!(
                f,
                "bad magic b\"{}\", expected b\"{}\"",
                got.escape_ascii(),
                WAL_MAGIC.escape_ascii()
            ),
            HeaderError::UnsupportedVersion { got, supported } => write!(
                f,
                "unsupported segment format version {got} (this build supports {supported})"
            ),
            HeaderError::ChecksumMismatch { expected, got } => write!(
                f,
                "segment header checksum mismatch: header says crc32c {expected:#010x}, bytes \
                 give {got:#010x}"
            ),
            HeaderError::BadStatus { got } => {
                write!(f, "bad segment status {got}, expected 1 (open) or 2 (closed)")
            }
            HeaderError::BadCloseReason { got } => {
                write!(f, "bad segment close reason {got}, expected 0 (open) or 1 to 4 (closed)")
            }
            HeaderError::ReservedNotZero { offset } => {
                write!(f, "reserved segment header byte {offset} is not zero")
            }
            HeaderError::Inconsistent { field, value, expected } => {
                write!(f, "segment header {field} is {value}, expected {expected}")
            }
        }
    }
}

impl std::error::Error for HeaderError {}

impl SegmentHeader {
    /// This header closed at `end_offset` for `reason`, with `next_request_id` as the floor
    /// for later request ids.
    #[must_use]
    pub fn closed(self, end_offset: u64, reason: CloseReason, next_request_id: u64) -> Self {
        SegmentHeader {
            // Version 1 has no room for the close reason.
            version: self.version.max(2),
            status: SegmentStatus::Closed,
            end_offset,
            close_reason: Some(reason),
            next_request_id,
            ..self
        }
    }

    /// This header open again (appending resumes in the segment): the current version, since
    /// batch frames will follow.
    #[must_use]
    pub fn reopened(self) -> Self {
        SegmentHeader {
            version: WAL_FORMAT_VERSION,
            status: SegmentStatus::Open,
            end_offset: 0,
            close_reason: None,
            next_request_id: 0,
            ..self
        }
    }

    /// The header's 256 bytes, CRC included.
    ///
    /// # Panics
    /// If the header is inconsistent (see [`HeaderError::Inconsistent`]), or its version is
    /// not 2 to 4 (version 1 is read only): writing one is a programmer error.
    #[must_use]
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_SIZE] {
        assert!(
            (2..=WAL_FORMAT_VERSION).contains(&self.version),
            "encoding a header of version {}",
            self.version
        );
        assert_eq!(self.check_consistent(), Ok(()), "encoding an inconsistent header");
        assert!(
            self.close_reason != Some(CloseReason::Unrecorded),
            "encoding a format-1 close reason (recovery re-marks such headers)"
        );
        let mut out = [0_u8; SEGMENT_HEADER_SIZE];
        let reason = self.close_reason.map_or(0, CloseReason::to_u32).to_le_bytes();
        let fields: [(usize, &[u8]); 10] = [
            (0, &WAL_MAGIC),
            (8, &self.version.to_le_bytes()),
            (12, &self.status.to_u32().to_le_bytes()),
            (16, &self.sequence.to_le_bytes()),
            (24, &self.first_request_id.to_le_bytes()),
            (32, &self.catalog_fingerprint.to_le_bytes()),
            (40, &self.end_offset.to_le_bytes()),
            (48, &self.segment_size.to_le_bytes()),
            (56, &reason),
            (64, &self.next_request_id.to_le_bytes()),
        ];
        for (offset, bytes) in fields {
            if let Some(dst) = out.get_mut(offset..offset + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        let crc = crc32c::crc32c(out.get(..CRC_OFFSET).unwrap_or_default());
        if let Some(dst) = out.get_mut(CRC_OFFSET..) {
            dst.copy_from_slice(&crc.to_le_bytes());
        }
        debug_assert_eq!(SegmentHeader::decode(&out), Ok(*self), "header pair assertion");
        out
    }

    /// Decodes and checks the header at the start of `bytes` (which may be the whole file).
    ///
    /// # Errors
    /// See [`HeaderError`]: too short, zeroed, bad magic, unsupported version, checksum
    /// mismatch, bad status, non-zero reserved bytes, inconsistent fields. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let Some(h) = bytes.first_chunk::<SEGMENT_HEADER_SIZE>() else {
            return Err(HeaderError::TooShort { len: bytes.len() });
        };
        if h.iter().all(|&b| b == 0) {
            return Err(HeaderError::Zeroed);
        }
        let magic = read::<8>(h, 0);
        if magic != WAL_MAGIC {
            return Err(HeaderError::BadMagic { got: magic });
        }
        let version = u32::from_le_bytes(read(h, 8));
        if !(1..=WAL_FORMAT_VERSION).contains(&version) {
            return Err(HeaderError::UnsupportedVersion {
                got: version,
                supported: WAL_FORMAT_VERSION,
            });
        }
        let expected = u32::from_le_bytes(read(h, CRC_OFFSET));
        let got = crc32c::crc32c(h.get(..CRC_OFFSET).unwrap_or_default());
        if expected != got {
            return Err(HeaderError::ChecksumMismatch { expected, got });
        }
        let status_raw = u32::from_le_bytes(read(h, 12));
        let Some(status) = SegmentStatus::from_u32(status_raw) else {
            return Err(HeaderError::BadStatus { got: status_raw });
        };
        // Format 1: bytes 56..252 were all reserved; a closed segment's reason and floor were
        // not recorded (the floor is then its last commit + 1, see `recovery`).
        let reserved_v1 = [(56, CRC_OFFSET)];
        let reserved: &[(usize, usize)] = if version == 1 { &reserved_v1 } else { &RESERVED };
        for &(start, end) in reserved {
            let reserved = h.get(start..end).unwrap_or_default();
            if let Some(i) = reserved.iter().position(|&b| b != 0) {
                return Err(HeaderError::ReservedNotZero { offset: start + i });
            }
        }
        let reason_raw = u32::from_le_bytes(read(h, 56));
        let close_reason = match reason_raw {
            0 if version == 1 && status == SegmentStatus::Closed => Some(CloseReason::Unrecorded),
            0 => None,
            raw => {
                Some(CloseReason::from_u32(raw).ok_or(HeaderError::BadCloseReason { got: raw })?)
            }
        };
        let header = SegmentHeader {
            version,
            status,
            sequence: u64::from_le_bytes(read(h, 16)),
            first_request_id: u64::from_le_bytes(read(h, 24)),
            catalog_fingerprint: u64::from_le_bytes(read(h, 32)),
            end_offset: u64::from_le_bytes(read(h, 40)),
            segment_size: u64::from_le_bytes(read(h, 48)),
            close_reason,
            next_request_id: u64::from_le_bytes(read(h, 64)),
        };
        let header = match header.close_reason {
            // The lowest floor possible; recovery raises it to the last commit + 1.
            Some(CloseReason::Unrecorded) => {
                SegmentHeader { next_request_id: header.first_request_id, ..header }
            }
            _ => header,
        };
        header.check_consistent()?;
        Ok(header)
    }

    /// Checks that the fields agree: a size of at least 256 and a multiple of 16; an open
    /// segment has `end_offset` 0, no close reason and `next_request_id` 0; a closed one has
    /// `256 <= end_offset <= segment_size`, a 16-aligned `end_offset`, a close reason, and
    /// `next_request_id >= first_request_id`.
    ///
    /// # Errors
    /// [`HeaderError::Inconsistent`] naming the first field at fault.
    pub fn check_consistent(&self) -> Result<(), HeaderError> {
        let header_size = SEGMENT_HEADER_SIZE as u64;
        let align = super::frame::FRAME_ALIGN as u64;
        let inconsistent =
            |field, value, expected| Err(HeaderError::Inconsistent { field, value, expected });
        if self.segment_size < header_size {
            return inconsistent("segment_size", self.segment_size, "at least the 256-byte header");
        }
        if !self.segment_size.is_multiple_of(align) {
            return inconsistent("segment_size", self.segment_size, "a multiple of 16");
        }
        match self.status {
            SegmentStatus::Open if self.end_offset != 0 => {
                inconsistent("end_offset", self.end_offset, "0 in an open segment")
            }
            SegmentStatus::Closed if self.end_offset < header_size => {
                inconsistent("end_offset", self.end_offset, "at least 256 in a closed segment")
            }
            SegmentStatus::Closed if self.end_offset > self.segment_size => inconsistent(
                "end_offset",
                self.end_offset,
                "at most segment_size in a closed segment",
            ),
            SegmentStatus::Closed if !self.end_offset.is_multiple_of(align) => {
                inconsistent("end_offset", self.end_offset, "a multiple of 16 in a closed segment")
            }
            SegmentStatus::Open if self.close_reason.is_some() => {
                inconsistent("close_reason", 1, "0 in an open segment")
            }
            SegmentStatus::Open if self.next_request_id != 0 => {
                inconsistent("next_request_id", self.next_request_id, "0 in an open segment")
            }
            SegmentStatus::Closed if self.close_reason.is_none() => {
                inconsistent("close_reason", 0, "1 to 4 in a closed segment")
            }
            SegmentStatus::Closed if self.next_request_id < self.first_request_id => inconsistent(
                "next_request_id",
                self.next_request_id,
                "at least first_request_id in a closed segment",
            ),
            SegmentStatus::Open | SegmentStatus::Closed => Ok(()),
        }
    }
}

/// `N` bytes of `h` from `offset` (zeros if out of range, which the callers' constant offsets
/// rule out).
fn read<const N: usize>(h: &[u8; SEGMENT_HEADER_SIZE], offset: usize) -> [u8; N] {
    h.get(offset..).and_then(|rest| rest.first_chunk::<N>()).copied().unwrap_or([0; N])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> SegmentHeader {
        SegmentHeader {
            version: WAL_FORMAT_VERSION,
            status: SegmentStatus::Closed,
            sequence: 12,
            first_request_id: 1001,
            catalog_fingerprint: 0xDEAD_BEEF_0000_0001,
            end_offset: 4096,
            segment_size: 1 << 20,
            close_reason: Some(CloseReason::Rotation),
            next_request_id: 1500,
        }
    }

    /// Sets `bytes[offset..]` to `value` and recomputes the CRC.
    fn patch(mut h: [u8; SEGMENT_HEADER_SIZE], offset: usize, value: &[u8]) -> [u8; 256] {
        h[offset..offset + value.len()].copy_from_slice(value);
        let crc = crc32c::crc32c(&h[..252]);
        h[252..].copy_from_slice(&crc.to_le_bytes());
        h
    }

    #[test]
    fn layout_is_as_documented() {
        let h = sample().encode();
        assert_eq!(&h[..8], b"RWPLWAL1");
        assert_eq!(&h[8..12], &4_u32.to_le_bytes());
        assert_eq!(&h[12..16], &2_u32.to_le_bytes());
        assert_eq!(&h[16..24], &12_u64.to_le_bytes());
        assert_eq!(&h[24..32], &1001_u64.to_le_bytes());
        assert_eq!(&h[32..40], &0xDEAD_BEEF_0000_0001_u64.to_le_bytes());
        assert_eq!(&h[40..48], &4096_u64.to_le_bytes());
        assert_eq!(&h[48..56], &(1_u64 << 20).to_le_bytes());
        assert_eq!(&h[56..60], &1_u32.to_le_bytes());
        assert!(h[60..64].iter().all(|&b| b == 0));
        assert_eq!(&h[64..72], &1500_u64.to_le_bytes());
        assert!(h[72..252].iter().all(|&b| b == 0));
        assert_eq!(&h[252..], &crc32c::crc32c(&h[..252]).to_le_bytes());
    }

    #[test]
    fn round_trip_open_and_closed() {
        let closed = sample();
        assert_eq!(SegmentHeader::decode(&closed.encode()), Ok(closed));
        let open = closed.reopened();
        assert_eq!(open.status, SegmentStatus::Open);
        assert_eq!(SegmentHeader::decode(&open.encode()), Ok(open));
        // Trailing bytes (the rest of the file) are ignored.
        let mut file = open.encode().to_vec();
        file.extend_from_slice(&[7; 100]);
        assert_eq!(SegmentHeader::decode(&file), Ok(open));
    }

    #[test]
    fn each_error() {
        let good = sample().encode();
        assert_eq!(SegmentHeader::decode(&good[..255]), Err(HeaderError::TooShort { len: 255 }));
        assert_eq!(SegmentHeader::decode(&[0; 256]), Err(HeaderError::Zeroed));
        assert_eq!(
            SegmentHeader::decode(&patch(good, 0, b"RWPLSNP1")),
            Err(HeaderError::BadMagic { got: *b"RWPLSNP1" })
        );
        assert_eq!(
            SegmentHeader::decode(&patch(good, 8, &5_u32.to_le_bytes())),
            Err(HeaderError::UnsupportedVersion { got: 5, supported: 4 })
        );
        let mut flipped = good;
        flipped[100] ^= 4;
        assert_eq!(
            SegmentHeader::decode(&flipped),
            Err(HeaderError::ChecksumMismatch {
                expected: u32::from_le_bytes(good[252..].try_into().unwrap()),
                got: crc32c::crc32c(&flipped[..252]),
            })
        );
        assert_eq!(
            SegmentHeader::decode(&patch(good, 12, &3_u32.to_le_bytes())),
            Err(HeaderError::BadStatus { got: 3 })
        );
        assert_eq!(
            SegmentHeader::decode(&patch(good, 200, &[1])),
            Err(HeaderError::ReservedNotZero { offset: 200 })
        );
        assert_eq!(
            SegmentHeader::decode(&patch(good, 61, &[1])),
            Err(HeaderError::ReservedNotZero { offset: 61 })
        );
        assert_eq!(
            SegmentHeader::decode(&patch(good, 56, &5_u32.to_le_bytes())),
            Err(HeaderError::BadCloseReason { got: 5 })
        );
        let inconsistent = |offset, value: u64| match SegmentHeader::decode(&patch(
            good,
            offset,
            &value.to_le_bytes(),
        )) {
            Err(HeaderError::Inconsistent { field, .. }) => field,
            other => panic!("offset {offset} value {value}: {other:?}"),
        };
        // Closed: end_offset below the header, past the file, unaligned.
        assert_eq!(inconsistent(40, 255), "end_offset");
        assert_eq!(inconsistent(40, 0), "end_offset");
        assert_eq!(inconsistent(40, (1 << 20) + 16), "end_offset");
        assert_eq!(inconsistent(40, 4100), "end_offset");
        // Sizes.
        assert_eq!(inconsistent(48, 128), "segment_size");
        assert_eq!(inconsistent(48, 4104), "segment_size");
        // Open with an end offset, a close reason or a next request id.
        let open = patch(good, 12, &1_u32.to_le_bytes());
        assert!(matches!(
            SegmentHeader::decode(&open),
            Err(HeaderError::Inconsistent { field: "end_offset", value: 4096, .. })
        ));
        let open = sample().reopened().encode();
        assert_eq!(inconsistent_in(open, 56, &1_u32.to_le_bytes()), "close_reason");
        assert_eq!(inconsistent_in(open, 64, &7_u64.to_le_bytes()), "next_request_id");
        // Closed without a reason, or with a floor below its own first id.
        assert_eq!(inconsistent_in(good, 56, &0_u32.to_le_bytes()), "close_reason");
        assert_eq!(inconsistent(64, 1000), "next_request_id");
        assert!(SegmentHeader::decode(&patch(good, 64, &1001_u64.to_le_bytes())).is_ok());
        // Closed with end_offset == segment_size and == 256 are fine.
        let full = patch(good, 40, &(1_u64 << 20).to_le_bytes());
        assert!(SegmentHeader::decode(&full).is_ok());
        let empty = patch(good, 40, &256_u64.to_le_bytes());
        assert!(SegmentHeader::decode(&empty).is_ok());
    }

    fn inconsistent_in(h: [u8; SEGMENT_HEADER_SIZE], offset: usize, value: &[u8]) -> &'static str {
        match SegmentHeader::decode(&patch(h, offset, value)) {
            Err(HeaderError::Inconsistent { field, .. }) => field,
            other => panic!("offset {offset}: {other:?}"),
        }
    }

    /// A format-1 header: bytes 56..252 zero, version 1.
    fn v1(h: &SegmentHeader) -> [u8; SEGMENT_HEADER_SIZE] {
        let mut bytes = h.encode();
        bytes[56..252].fill(0);
        patch(bytes, 8, &1_u32.to_le_bytes())
    }

    #[test]
    fn format_1_headers_are_read() {
        let closed = sample();
        let got = SegmentHeader::decode(&v1(&closed)).unwrap();
        assert_eq!(got.close_reason, Some(CloseReason::Unrecorded));
        assert_eq!(got.next_request_id, closed.first_request_id, "the lowest floor");
        assert!(!CloseReason::Unrecorded.has_successor());
        let open = closed.reopened();
        assert_eq!(SegmentHeader::decode(&v1(&open)), Ok(SegmentHeader { version: 1, ..open }));
        // Closed again by this build, a version-1 header becomes version 2; reopened, 3.
        let v1_open = SegmentHeader::decode(&v1(&open)).unwrap();
        assert_eq!(v1_open.closed(512, CloseReason::Recovery, 1001).version, 2);
        assert_eq!(v1_open.reopened().version, WAL_FORMAT_VERSION);
        let v2 = SegmentHeader { version: 2, ..sample() };
        assert_eq!(SegmentHeader::decode(&v2.encode()), Ok(v2));
        assert_eq!(v2.closed(512, CloseReason::Recovery, 1001).version, 2);
        // Format 1 reserved all of 56..252.
        assert_eq!(
            SegmentHeader::decode(&patch(v1(&closed), 64, &[1])),
            Err(HeaderError::ReservedNotZero { offset: 64 })
        );
    }

    #[test]
    #[should_panic(expected = "format-1 close reason")]
    fn a_format_1_close_reason_is_never_written() {
        let h = SegmentHeader::decode(&v1(&sample())).unwrap();
        let _ = SegmentHeader { version: 2, ..h }.encode();
    }

    #[test]
    #[should_panic(expected = "inconsistent header")]
    fn encoding_an_inconsistent_header_panics() {
        let _ = SegmentHeader { end_offset: 16, ..sample() }.encode();
    }

    #[test]
    fn errors_display_what_is_wrong() {
        let text = HeaderError::UnsupportedVersion { got: 7, supported: 2 }.to_string();
        assert!(text.contains("version 7") && text.contains("supports 2"), "{text}");
        let text = HeaderError::BadCloseReason { got: 9 }.to_string();
        assert!(text.contains("close reason 9"), "{text}");
        let text = HeaderError::BadMagic { got: *b"ABCDEFG\0" }.to_string();
        assert!(text.contains(r#"b"ABCDEFG\x00""#) && text.contains("RWPLWAL1"), "{text}");
        assert!(HeaderError::Zeroed.to_string().contains("zeroed header"));
        let text = HeaderError::ChecksumMismatch { expected: 1, got: 2 }.to_string();
        assert!(text.contains("0x00000001") && text.contains("0x00000002"), "{text}");
    }

    proptest! {
        #[test]
        fn header_round_trip(
            closed in any::<bool>(),
            sequence in any::<u64>(),
            first_request_id in any::<u64>(),
            catalog_fingerprint in any::<u64>(),
            size_blocks in 16_u64..(u64::MAX / 16),
            end_blocks in any::<prop::sample::Index>(),
            reason in 1_u32..=4,
            floor in any::<u64>(),
            v2 in any::<bool>(),
        ) {
            let segment_size = size_blocks * 16;
            let end_offset = if closed {
                let blocks = 16 + end_blocks.index((size_blocks - 16 + 1) as usize) as u64;
                blocks * 16
            } else {
                0
            };
            let h = SegmentHeader {
                version: if v2 { 2 } else { WAL_FORMAT_VERSION },
                status: if closed { SegmentStatus::Closed } else { SegmentStatus::Open },
                sequence,
                first_request_id,
                catalog_fingerprint,
                end_offset,
                segment_size,
                close_reason: if closed { CloseReason::from_u32(reason) } else { None },
                next_request_id: if closed { floor.max(first_request_id) } else { 0 },
            };
            prop_assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
        }

        #[test]
        fn header_bit_flip_is_an_error(bit in 0_usize..256 * 8) {
            let mut h = sample().encode();
            h[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(SegmentHeader::decode(&h).is_err());
        }

        #[test]
        fn header_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = SegmentHeader::decode(&bytes);
        }
    }
}
