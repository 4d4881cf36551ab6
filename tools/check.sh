#!/usr/bin/env bash
# Everything CI checks, in CI's order: run this before sending a change.
# Kept identical to .ci/run (formatting, lints, the README's test command, the examples,
# benches compiling).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test
# The library guide's examples as programs, each to exit 0 (`cargo test` also runs each one's
# main through its `runs_to_completion` test).
for example in examples/*.rs; do cargo run --quiet --example "$(basename "$example" .rs)"; done
cargo bench --no-run
