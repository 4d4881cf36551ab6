//! Recovery, `wal verify` and `wal repair`'s planning over an arbitrary data directory: a
//! few files of arbitrary bytes under real names, in the in-memory storage. The input is a
//! list of files: a name byte (index into NAMES), a 16-bit little-endian length, the bytes.
//! Name byte bit 7 set = reseal the file's checksums (segment header and frames, or the
//! snapshot's length and SHA-256). Nothing may panic; errors are the expected answer.

#![no_main]

#[path = "checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::recovery(data));
