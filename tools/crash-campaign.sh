#!/usr/bin/env bash
# The crash campaign (issue 13, item 5): N trials that SIGKILL a real `rewardpool draw` (or
# `update`) at a random moment — single draws, pulls, keyed requests and updates, in `sync`
# and `buffered` modes — each checked by recovery (tests/it/campaign.rs says what). Prints
# the seed (SEED=S replays a campaign) and one summary line.
#
#   tools/crash-campaign.sh N
#
# The binary under test is a release build (CARGO_TARGET_DIR, if set, says where); the
# checker is the integration test binary in the ordinary debug build. N = 4 runs in every
# `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:?usage: tools/crash-campaign.sh N}
target=${CARGO_TARGET_DIR:-target}
cargo build --release --bin rewardpool
bin="$target/release/rewardpool"
# The checker, built by the ordinary debug profile in the worktree's own target dir.
CARGO_TARGET_DIR=target cargo build --tests
REWARDPOOL_CAMPAIGN="$n" REWARDPOOL_BIN="$(realpath "$bin")" CARGO_TARGET_DIR=target \
  cargo test -q --test it campaign::crash_campaign -- --nocapture --test-threads 1 2>&1 |
  grep -E '^crash campaign|panicked|SEED=|test result'
