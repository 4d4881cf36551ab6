//! The segment being written: a mapped region (the file itself, or a staging buffer the
//! flusher writes to the file; see `storage::SegmentWrites`) the core thread appends frames to,
//! and the operations on a whole segment: [`install`] a prepared one, [`close`] a retired
//! one. The only raw writes into a mapping are here ([`ActiveSegment::append`], [`write_at`]).
//!
//! # Assumptions about the mapping
//! The engine holds the data directory's exclusive lock, so nothing else writes these
//! files. Within the process, the bytes of a segment are written by one party at a time:
//! the header and snapshot marker by whoever installs the segment (before anyone else sees
//! it; a rotation's marker by the flusher into bytes the core reserved and skipped, see
//! [`DeferredSnapshot`]), frames by the core thread's [`ActiveSegment`] (strictly below `len`, at and beyond
//! its cursor), and the closed header by the flusher only after the core moved to the next
//! segment. The flusher syncs only ranges below a commit offset the core published with a
//! Release store, so it never races the writer on a byte.

use std::io;
use std::sync::Arc;

use super::frame;
use super::header::{SegmentHeader, SegmentStatus, SEGMENT_HEADER_SIZE};
use crate::layout::{segment_name, snapshot_name, tmp_name};
use crate::pool::PoolState;
use crate::snapshot::format::{self as snapshot_format, SnapshotState};
use crate::storage::{SegmentMap, Storage};

/// The core thread's cursor into the segment it appends to.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    map: Arc<dyn SegmentMap>,
    /// The N of `wal.NNNNNN`.
    pub(crate) sequence: u64,
    /// First request id this segment may contain.
    pub(crate) first_request_id: u64,
    cursor: usize,
}

impl ActiveSegment {
    /// Appending starts at `cursor` (just past the header and the snapshot marker).
    pub(crate) fn new(
        map: Arc<dyn SegmentMap>,
        sequence: u64,
        first_request_id: u64,
        cursor: usize,
    ) -> ActiveSegment {
        assert!(cursor <= map.len(), "cursor={cursor} len={}", map.len());
        ActiveSegment { map, sequence, first_request_id, cursor }
    }

    /// Where the next frame goes.
    #[inline]
    pub(crate) fn cursor(&self) -> usize {
        self.cursor
    }

    /// Bytes left after the cursor.
    #[inline]
    pub(crate) fn room(&self) -> usize {
        self.map.len() - self.cursor
    }

    /// The mapping, for the flusher.
    pub(crate) fn map(&self) -> &Arc<dyn SegmentMap> {
        &self.map
    }

    /// Writes one frame with `encode` into the next `len_max` bytes and advances past the
    /// length it reports; `None` if `len_max` bytes do not fit (the caller reserved room, so
    /// that is a bug upstream, reported as an error rather than a write out of bounds).
    #[inline]
    pub(crate) fn append(
        &mut self,
        len_max: usize,
        encode: impl FnOnce(&mut [u8]) -> usize,
    ) -> Option<usize> {
        if len_max > self.room() {
            return None;
        }
        // SAFETY: `cursor + len_max <= map.len()` (checked above), the map is valid for its
        // whole length while `self.map` lives, and per the module's discipline only this
        // ActiveSegment writes bytes at or beyond the cursor, so the slice is not aliased.
        #[allow(unsafe_code)]
        let buf =
            unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr().add(self.cursor), len_max) };
        let len = encode(buf);
        debug_assert!(len <= len_max && len.is_multiple_of(16), "len={len} len_max={len_max}");
        let at = self.cursor;
        self.cursor += len;
        Some(at)
    }
}

/// Writes `bytes` at `offset` of a map nobody else writes yet (installing a new segment's
/// header and marker), nobody else writes at those bytes (a deferred marker: the core
/// appends beyond them) or any more (rewriting a retired segment's header).
///
/// # Panics
/// If the range is outside the map.
pub(crate) fn write_at(map: &dyn SegmentMap, offset: usize, bytes: &[u8]) {
    assert!(offset + bytes.len() <= map.len(), "offset={offset} len={}", bytes.len());
    // SAFETY: the range is inside the map (asserted) and, per the module's discipline, has
    // no other writer at this time; `bytes` is a separate buffer, so they do not overlap.
    #[allow(unsafe_code)]
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), map.as_ptr().add(offset), bytes.len());
    }
}

/// A segment whose header and snapshot marker are written, to be put in place.
#[derive(Debug)]
pub(crate) struct Install {
    pub(crate) map: Arc<dyn SegmentMap>,
    pub(crate) tmp_name: String,
    pub(crate) sequence: u64,
    /// Offset just past the snapshot marker.
    pub(crate) marker_end: usize,
    /// The snapshot file's bytes (empty while `deferred` holds what they are made from).
    pub(crate) snapshot: Vec<u8>,
    /// A rotation's snapshot, still to encode: [`Install::finish`] (the flusher) encodes,
    /// hashes and writes its marker before installing.
    pub(crate) deferred: Option<Box<DeferredSnapshot>>,
}

/// A rotation's snapshot as the core thread hands it over: the pool's state, copied on the
/// core thread; encoding and hashing it (~75 MB and ~90 ms with a full 1 M-key window of
/// pulls of 10, measured) is left to the flusher, which installs the segment anyway before
/// any group in it is acknowledged. The core reserved the marker's bytes
/// (`marker_at..marker_end`, zeros) and appends frames only beyond them, so the flusher's
/// write of the marker has no other writer on its bytes (see the module docs).
#[derive(Debug)]
pub(crate) struct DeferredSnapshot {
    pub(crate) state: PoolState,
    pub(crate) catalog_fingerprint: u64,
    pub(crate) marker_at: usize,
}

impl Install {
    /// Encodes a deferred snapshot and writes its marker into the reserved bytes; nothing
    /// to do for a snapshot encoded already. Before [`install`].
    ///
    /// # Errors
    /// The snapshot or its marker cannot be encoded, or the marker is not the length the
    /// core reserved (a bug upstream, reported rather than written out of place).
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        let Some(d) = self.deferred.take() else { return Ok(()) };
        let snapshot = SnapshotState::from_pool(&d.state, self.sequence, d.catalog_fingerprint);
        let (bytes, sha256) = snapshot_format::try_encode(&snapshot).map_err(io::Error::other)?;
        let name = snapshot_name(self.sequence);
        let mut marker = vec![0; frame::snapshot_frame_len(name.len())];
        let last = d.state.last_request_id.0;
        let len = frame::encode_snapshot(&mut marker, self.sequence, &name, &sha256, last)
            .map_err(|e| io::Error::other(format!("encoding snapshot marker: {e}")))?;
        if d.marker_at + len != self.marker_end {
            return Err(io::Error::other(format!(
                "snapshot marker of {len} bytes at {} does not end at {}",
                d.marker_at, self.marker_end
            )));
        }
        write_at(&*self.map, d.marker_at, &marker[..len]);
        self.snapshot = bytes;
        Ok(())
    }
}

/// Puts a prepared segment in place: snapshot file (tmp, sync, rename, sync dir), then the
/// segment's header and marker synced, renamed, directory synced. Only then may anything
/// in the segment be acknowledged.
pub(crate) fn install(storage: &dyn Storage, i: &Install) -> io::Result<()> {
    let snapshot = snapshot_name(i.sequence);
    let snapshot_tmp = tmp_name(&snapshot);
    storage.write_synced(&snapshot_tmp, &i.snapshot)?;
    storage.rename(&snapshot_tmp, &snapshot)?;
    // The snapshot's name must be durable before a segment that refers to it.
    storage.sync_dir()?;
    i.map.sync_range(0, i.marker_end)?;
    storage.rename(&i.tmp_name, &segment_name(i.sequence))?;
    storage.sync_dir()
}

/// Closes a segment at `header.end_offset` (a header closed there): syncs its frames from
/// `synced` up to the end, then writes and syncs the closed header. The one place a segment
/// is closed: the flusher and the preparer close a retired segment through its map,
/// [`close_file`] a segment file (recovery's crashed segments, a restart's re-mark, a
/// repair's cut).
///
/// # Errors
/// A sync failed: the segment is not closed (SPEC §2.9: never retried).
///
/// # Panics
/// If `header` is not closed.
pub(crate) fn close(map: &dyn SegmentMap, synced: usize, header: &SegmentHeader) -> io::Result<()> {
    assert_eq!(header.status, SegmentStatus::Closed, "closing with an open header");
    map.retire();
    let end = usize::try_from(header.end_offset).unwrap_or(usize::MAX).min(map.len());
    // The frames must be durable before the header that calls them closed. A map that
    // writes through syncs exactly the range not yet synced. A staged one may hold written
    // but unsynced bytes below `synced` (buffered mode writes groups without syncing them):
    // its sync_range ends in an fdatasync of the whole file, so call it even for no bytes.
    if end > synced || !map.writes_through() {
        map.sync_range(synced, end.saturating_sub(synced))?;
    }
    write_header(map, header)
}

/// Closes segment file `name` at `header.end_offset` ([`close`]). Its frames up to there
/// must already be durable in the file: recovery read them from it, a repair wrote them
/// synced.
///
/// # Errors
/// The file cannot be mapped, or the sync failed.
pub(crate) fn close_file(
    storage: &dyn Storage,
    name: &str,
    header: &SegmentHeader,
) -> io::Result<()> {
    let map = storage.open_segment(name)?;
    let end = usize::try_from(header.end_offset).unwrap_or(usize::MAX).min(map.len());
    close(&*map, end, header)
}

/// Writes `header` over the segment's and syncs it (closing, or reopening to append again).
///
/// # Errors
/// The sync failed.
pub(crate) fn write_header(map: &dyn SegmentMap, header: &SegmentHeader) -> io::Result<()> {
    write_at(map, 0, &header.encode());
    map.sync_range(0, SEGMENT_HEADER_SIZE)
}
