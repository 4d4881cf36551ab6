#!/usr/bin/env bash
# Everything CI checks, in CI's order: run this before sending a change.
# .ci/run installs what the tests need (bindfs, curl, nats-server), then runs this (formatting, lints, the
# README's test command, the library without the command line, the loom models, the
# examples, benches compiling).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test
# The library is usable without the command line: with `default-features = false` it must
# build (so no library file uses a crate only the `cli` feature brings) and none of the
# binary side's dependencies may be in its tree (so no heavy crate slips in as a plain
# library dependency).
cargo check --lib --no-default-features
binary_only='^(anyhow|clap|hdrhistogram|indicatif|mimalloc|plotters|serde_json|signal-hook|tokio|tonic|tonic-prost|prost|protox|tonic-prost-build|prometheus-client|axum|hyper|ratatui[a-z-]*|crossterm|async-nats) '
library_tree=$(cargo tree --no-default-features -e normal,build --prefix none)
if grep -E "$binary_only" <<<"$library_tree"; then
  echo "error: the library (--no-default-features) depends on the crates above; make them" \
    "optional under the cli feature" >&2
  exit 1
fi
# The lock-free protocols (completion slots, the doorbell) under loom, on the real types.
tools/loom.sh
# The library guide's examples as programs, each to exit 0 (`cargo test` also runs each one's
# main through its `runs_to_completion` test).
for example in examples/*.rs; do cargo run --quiet --example "$(basename "$example" .rs)"; done
cargo bench --no-run
