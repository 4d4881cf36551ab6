//! The service's requests: arbitrary bytes decoded as each request message (the same
//! prost messages the server decodes, from `proto/rewardpool.proto`), then the service's own
//! validation (`src/bin/rewardpool/service/validate.rs`, compiled here as it is).

#![no_main]

/// The API's messages (build.rs).
#[allow(dead_code, clippy::all, clippy::pedantic)]
mod proto {
    include!(concat!(env!("OUT_DIR"), "/rewardpool.rs"));
}

#[path = "../../src/bin/rewardpool/service/validate.rs"]
mod validate;

#[path = "request_check.rs"]
mod request_check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| request_check::request(data));
