//! Walking the frames in a segment's bytes, and telling a torn tail from damage.
//!
//! The caller reads the whole segment file into a 16-byte aligned buffer
//! (`rkyv::util::AlignedVec<16>`) or maps it, and walks it from [`SEGMENT_HEADER_SIZE`]:
//!
//! ```text
//!  0      256-byte segment header (super::header)
//!  256    frame, frame, ...          each at a 16-aligned offset (super::frame)
//!  k      16 zero bytes              end of written data (a fresh segment is all zeros)
//!  ..     zeros up to segment_size
//! ```
//!
//! [`FrameIter`] stops at the end of data or at the first bad frame. What a bad frame means
//! is recovery's call: in an open segment, a bad frame with no valid commit anywhere after it
//! is a torn tail (the writer crashed mid-group, nothing after it was acknowledged) and is
//! trimmed; a bad frame followed by a valid commit for later requests is damage (acknowledged
//! data would be lost) and recovery refuses. [`find_commit_after`] is that test.
//!
//! Batch frames (kind 5, a group's draws) are expanded: the walkers yield, with the batch
//! frame's offset, a [`Record::Key`] before each keyed request and one [`Record::Draw`] per
//! draw, so every consumer sees the log as one record per draw whatever the segment's
//! format. Told the segment's format version ([`FrameIter::version`],
//! [`ChunkedFrames::new`]), they refuse a batch frame in a version-1 or version-2 segment
//! ([`FrameError::KindNotInVersion`]).
//!
//! [`SEGMENT_HEADER_SIZE`]: super::header::SEGMENT_HEADER_SIZE

#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::unwrap_used))]

use super::batch::Batch;
use super::frame::{
    self, FrameError, FrameKind, Record, COMMIT_FRAME_SIZE, FRAME_ALIGN, FRAME_HEADER_SIZE,
    FRAME_LEN_MAX,
};

/// The first segment format version whose segments may hold batch frames.
pub const BATCH_VERSION_MIN: u32 = 3;

/// The first segment format version that may hold seed frames (kind 6).
pub const SEED_VERSION_MIN: u32 = 4;

/// A batch frame being handed out one record at a time.
#[derive(Debug, Clone)]
struct Expansion {
    /// The batch frame's offset.
    at: usize,
    batch: Batch,
    next_draw: usize,
    next_key: usize,
}

impl Expansion {
    fn new(at: usize, batch: Batch) -> Expansion {
        Expansion { at, batch, next_draw: 0, next_key: 0 }
    }

    /// The request id of draw `i` (the decoder checked that the last one does not overflow).
    fn request_id(&self, i: usize) -> u64 {
        self.batch.first_request_id.saturating_add(i as u64)
    }

    /// The next record: the key of a keyed request that starts here, else the next draw.
    fn next(&mut self) -> Option<Record> {
        if let Some(k) = self.batch.keys.get(self.next_key) {
            if k.offset as usize == self.next_draw {
                self.next_key += 1;
                return Some(Record::Key {
                    key: k.key,
                    first_request_id: self.request_id(self.next_draw),
                    count: k.count,
                    unix_s: self.batch.unix_s,
                });
            }
        }
        let (request_id, item) = self.next_draw()?;
        Some(Record::Draw { request_id, item })
    }

    /// The next draw, unless a key comes first (then `None`, and [`Expansion::next`] gives
    /// it) or the batch is done.
    #[inline]
    fn next_draw(&mut self) -> Option<(u64, Option<u32>)> {
        if self.batch.keys.get(self.next_key).is_some_and(|k| k.offset as usize == self.next_draw) {
            return None;
        }
        let item = *self.batch.items.get(self.next_draw)?;
        let request_id = self.request_id(self.next_draw);
        self.next_draw += 1;
        Some((request_id, item))
    }
}

/// A decoded frame as the walkers take it: a batch starts an expansion (or is refused in a
/// segment that may not hold one); any other record is yielded as it is.
fn admit(
    at: usize,
    record: Record,
    batches: bool,
    version: u32,
) -> Result<Result<Record, Expansion>, FrameError> {
    match record {
        Record::Batch(_) if !batches => {
            Err(FrameError::KindNotInVersion { kind: FrameKind::Batch, version })
        }
        Record::Batch(batch) => Ok(Err(Expansion::new(at, batch))),
        Record::Seed { .. } if version < SEED_VERSION_MIN => {
            Err(FrameError::KindNotInVersion { kind: FrameKind::Seed, version })
        }
        other => Ok(Ok(other)),
    }
}

/// Iterates the frames of `bytes[start..end]`.
///
/// Yields `Ok((offset, record))` per frame, where `offset` is the frame's offset in `bytes`.
/// Stops (`None`) at an all-zero header or at `end`. On a bad frame it yields one `Err` and
/// then `None`; [`FrameIter::offset`] then still points at the bad frame.
///
/// `bytes` must be 16-byte aligned and `start` a multiple of 16 (otherwise the first item is
/// [`FrameError::Misaligned`]); an `end` past `bytes.len()` is treated as `bytes.len()`.
///
/// A batch frame yields its records (keys, draws) with its own offset; [`FrameIter::offset`]
/// is past it from its first record on. Batch frames are accepted unless
/// [`FrameIter::version`] says the segment predates them.
#[derive(Debug, Clone)]
pub struct FrameIter<'a> {
    bytes: &'a [u8],
    offset: usize,
    end: usize,
    done: bool,
    expansion: Option<Expansion>,
    version: u32,
}

impl<'a> FrameIter<'a> {
    /// Frames from `start` (16-aligned, normally [`super::header::SEGMENT_HEADER_SIZE`]) up
    /// to `end` (exclusive): the file size for an open segment, `end_offset` for a closed one.
    #[must_use]
    pub fn new(bytes: &'a [u8], start: usize, end: usize) -> Self {
        let end = end.min(bytes.len());
        FrameIter {
            bytes,
            offset: start,
            end,
            done: start >= end,
            expansion: None,
            version: super::header::WAL_FORMAT_VERSION,
        }
    }

    /// The segment's format version (from its header): below 3, a batch frame is an error.
    #[must_use]
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Where the next frame would start: after the last frame yielded, at the bad frame after
    /// an `Err`, or at the end-of-data header after the iterator is exhausted.
    #[must_use]
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl Iterator for FrameIter<'_> {
    type Item = Result<(usize, Record), FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(expansion) = &mut self.expansion {
            if let Some(record) = expansion.next() {
                return Some(Ok((expansion.at, record)));
            }
            self.expansion = None;
        }
        if self.done {
            return None;
        }
        let Some(rest) = self.bytes.get(self.offset..self.end) else {
            self.done = true;
            return None;
        };
        match frame::decode(rest) {
            Ok(None) => {
                self.done = true;
                None
            }
            Ok(Some((record, len))) => {
                let at = self.offset;
                debug_assert!(len >= FRAME_HEADER_SIZE, "len={len}");
                debug_assert!(len % FRAME_ALIGN == 0, "len={len}");
                let batches = self.version >= BATCH_VERSION_MIN;
                let record = match admit(at, record, batches, self.version) {
                    Ok(record) => record,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                };
                // `decode` returned a frame inside `rest`, so this cannot overflow `end`.
                self.offset = self.offset.saturating_add(len);
                if self.offset >= self.end {
                    self.done = true;
                }
                match record {
                    Ok(record) => Some(Ok((at, record))),
                    Err(expansion) => {
                        self.expansion = Some(expansion);
                        self.next()
                    }
                }
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for FrameIter<'_> {}

/// After a bad frame at `from`, looks for evidence that committed data follows.
///
/// Scans every 16-aligned offset (relative to `bytes`, which must be 16-byte aligned) in
/// `from + 16 .. end` for a frame that decodes as a valid [`Record::Commit`] whose
/// `last_request_id` is greater than `after_request_id`, and returns the first such offset.
/// `None` means no committed data follows: the bad frame starts a torn tail. `Some` means
/// damage. An `end` past `bytes.len()` is treated as `bytes.len()`.
///
/// Cost: one byte compare per 16 bytes for most offsets; the CRC is computed only where the
/// kind byte, payload length, flags and reserved bytes already look like a commit frame.
#[must_use]
pub fn find_commit_after(
    bytes: &[u8],
    from: usize,
    end: usize,
    after_request_id: u64,
) -> Option<usize> {
    let end = end.min(bytes.len());
    // The first 16-aligned offset after `from` (= from + 16 when `from` is aligned).
    let first = (from / FRAME_ALIGN).checked_add(1)?.checked_mul(FRAME_ALIGN)?;
    let last = end.checked_sub(COMMIT_FRAME_SIZE)?;
    let mut offset = first;
    // Bounded: at most (end - from) / 16 iterations.
    while offset <= last {
        if let Some(candidate) = bytes.get(offset..offset + COMMIT_FRAME_SIZE) {
            if looks_like_commit(candidate) {
                if let Ok(Some((Record::Commit { last_request_id, .. }, _))) =
                    frame::decode(candidate)
                {
                    if last_request_id > after_request_id {
                        return Some(offset);
                    }
                }
            }
        }
        offset += FRAME_ALIGN;
    }
    None
}

/// The unit a storage device writes atomically. A write torn by power loss loses whole
/// sectors: a lost sector of a segment reads as it was last made durable, and past the
/// durable end that is zeros (segments are created zero-filled and never rewritten where
/// frames were).
pub const SECTOR_SIZE: usize = 512;

/// Whether `bytes[from..end]` (a segment file's bytes; offsets are file offsets) shows what
/// a torn write leaves where a frame should be: zeros from `from` to the next sector
/// boundary, or a whole zero sector starting before `end`. Recovery treats a bad frame in
/// the open segment that is followed by a valid commit as the end of the log (a torn tail)
/// when this holds, and as damage otherwise: a group after a lost sector was never
/// acknowledged (its sync would have made the sector durable), while non-zero garbage
/// before a commit is not something a torn write makes.
#[must_use]
pub fn torn_write_between(bytes: &[u8], from: usize, end: usize) -> bool {
    let end = end.min(bytes.len());
    if from >= end {
        return false;
    }
    let zero = |range: std::ops::Range<usize>| {
        bytes.get(range).is_some_and(|b| !b.is_empty() && b.iter().all(|&x| x == 0))
    };
    let boundary = (from / SECTOR_SIZE + 1) * SECTOR_SIZE;
    if zero(from..boundary.min(bytes.len())) {
        return true;
    }
    let mut sector = boundary;
    while sector < end {
        if zero(sector..(sector + SECTOR_SIZE).min(bytes.len())) {
            return true;
        }
        sector += SECTOR_SIZE;
    }
    false
}

/// The cheap checks: kind, payload length, flags and reserved bytes of a commit frame.
#[inline]
fn looks_like_commit(candidate: &[u8]) -> bool {
    let Some(header) = candidate.first_chunk::<FRAME_HEADER_SIZE>() else {
        return false;
    };
    let [_, _, _, _, p0, p1, p2, p3, kind, flags, r0, r1, r2, r3, r4, r5] = *header;
    kind == FrameKind::Commit as u8
        && u32::from_le_bytes([p0, p1, p2, p3]) == frame::COMMIT_PAYLOAD_LEN_U32
        && (flags | r0 | r1 | r2 | r3 | r4 | r5) == 0
}

/// Walks the frames of a segment file in chunks through one reused buffer, so recovery
/// never holds (or page-faults in) a whole segment: the same contract as [`FrameIter`]
/// with file offsets. Profiling replay showed a third of its time in allocating and
/// zeroing a whole-file buffer.
#[derive(Debug)]
pub struct ChunkedFrames<'a> {
    storage: &'a dyn crate::storage::Storage,
    name: &'a str,
    buf: rkyv::util::AlignedVec<16>,
    /// File offset of `buf[0]`.
    buf_start: usize,
    /// Valid bytes in `buf`.
    buf_len: usize,
    /// Next frame, relative to `buf`.
    pos: usize,
    /// File offset where scanning stops.
    end: usize,
    done: bool,
    expansion: Option<Expansion>,
    /// The segment's format version.
    version: u32,
}

/// Bytes read per chunk.
pub const CHUNK_SIZE: usize = 8 << 20;

impl<'a> ChunkedFrames<'a> {
    /// Frames of `name` from `start` (16-aligned) up to `end` (exclusive), in a segment of
    /// format `version` (below 3, a batch frame is an error).
    #[must_use]
    pub fn new(
        storage: &'a dyn crate::storage::Storage,
        name: &'a str,
        start: usize,
        end: usize,
        version: u32,
    ) -> Self {
        let mut buf = rkyv::util::AlignedVec::<16>::with_capacity(CHUNK_SIZE + FRAME_LEN_MAX + 16);
        buf.resize(CHUNK_SIZE + FRAME_LEN_MAX + 16, 0);
        ChunkedFrames {
            storage,
            name,
            buf,
            buf_start: start,
            buf_len: 0,
            pos: 0,
            end,
            done: start >= end,
            expansion: None,
            version,
        }
    }

    /// File offset of the next frame: after the last frame yielded, at the bad frame after
    /// an `Err`, or at the end-of-data header once exhausted.
    #[must_use]
    pub fn offset(&self) -> usize {
        self.buf_start + self.pos
    }

    /// Moves the unread bytes to the front and reads more; false when nothing more came.
    fn refill(&mut self) -> std::io::Result<bool> {
        self.buf.copy_within(self.pos..self.buf_len, 0);
        self.buf_start += self.pos;
        self.buf_len -= self.pos;
        self.pos = 0;
        let want = self.buf.len().min(self.end.saturating_sub(self.buf_start));
        if want <= self.buf_len {
            return Ok(false);
        }
        let Some(target) = self.buf.get_mut(self.buf_len..want) else {
            return Ok(false);
        };
        let n = self.storage.read_at(self.name, (self.buf_start + self.buf_len) as u64, target)?;
        self.buf_len += n;
        Ok(n > 0)
    }

    /// The next record if it is a draw: the next draw of the batch being expanded, or a
    /// valid draw frame already in the buffer: `(offset, request_id, item)`. `None`
    /// otherwise; then [`ChunkedFrames::next_frame`] gives the full answer (and reads more
    /// when needed).
    #[inline]
    pub fn next_draw(&mut self) -> Option<(usize, u64, Option<u32>)> {
        if let Some(expansion) = &mut self.expansion {
            let at = expansion.at;
            return expansion.next_draw().map(|(request_id, item)| (at, request_id, item));
        }
        if self.done {
            return None;
        }
        let rest = self.buf.get(self.pos..self.buf_len)?;
        let (request_id, item) = frame::decode_draw(rest)?;
        let at = self.offset();
        self.pos += frame::DRAW_FRAME_SIZE;
        if self.offset() >= self.end {
            self.done = true;
        }
        Some((at, request_id, item))
    }

    /// The next frame, or the I/O error reading it.
    ///
    /// # Errors
    /// A read error (the frame's own damage is the inner `Err`).
    pub fn next_frame(&mut self) -> std::io::Result<Option<Result<(usize, Record), FrameError>>> {
        loop {
            if let Some(expansion) = &mut self.expansion {
                if let Some(record) = expansion.next() {
                    return Ok(Some(Ok((expansion.at, record))));
                }
                self.expansion = None;
            }
            if self.done {
                return Ok(None);
            }
            let window_end = self.buf_start + self.buf_len;
            let at_file_end = window_end >= self.end;
            let rest = self.buf.get(self.pos..self.buf_len).unwrap_or_default();
            let near_window_end = rest.len() < FRAME_LEN_MAX + FRAME_HEADER_SIZE;
            let decoded = frame::decode(rest);
            match decoded {
                Ok(Some((record, len))) => {
                    let at = self.offset();
                    let batches = self.version >= BATCH_VERSION_MIN;
                    let record = match admit(at, record, batches, self.version) {
                        Ok(record) => record,
                        Err(e) => {
                            self.done = true;
                            return Ok(Some(Err(e)));
                        }
                    };
                    self.pos += len;
                    if self.offset() >= self.end {
                        self.done = true;
                    }
                    match record {
                        Ok(record) => return Ok(Some(Ok((at, record)))),
                        // The loop's first step hands out its first record.
                        Err(expansion) => self.expansion = Some(expansion),
                    }
                }
                // Not conclusive while the frame may continue past the bytes read so far.
                _ if near_window_end && !at_file_end => {
                    if !self.refill()? {
                        self.end = self.buf_start + self.buf_len;
                    }
                }
                Ok(None) => {
                    self.done = true;
                    return Ok(None);
                }
                Err(e) => {
                    self.done = true;
                    return Ok(Some(Err(e)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::deadline::{deadline, UNIT_TEST_DEADLINE};
    use crate::wal::frame::{encode_commit, encode_draw, encode_update, DRAW_FRAME_SIZE};
    use crate::wal::header::SEGMENT_HEADER_SIZE;
    use proptest::prelude::*;
    use rkyv::util::AlignedVec;

    /// A zeroed segment of `size` bytes with frames appended from offset 256; returns the
    /// buffer and the frame offsets.
    fn segment(size: usize, records: &[Record]) -> (AlignedVec<16>, Vec<usize>) {
        let mut buf = AlignedVec::<16>::new();
        buf.resize(size, 0);
        let mut at = SEGMENT_HEADER_SIZE;
        let mut offsets = Vec::new();
        for r in records {
            offsets.push(at);
            at += r.encode(&mut buf[at..]).unwrap();
        }
        (buf, offsets)
    }

    fn draws_and_commit(first: u64, n: u64, group: u64) -> Vec<Record> {
        let mut v: Vec<Record> = (first..first + n)
            .map(|request_id| Record::Draw { request_id, item: Some((request_id % 3) as u32) })
            .collect();
        v.push(Record::Commit { last_request_id: first + n - 1, group });
        v
    }

    #[test]
    fn walks_all_frames_and_stops_at_zeros() {
        let _deadline = deadline("walks_all_frames_and_stops_at_zeros", UNIT_TEST_DEADLINE);
        let mut records = vec![Record::Snapshot {
            sequence: 1,
            file_name: "snapshot.000001".into(),
            sha256: [3; 32],
            last_request_id: 0,
        }];
        records.push(Record::Update { index: 0, item_id: "gold".into(), quantity: 5, weight: 1 });
        records.extend(draws_and_commit(1, 10, 1));
        let (buf, offsets) = segment(4096, &records);
        let mut it = FrameIter::new(&buf, SEGMENT_HEADER_SIZE, buf.len());
        let got: Vec<(usize, Record)> = it.by_ref().map(Result::unwrap).collect();
        assert_eq!(got.iter().map(|(o, _)| *o).collect::<Vec<_>>(), offsets);
        assert_eq!(got.into_iter().map(|(_, r)| r).collect::<Vec<_>>(), records);
        let end = offsets.last().unwrap() + COMMIT_FRAME_SIZE;
        assert_eq!(it.offset(), end);
        assert!(it.next().is_none());
    }

    #[test]
    fn stops_at_end_exactly() {
        let _deadline = deadline("stops_at_end_exactly", UNIT_TEST_DEADLINE);
        let records = draws_and_commit(1, 3, 1);
        let (buf, offsets) = segment(1024, &records);
        let end = offsets[3] + COMMIT_FRAME_SIZE;
        let mut it = FrameIter::new(&buf, SEGMENT_HEADER_SIZE, end);
        assert_eq!(it.by_ref().count(), 4);
        assert_eq!(it.offset(), end);
        // An end inside a frame: the frame is truncated.
        let mut it = FrameIter::new(&buf, SEGMENT_HEADER_SIZE, end - 16);
        let items: Vec<_> = it.by_ref().collect();
        assert_eq!(items.len(), 4);
        assert!(matches!(items[3], Err(FrameError::Truncated { .. })));
        assert_eq!(it.offset(), offsets[3]);
        // Empty ranges and ends past the buffer.
        assert_eq!(FrameIter::new(&buf, 512, 256).count(), 0);
        assert_eq!(FrameIter::new(&buf, 2048, 4096).count(), 0);
        assert_eq!(FrameIter::new(&buf, SEGMENT_HEADER_SIZE, usize::MAX).count(), 4);
    }

    #[test]
    fn err_then_none() {
        let _deadline = deadline("err_then_none", UNIT_TEST_DEADLINE);
        let records = draws_and_commit(1, 5, 1);
        let (mut buf, offsets) = segment(1024, &records);
        buf[offsets[2] + 20] ^= 1;
        let mut it = FrameIter::new(&buf, SEGMENT_HEADER_SIZE, buf.len());
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_ok());
        assert!(matches!(it.next(), Some(Err(FrameError::ChecksumMismatch { .. }))));
        assert_eq!(it.offset(), offsets[2]);
        assert!(it.next().is_none());
        assert!(it.next().is_none());
        assert_eq!(it.offset(), offsets[2]);
    }

    #[test]
    fn misaligned_start_is_an_error() {
        let _deadline = deadline("misaligned_start_is_an_error", UNIT_TEST_DEADLINE);
        let (buf, _) = segment(1024, &draws_and_commit(1, 1, 1));
        let mut it = FrameIter::new(&buf, SEGMENT_HEADER_SIZE + 8, buf.len());
        assert!(matches!(it.next(), Some(Err(FrameError::Misaligned { misalignment: 8 }))));
        assert!(it.next().is_none());
    }

    #[test]
    fn finds_a_commit_after_garbage() {
        let _deadline = deadline("finds_a_commit_after_garbage", UNIT_TEST_DEADLINE);
        let mut records = draws_and_commit(1, 4, 1);
        records.extend(draws_and_commit(5, 4, 2));
        let (mut buf, offsets) = segment(4096, &records);
        // Damage the second frame of the first group.
        let bad = offsets[1];
        buf[bad..bad + 8].fill(0xAB);
        let it = FrameIter::new(&buf, SEGMENT_HEADER_SIZE, buf.len());
        let errs: Vec<_> = it.filter(Result::is_err).collect();
        assert_eq!(errs.len(), 1);
        // The first group's commit (last id 4) follows.
        assert_eq!(find_commit_after(&buf, bad, buf.len(), 0), Some(offsets[4]));
        assert_eq!(find_commit_after(&buf, bad, buf.len(), 3), Some(offsets[4]));
        // Commits at or below `after_request_id` do not count.
        assert_eq!(find_commit_after(&buf, bad, buf.len(), 4), Some(offsets[9]));
        assert_eq!(find_commit_after(&buf, bad, buf.len(), 8), None);
        // `end` bounds the scan.
        assert_eq!(find_commit_after(&buf, bad, offsets[9] + 31, 4), None);
        assert_eq!(find_commit_after(&buf, bad, offsets[9] + 32, 4), Some(offsets[9]));
        // A commit in garbage that is not 16-aligned relative to the frames is not found.
        let mut shifted = AlignedVec::<16>::new();
        shifted.resize(1024, 0x5A);
        let mut tmp = AlignedVec::<16>::new();
        tmp.resize(32, 0);
        encode_commit(&mut tmp, 100, 9);
        shifted[264..296].copy_from_slice(&tmp);
        assert_eq!(find_commit_after(&shifted, 0, 1024, 0), None);
        shifted[272..304].copy_from_slice(&tmp);
        assert_eq!(find_commit_after(&shifted, 0, 1024, 0), Some(272));
        assert_eq!(find_commit_after(&shifted, 272, 1024, 0), None);
        // `from` unaligned: scanning starts at the next aligned offset.
        assert_eq!(find_commit_after(&shifted, 260, 1024, 0), Some(272));
        assert_eq!(find_commit_after(&shifted, 256, 1024, 0), Some(272));
    }

    #[test]
    fn torn_tail_has_no_commit_after_it() {
        let _deadline = deadline("torn_tail_has_no_commit_after_it", UNIT_TEST_DEADLINE);
        let mut records = draws_and_commit(1, 4, 1);
        records.extend(draws_and_commit(5, 4, 2));
        let (buf, offsets) = segment(4096, &records);
        // Tear the last group: keep only part of its commit frame, and part of a draw.
        let commit = offsets[9];
        for cut in [commit, commit + 1, commit + 16, commit + 20] {
            let mut torn = AlignedVec::<16>::new();
            torn.resize(buf.len(), 0);
            torn[..cut].copy_from_slice(&buf[..cut]);
            let mut it = FrameIter::new(&torn, SEGMENT_HEADER_SIZE, torn.len());
            let ok = it.by_ref().take_while(Result::is_ok).count();
            assert_eq!(ok, 9, "cut={cut}");
            assert_eq!(find_commit_after(&torn, it.offset(), torn.len(), 4), None);
        }
        // Only zeros follow.
        let mut zeros = AlignedVec::<16>::new();
        zeros.resize(4096, 0);
        assert_eq!(find_commit_after(&zeros, 256, zeros.len(), 0), None);
        // Degenerate ranges.
        assert_eq!(find_commit_after(&buf, 256, 0, 0), None);
        assert_eq!(find_commit_after(&buf, usize::MAX - 3, usize::MAX, 0), None);
        assert_eq!(find_commit_after(&buf, 0, usize::MAX, u64::MAX), None);
    }

    #[test]
    fn partial_commit_frames_do_not_count() {
        let _deadline = deadline("partial_commit_frames_do_not_count", UNIT_TEST_DEADLINE);
        let mut buf = AlignedVec::<16>::new();
        buf.resize(512, 0);
        encode_draw(&mut buf[256..], 1, None);
        let at = 256 + DRAW_FRAME_SIZE;
        encode_commit(&mut buf[at..], 1, 1);
        // Zero the payload's second half: the header looks right, the CRC does not match.
        buf[at + 24..at + 32].fill(0);
        assert_eq!(find_commit_after(&buf, 256, buf.len(), 0), None);
        // A valid update frame whose kind byte is edited to commit is refused by the CRC.
        let mut buf2 = AlignedVec::<16>::new();
        buf2.resize(512, 0);
        let len = encode_update(&mut buf2[272..], 0, "g", 1, 1).unwrap();
        buf2[280] = FrameKind::Commit as u8;
        assert!(len >= 32);
        assert_eq!(find_commit_after(&buf2, 256, buf2.len(), 0), None);
    }

    /// A kind-1 draw (id 1), a batch (ids 2..=5, id 3 and 4 one keyed request, 3 empty)
    /// and a commit; returns the buffer and the three frame offsets.
    fn mixed() -> (AlignedVec<16>, [usize; 3]) {
        use crate::wal::batch::{Batch, BatchKey};
        let batch = Batch {
            first_request_id: 2,
            unix_s: 1_700_000_000,
            width: 1,
            keys: vec![BatchKey { key: 0xFEED, offset: 1, count: 2 }],
            items: vec![Some(0), None, Some(3), Some(1)],
        };
        let records = [
            Record::Draw { request_id: 1, item: Some(2) },
            Record::Batch(batch),
            Record::Commit { last_request_id: 5, group: 1 },
        ];
        let (buf, offsets) = segment(1024, &records);
        (buf, [offsets[0], offsets[1], offsets[2]])
    }

    fn expanded(at: [usize; 3]) -> Vec<(usize, Record)> {
        let [d, b, c] = at;
        vec![
            (d, Record::Draw { request_id: 1, item: Some(2) }),
            (b, Record::Draw { request_id: 2, item: Some(0) }),
            (b, Record::Key { key: 0xFEED, first_request_id: 3, count: 2, unix_s: 1_700_000_000 }),
            (b, Record::Draw { request_id: 3, item: None }),
            (b, Record::Draw { request_id: 4, item: Some(3) }),
            (b, Record::Draw { request_id: 5, item: Some(1) }),
            (c, Record::Commit { last_request_id: 5, group: 1 }),
        ]
    }

    #[test]
    fn batches_are_expanded_into_keys_and_draws() {
        let _deadline = deadline("batches_are_expanded_into_keys_and_draws", UNIT_TEST_DEADLINE);
        let (buf, at) = mixed();
        let mut it = FrameIter::new(&buf, SEGMENT_HEADER_SIZE, buf.len());
        let got: Vec<_> = it.by_ref().map(Result::unwrap).collect();
        assert_eq!(got, expanded(at));
        assert_eq!(it.offset(), at[2] + COMMIT_FRAME_SIZE);
        // The same from the file, in chunks, through the draw fast path where it applies.
        let storage = crate::storage::FaultyStorage::new();
        storage.put_file("wal.000000", buf.to_vec());
        let mut frames = ChunkedFrames::new(&storage, "wal.000000", 256, buf.len(), 3);
        let mut got = Vec::new();
        loop {
            if let Some((offset, request_id, item)) = frames.next_draw() {
                got.push((offset, Record::Draw { request_id, item }));
                continue;
            }
            match frames.next_frame().unwrap() {
                Some(frame) => got.push(frame.unwrap()),
                None => break,
            }
        }
        assert_eq!(got, expanded(at));
    }

    #[test]
    fn a_batch_in_a_segment_before_version_3_is_refused() {
        let _deadline =
            deadline("a_batch_in_a_segment_before_version_3_is_refused", UNIT_TEST_DEADLINE);
        let (buf, at) = mixed();
        for version in [1, 2] {
            let mut it = FrameIter::new(&buf, SEGMENT_HEADER_SIZE, buf.len()).version(version);
            assert!(matches!(it.next(), Some(Ok((_, Record::Draw { request_id: 1, .. })))));
            let e = it.next().unwrap().unwrap_err();
            assert_eq!(e, FrameError::KindNotInVersion { kind: FrameKind::Batch, version });
            assert!(e.to_string().contains("batch frame in a segment of format version"), "{e}");
            assert!(it.next().is_none());
            assert_eq!(it.offset(), at[1], "points at the batch frame");
            let storage = crate::storage::FaultyStorage::new();
            storage.put_file("wal.000000", buf.to_vec());
            let mut frames = ChunkedFrames::new(&storage, "wal.000000", 256, buf.len(), version);
            assert!(matches!(frames.next_frame(), Ok(Some(Ok((_, Record::Draw { .. }))))));
            assert!(matches!(
                frames.next_frame(),
                Ok(Some(Err(FrameError::KindNotInVersion { version: v, .. }))) if v == version
            ));
            assert_eq!(frames.offset(), at[1]);
        }
    }

    /// What a walker yielded: each frame's offset and record, or the error it stopped at.
    type Walked = Vec<Result<(usize, Record), FrameError>>;

    /// Every record through [`ChunkedFrames`], the draw fast path first where it applies
    /// (as recovery reads), then the walker's final offset.
    fn chunked(
        storage: &crate::storage::FaultyStorage,
        start: usize,
        end: usize,
        fast: bool,
    ) -> (Walked, usize) {
        let mut frames = ChunkedFrames::new(storage, "wal.000000", start, end, 3);
        let mut got = Vec::new();
        loop {
            if fast {
                if let Some((offset, request_id, item)) = frames.next_draw() {
                    got.push(Ok((offset, Record::Draw { request_id, item })));
                    continue;
                }
            }
            match frames.next_frame().unwrap() {
                Some(Err(e)) => {
                    got.push(Err(e));
                    break;
                }
                Some(frame) => got.push(frame),
                None => break,
            }
        }
        (got, frames.offset())
    }

    /// A segment longer than two chunks, with frames of several sizes so that frames
    /// straddle the chunk boundaries: the chunked walker yields exactly what [`FrameIter`]
    /// yields over the whole file, at the same offsets, and stops at the same place.
    #[test]
    fn chunked_frames_agree_with_frame_iter_across_chunk_boundaries() {
        let _deadline = deadline("chunked_frames_across_chunks", UNIT_TEST_DEADLINE);
        let size = 2 * CHUNK_SIZE + (1 << 20);
        let mut buf = AlignedVec::<16>::new();
        buf.resize(size, 0);
        let mut at = SEGMENT_HEADER_SIZE;
        let mut id = 1_u64;
        let mut group = 1;
        let mut records = 0;
        while at + 4096 < size - (1 << 19) {
            for _ in 0..5 {
                at += encode_draw(&mut buf[at..], id, Some((id % 7) as u32));
                id += 1;
                records += 1;
            }
            if group % 3 == 0 {
                let item_id = "x".repeat((group % 40) as usize + 1);
                at += encode_update(&mut buf[at..], 1, &item_id, 5, 2).unwrap();
                records += 1;
            }
            at += encode_commit(&mut buf[at..], id - 1, group);
            group += 1;
            records += 1;
        }
        let storage = crate::storage::FaultyStorage::new();
        storage.put_file("wal.000000", buf.to_vec());
        let mut whole = FrameIter::new(&buf, SEGMENT_HEADER_SIZE, size).version(3);
        let expected: Vec<_> = whole.by_ref().collect();
        assert_eq!(expected.len(), records);
        assert_eq!(whole.offset(), at, "the data ends where the last frame ends");
        for fast in [true, false] {
            let (got, offset) = chunked(&storage, SEGMENT_HEADER_SIZE, size, fast);
            assert_eq!(got.len(), expected.len(), "fast path {fast}");
            assert!(got == expected, "fast path {fast}: the chunked walk differs");
            assert_eq!(offset, at, "fast path {fast}");
        }
        // Stopping at an `end` inside the data, just past a chunk's worth of frames.
        let cut = expected
            .iter()
            .map(|r| r.as_ref().unwrap().0)
            .find(|o| *o > CHUNK_SIZE + 4096)
            .unwrap();
        let mut part = FrameIter::new(&buf, SEGMENT_HEADER_SIZE, cut).version(3);
        let want: Vec<_> = part.by_ref().collect();
        let (got, offset) = chunked(&storage, SEGMENT_HEADER_SIZE, cut, true);
        assert!(got == want, "up to {cut}");
        assert_eq!(offset, part.offset());
        assert_eq!(offset, cut);
    }

    /// A file that ends before the `end` the walker was given (a truncated segment): the
    /// walk yields every whole frame and stops, at the file's end when it ends between
    /// frames, or with `Truncated` at the cut frame.
    #[test]
    fn chunked_frames_stop_where_a_short_file_ends() {
        let _deadline = deadline("chunked_frames_short_file", UNIT_TEST_DEADLINE);
        let records = draws_and_commit(1, 40, 1);
        let (buf, offsets) = segment(8192, &records);
        let data_end = offsets[40] + COMMIT_FRAME_SIZE;
        let storage = crate::storage::FaultyStorage::new();
        // Ends exactly after the commit, no zeros after it.
        storage.put_file("wal.000000", buf[..data_end].to_vec());
        for fast in [true, false] {
            let (got, offset) = chunked(&storage, SEGMENT_HEADER_SIZE, 1 << 20, fast);
            assert_eq!(got.len(), 41, "fast path {fast}");
            assert!(got.iter().all(Result::is_ok), "fast path {fast}");
            assert_eq!(offset, data_end, "fast path {fast}");
        }
        // Cut inside the 11th draw frame.
        let cut = offsets[10] + 20;
        storage.put_file("wal.000000", buf[..cut].to_vec());
        for fast in [true, false] {
            let (got, offset) = chunked(&storage, SEGMENT_HEADER_SIZE, 1 << 20, fast);
            assert_eq!(got.len(), 11, "fast path {fast}: {:?}", got.last());
            assert!(matches!(got[10], Err(FrameError::Truncated { .. })), "{:?}", got[10]);
            assert_eq!(offset, offsets[10], "fast path {fast}");
        }
        // Cut inside a long frame, with more of it present than its offset: where the data
        // ends is `buf_start + buf_len` of the walker's window (with a `-` there, it
        // underflowed in debug builds and looped for ever in release ones).
        let update = Record::Update {
            index: 0,
            item_id: "x".repeat(crate::wal::frame::ITEM_ID_LEN_MAX),
            quantity: 1,
            weight: 1,
        };
        let (buf, offsets) = segment(8192, &[update]);
        let cut = offsets[0] + 600;
        storage.put_file("wal.000000", buf[..cut].to_vec());
        for fast in [true, false] {
            let (got, offset) = chunked(&storage, SEGMENT_HEADER_SIZE, 1 << 20, fast);
            assert_eq!(got.len(), 1, "fast path {fast}: {got:?}");
            assert!(matches!(got[0], Err(FrameError::Truncated { .. })), "{:?}", got[0]);
            assert_eq!(offset, offsets[0], "fast path {fast}");
        }
    }

    #[test]
    fn a_torn_write_is_a_zero_run_to_a_sector_boundary_or_a_zero_sector() {
        let _deadline = deadline("torn_write_between", UNIT_TEST_DEADLINE);
        let mut bytes = vec![0xa5_u8; 4 * SECTOR_SIZE];
        // Nothing zero: no torn write.
        assert!(!torn_write_between(&bytes, 16, 4 * SECTOR_SIZE));
        // Zeros from the bad frame to the sector's end.
        bytes[480..512].fill(0);
        assert!(torn_write_between(&bytes, 480, 4 * SECTOR_SIZE));
        assert!(!torn_write_between(&bytes, 464, 4 * SECTOR_SIZE), "garbage first");
        // A zero sector later, before `end` only.
        bytes[1024..1536].fill(0);
        assert!(torn_write_between(&bytes, 464, 1536));
        assert!(torn_write_between(&bytes, 464, 1025));
        assert!(!torn_write_between(&bytes, 464, 1024), "the zero sector starts at end");
        // Zeros short of a whole sector, not reaching the boundary from `from`: none.
        bytes[1024..1536].fill(0xa5);
        bytes[1100..1536].fill(0);
        assert!(!torn_write_between(&bytes, 464, 4 * SECTOR_SIZE));
        assert!(!torn_write_between(&bytes, 500, 500), "empty range");
        assert!(!torn_write_between(&bytes, 4 * SECTOR_SIZE, 8 * SECTOR_SIZE), "past the end");
    }

    proptest! {
        /// Garbage after `from` never panics, and whatever is found is a valid commit.
        #[test]
        fn find_commit_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..600),
            from in 0_usize..700,
            end in 0_usize..700,
            after in any::<u64>(),
        ) {
            let _deadline = deadline("find_commit_never_panics", UNIT_TEST_DEADLINE);
            let mut buf = AlignedVec::<16>::new();
            buf.extend_from_slice(&bytes);
            if let Some(at) = find_commit_after(&buf, from, end, after) {
                prop_assert!(at > from && at % 16 == 0);
                let decoded = frame::decode(&buf[at..]);
                let is_later_commit = matches!(
                    decoded,
                    Ok(Some((Record::Commit { last_request_id, .. }, _)))
                        if last_request_id > after
                );
                prop_assert!(is_later_commit);
            }
            for item in FrameIter::new(&buf, from, end) {
                let _ = item;
            }
        }
    }
}
