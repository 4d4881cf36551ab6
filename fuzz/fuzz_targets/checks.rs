//! What each fuzz target checks, as plain functions: the targets call them, and the main
//! crate's test suite (tests/it/fuzz_inputs.rs) runs every committed seed and regression
//! input through them, so the inputs stay tested where no fuzzer runs.

#![allow(dead_code)]

#[path = "common.rs"]
mod common;

use rewardpool::config::Config;
use rewardpool::layout::{segment_name, snapshot_name, tmp_name};
use rewardpool::snapshot::format;
use rewardpool::storage::FaultyStorage;
use rewardpool::wal::header::{CloseReason, SegmentHeader};
use rewardpool::wal::{batch, frame};
use rewardpool::ItemSpec;

/// The frame decoder (v1 draw/update/marker/commit frames and v2 batch frames): a buffer
/// of frames walked as the log reader walks a segment, `decode_draw` (the replay fast path)
/// checked against `decode`, and the batch payload decoder on the raw bytes. Byte 0 of the
/// input: bit 0 set = reseal every frame's CRC first.
pub(crate) fn frame(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let _ = batch::decode_payload(rest);
    let mut buf = rkyv::util::AlignedVec::<16>::new();
    buf.extend_from_slice(rest);
    if mode & 1 == 1 {
        common::reseal_frames(&mut buf);
    }
    let mut at = 0;
    while at < buf.len() {
        let bytes = &buf[at..];
        let fast = frame::decode_draw(bytes);
        match frame::decode(bytes) {
            Ok(Some((record, len))) => {
                if let Some((id, it)) = fast {
                    assert!(
                        matches!(record, frame::Record::Draw { request_id, item }
                            if request_id == id && item == it),
                        "decode_draw disagrees with decode: {record:?} vs {fast:?}"
                    );
                }
                assert!(len > 0 && len % 16 == 0 && len <= bytes.len(), "frame length {len}");
                at += len;
            }
            Ok(None) | Err(_) => {
                assert!(fast.is_none(), "decode_draw accepted what decode does not: {fast:?}");
                break;
            }
        }
    }
}

/// The segment header decoder. Byte 0 of the input: bit 0 set = reseal the header's CRC.
/// A decoded header of a version still written must encode to bytes that decode to the
/// same header.
pub(crate) fn header(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut buf = rest.to_vec();
    if mode & 1 == 1 {
        common::reseal_header(&mut buf);
    }
    if let Ok(header) = SegmentHeader::decode(&buf) {
        // Version 1 headers (and their "unrecorded" close reason) are read only: `encode`
        // refuses them by contract (recovery re-marks such a header as version 2 or 3).
        if header.version < 2 || header.close_reason == Some(CloseReason::Unrecorded) {
            return;
        }
        let again = SegmentHeader::decode(&header.encode());
        assert_eq!(again, Ok(header), "encode/decode round trip");
    }
}

/// The snapshot decoder. Byte 0 of the input: bit 0 set = fix the payload length and the
/// SHA-256 so the input reaches rkyv's validation. A decoded state must encode to a file
/// that decodes to the same state.
pub(crate) fn snapshot(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut buf = rest.to_vec();
    if mode & 1 == 1 {
        common::reseal_snapshot(&mut buf);
    }
    if let Ok(state) = format::decode(&buf) {
        if let Ok((bytes, _)) = format::try_encode(&state) {
            assert_eq!(format::decode(&bytes).as_ref(), Ok(&state), "encode/decode round trip");
        }
    }
}

/// Recovery, `wal verify` and `wal repair`'s planning over an arbitrary data directory: a
/// few files of arbitrary bytes under real names, in the in-memory storage. The input is a
/// list of files: a name byte (index into NAMES), a 16-bit little-endian length, the bytes.
/// Name byte bit 7 set = reseal the file's checksums (segment header and frames, or the
/// snapshot's length and SHA-256). Nothing may panic; errors are the expected answer.
pub(crate) fn recovery(data: &[u8]) {
    let storage = directory(data);
    let _ = rewardpool::recovery::recover(&storage, &catalog());
    let _ = rewardpool::inspect::verify(&storage);
    let _ = rewardpool::inspect::plan_repair(&storage);
}

/// The seeds' catalog (the one the committed seed logs were written with).
fn catalog() -> [ItemSpec; 4] {
    [
        ItemSpec::new("diamond", 2_000, 10),
        ItemSpec::new("gold", 20_000, 20),
        ItemSpec::new("silver", 200_000, 30),
        ItemSpec::new("mud", -1, 40),
    ]
}

/// True when the directory `data` describes recovers (a test checks the seeds do).
pub(crate) fn recovers(data: &[u8]) -> bool {
    rewardpool::recovery::recover(&directory(data), &catalog()).is_ok()
}

/// The in-memory data directory an input of the recovery target describes.
fn directory(data: &[u8]) -> FaultyStorage {
    let names = [
        segment_name(0),
        segment_name(1),
        segment_name(2),
        snapshot_name(0),
        snapshot_name(1),
        snapshot_name(2),
        tmp_name(&segment_name(3)),
        tmp_name(&snapshot_name(3)),
    ];
    let storage = FaultyStorage::new();
    let mut rest = data;
    while let [name, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let mut bytes = tail[..len].to_vec();
        rest = &tail[len..];
        let reseal = name & 0x80 != 0;
        let name = &names[usize::from(*name & 0x7f) % names.len()];
        if reseal {
            if name.starts_with("wal.") {
                common::reseal_segment(&mut bytes);
            } else {
                common::reseal_snapshot(&mut bytes);
            }
        }
        storage.put_file(name, bytes);
    }
    storage
}

/// The YAML configuration: parsing and validation of arbitrary text, then everything a
/// valid configuration is turned into (catalog, log options, engine options, each pool's).
pub(crate) fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::from_yaml_str(text) {
        let _ = config.catalog();
        let _ = config.wal_options();
        let _ = config.engine_config();
        let names: Vec<String> = config.pool_names().map(str::to_owned).collect();
        for (i, name) in names.iter().enumerate() {
            assert_eq!(config.pool_index(name), Some(i), "pool {name}");
            let _ = config.for_pool(i, std::path::PathBuf::from("data"));
        }
    }
}
