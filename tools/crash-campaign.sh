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
# The checker: the integration test binary of the ordinary debug build in the worktree's
# own target dir, run directly (not through cargo, which would hold that dir's lock for the
# whole campaign).
it=$(CARGO_TARGET_DIR=target cargo test --no-run --test it 2>&1 |
  sed -n 's/.*Executable tests\/it\/main.rs (\(.*\))$/\1/p' | tail -1)
[[ -x $it ]] || { echo "error: cannot find the integration test binary" >&2; exit 1; }
REWARDPOOL_CAMPAIGN="$n" REWARDPOOL_BIN="$(realpath "$bin")" \
  "$it" campaign::crash_campaign_of_sigkilled_draws_pulls_keys_and_updates --exact --nocapture --test-threads 1 2>&1 |
  grep -E '^crash campaign|panicked|SEED=|test result'
