//! The frame decoder (v1 draw/update/marker/commit frames and v2 batch frames): a buffer
//! of frames walked as the log reader walks a segment, `decode_draw` (the replay fast path)
//! checked against `decode`, and the batch payload decoder on the raw bytes. Byte 0 of the
//! input: bit 0 set = reseal every frame's CRC first.

#![no_main]

#[path = "checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::frame(data));
