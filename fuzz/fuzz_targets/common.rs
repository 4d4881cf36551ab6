//! Helpers shared by the fuzz targets: checksums resealed after the fuzzer's edits, so its
//! inputs reach the checks behind the CRC / SHA-256 (which random bytes almost never pass).

#![allow(dead_code)]

use rewardpool::wal::crc::crc32c;
use rewardpool::wal::header::SEGMENT_HEADER_SIZE;

/// Recomputes the CRC of every whole frame in `buf`, walking frame lengths from the start.
pub(crate) fn reseal_frames(buf: &mut [u8]) {
    let mut at = 0usize;
    while let Some(head) = buf.get(at..at + 16) {
        let payload = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let Some(len) = payload.checked_add(15).map(|p| 16 + p / 16 * 16) else { return };
        let Some(end) = at.checked_add(len).filter(|&e| e <= buf.len()) else { return };
        let crc = crc32c(&buf[at + 4..end]);
        buf[at..at + 4].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

/// Recomputes a segment header's CRC (bytes 252..256 over 0..252).
pub(crate) fn reseal_header(buf: &mut [u8]) {
    if buf.len() >= SEGMENT_HEADER_SIZE {
        let crc = crc32c(&buf[..SEGMENT_HEADER_SIZE - 4]);
        buf[SEGMENT_HEADER_SIZE - 4..SEGMENT_HEADER_SIZE].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Recomputes a segment's header CRC and its frames' CRCs.
pub(crate) fn reseal_segment(buf: &mut [u8]) {
    reseal_header(buf);
    if buf.len() > SEGMENT_HEADER_SIZE {
        reseal_frames(&mut buf[SEGMENT_HEADER_SIZE..]);
    }
}

/// Sets a snapshot file's payload length and SHA-256 to match its bytes.
pub(crate) fn reseal_snapshot(buf: &mut [u8]) {
    if buf.len() >= 64 {
        let len = (buf.len() - 64) as u64;
        buf[16..24].copy_from_slice(&len.to_le_bytes());
        let sha = rewardpool::snapshot::format::sha256(&buf[64..]);
        buf[24..56].copy_from_slice(&sha);
    }
}
