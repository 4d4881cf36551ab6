#!/usr/bin/env bash
# Everything CI checks, in CI's order: run this before sending a change.
# Kept identical to .ci/run (formatting, lints, the README's test command, benches compiling).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test
cargo bench --no-run
