//! The fuzz targets' inputs as ordinary tests (issue 13, item 1): every committed seed
//! (fuzz/corpus/TARGET) and every input that once crashed a target (fuzz/regressions/TARGET)
//! goes through the same checks the targets run (fuzz/fuzz_targets/checks.rs), so they stay
//! tested on a machine where no fuzzer runs.

use std::path::Path;

#[path = "../../fuzz/fuzz_targets/checks.rs"]
mod checks;

// The `request` target's check, with the service's messages and its own validation module,
// as the target compiles them.
use crate::service_harness::ours as proto;
#[path = "../../fuzz/fuzz_targets/request_check.rs"]
mod request_check;
#[path = "../../src/bin/rewardpool/service/validate.rs"]
mod validate;

/// Runs `check` over every file under fuzz/corpus/`target` and fuzz/regressions/`target`;
/// returns how many.
fn each_input(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            eprintln!("{}", path.display());
            check(&bytes);
            count += 1;
        }
    }
    count
}

#[test]
fn frame_inputs() {
    assert!(each_input("frame", checks::frame) > 0, "no seed inputs");
}

#[test]
fn header_inputs() {
    assert!(each_input("header", checks::header) > 0, "no seed inputs");
}

#[test]
fn snapshot_inputs() {
    assert!(each_input("snapshot", checks::snapshot) > 0, "no seed inputs");
}

#[test]
fn recovery_inputs() {
    assert!(each_input("recovery", checks::recovery) > 0, "no seed inputs");
}

#[test]
fn config_inputs() {
    assert!(each_input("config", checks::config) > 0, "no seed inputs");
}

#[test]
fn request_inputs() {
    assert!(each_input("request", request_check::request) > 0, "no seed inputs");
}

/// The seeds are real files: the directory seed recovers, so the target starts from a log
/// that gets past every check (a seed refused at the first byte would teach the fuzzer
/// nothing).
#[test]
fn the_directory_seed_is_a_log_that_recovers() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/recovery/cur-dir");
    let bytes = std::fs::read(path).expect("seed");
    assert!(checks::recovers(&bytes), "the seed log does not recover");
}
