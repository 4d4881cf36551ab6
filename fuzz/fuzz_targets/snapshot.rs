//! The snapshot decoder. Byte 0 of the input: bit 0 set = fix the payload length and the
//! SHA-256 so the input reaches rkyv's validation. A decoded state must encode to a file
//! that decodes to the same state.

#![no_main]

#[path = "checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::snapshot(data));
