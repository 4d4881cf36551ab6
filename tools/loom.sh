#!/usr/bin/env bash
# Runs the loom model of the completion-slot protocol (tests/loom_slots.rs).
# A separate target directory keeps the `--cfg loom` build from invalidating the normal one.
# Usage: tools/loom.sh [test-name-filter] [-- test args]
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
# A debug build: the models run in seconds, and an LTO release build would take minutes.
# Without default features: the models need only the library, and the binary side's tokio
# (under tonic) does not build under `--cfg loom` (tokio then has no `net`).
exec cargo test --no-default-features --test loom_slots "$@"
