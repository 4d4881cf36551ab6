//! The YAML configuration: parsing and validation of arbitrary text, then everything a
//! valid configuration is turned into (catalog, log options, engine options, each pool's).

#![no_main]

#[path = "checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::config(data));
