//! The segment header decoder. Byte 0 of the input: bit 0 set = reseal the header's CRC.
//! A decoded header of a version still written must encode to bytes that decode to the
//! same header.

#![no_main]

#[path = "checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::header(data));
