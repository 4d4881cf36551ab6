#!/usr/bin/env bash
# Mutation testing (cargo-mutants) over the code that decides what survives a crash, with
# the settings that make it affordable on a small shared machine (issue 13 item 6).
#
#   tools/mutants.sh                      every file below
#   tools/mutants.sh src/recovery.rs ...  only these files (each must be in the table)
#
# Needs `cargo install cargo-mutants --locked` (written against 27.1.0). Results go to
# target/mutants/<file>/mutants.out (caught.txt, missed.txt, timeout.txt, unviable.txt,
# outcomes.json); a summary line per file is printed at the end.
#
# How it keeps the cost down:
# - A scratch copy of the committed tree (HEAD via `git archive`: uncommitted edits are not
#   tested) in $MUTANTS_SCRATCH (default /tmp/rewardpool-mutants), mutated in place, with
#   its own target directory that stays warm between files and between runs: each mutant
#   rebuilds only this crate. The working tree is never mutated.
# - Per file, only the tests that exercise it (the table below): its module's lib unit
#   tests and the integration modules that drive it, as libtest name filters. The whole
#   `cargo test` (service, dashboard, CLI, fairness...) would take ~30 s more per mutant and
#   mostly tests other code. A mutant these miss may still be caught by the whole suite:
#   before calling one equivalent, run the whole suite on it by hand.
# - A per-mutant timeout (MUTANTS_TIMEOUT, default 150 s) above the test deadlines (60 s
#   for unit tests, 120 s for recovery tests: a mutant that loops aborts the tests and
#   counts as caught, the timeout is a last resort), one job, under `nice -n 10`.
# - MUTANTS_ITERATE=1 passes --iterate: only the mutants the previous run of the same file
#   (its mutants.out) did not catch, plus new ones; caught ones are kept as
#   previously_caught.txt. Used for the "after" figures once tests were added.
# - MUTANTS_COMMIT tests another commit's tree (e.g. the one before a test was added: the
#   "before" figures of perf/results/2026-12-01-mutants).
# - MUTANTS_ARGS adds cargo-mutants options (e.g. "--shard 1/2 --sharding round-robin", or
#   "--re 'scan_segment'" for one function).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=${MUTANTS_SCRATCH:-${TMPDIR:-/tmp}/rewardpool-mutants}
timeout=${MUTANTS_TIMEOUT:-150}
command -v cargo-mutants >/dev/null || {
  echo "tools/mutants.sh: cargo-mutants is not installed (cargo install cargo-mutants --locked)" >&2
  exit 2
}

# Integration tests that run engines rather than recovery's decisions, and take seconds:
# left out of the recovery selection (the whole `cargo test` still runs them).
skip_slow="--skip recovery::a_clean_shutdown_leaves_every_segment_closed \
--skip recovery::journal_stats_count_what_was_appended_and_synced \
--skip recovery::a_failed_close_on_the_preparer_stops_the_journal_without_hanging \
--skip recovery::the_memory_journal_keeps_no_stats --skip recovery::a_second_writer_is_refused"

# file -> "targets | libtest filters": the test targets that exercise it (given to every
# cargo invocation, so a mutant builds only those: the build is most of a mutant's cost),
# then the filters (they apply to every target named, so each means one thing in each).
tests_for() {
  case $1 in
    src/recovery.rs) echo "--test=it | recovery:: repair:: fuzz_inputs:: $skip_slow" ;;
    src/wal/frame.rs) echo "--lib | wal::" ;;
    src/wal/reader.rs) echo "--lib --test=it | wal:: recovery:: $skip_slow" ;;
    src/pool/selector.rs) echo "--lib | pool::" ;;
    src/pool/mod.rs) echo "--lib | pool::" ;;
    src/snapshot/*) echo "--lib --test=it | snapshot:: recovery:: fuzz_inputs:: $skip_slow" ;;
    src/inspect/*) echo "--lib --test=it | inspect:: repair:: log_format::" ;;
    *) return 1 ;;
  esac
}

files=("$@")
if [[ ${#files[@]} -eq 0 ]]; then
  files=(src/recovery.rs src/wal/frame.rs src/pool/selector.rs src/pool/mod.rs src/wal/reader.rs)
fi
for f in "${files[@]}"; do
  tests_for "$f" >/dev/null || { echo "tools/mutants.sh: no test selection for $f" >&2; exit 2; }
done

# The committed tree, copied over the previous copy (its target directory stays).
commit=$(git -C "$root" rev-parse "${MUTANTS_COMMIT:-HEAD}")
mkdir -p "$scratch/tree"
find "$scratch/tree" -mindepth 1 -maxdepth 1 ! -name target -exec rm -rf {} +
# -m: the files get the time of extraction, not the commit's. With the commit's (older than
# the artifacts of the previous run's last mutant), cargo would take that mutant's build as
# fresh and the baseline would test it.
git -C "$root" archive "$commit" | tar -x -m -C "$scratch/tree"
echo "tools/mutants.sh: commit $commit, scratch $scratch/tree, timeout ${timeout}s"

summary=()
for f in "${files[@]}"; do
  out="$root/target/mutants/${f//\//_}"
  mkdir -p "$out"
  selection=$(tests_for "$f")
  cargo_args=()
  for t in ${selection%%|*}; do cargo_args+=(--cargo-arg="$t"); done
  # shellcheck disable=SC2046,SC2086 # the filters are split into arguments on purpose
  (cd "$scratch/tree" && nice -n 10 cargo mutants --in-place --no-shuffle \
    --timeout "$timeout" --build-timeout 900 --output "$out" -f "$f" "${cargo_args[@]}" \
    ${MUTANTS_ITERATE:+--iterate} ${MUTANTS_ARGS:-} -- -- ${selection#*|}) && rc=0 || rc=$?
  # 2: some mutants missed, 3: some timed out (the summary says how many); else a failure.
  if [[ $rc -ne 0 && $rc -ne 2 && $rc -ne 3 ]]; then
    echo "tools/mutants.sh: cargo mutants failed on $f (exit $rc)" >&2
    exit "$rc"
  fi
  o="$out/mutants.out"
  count() { if [[ -f $o/$1.txt ]]; then wc -l <"$o/$1.txt"; else echo 0; fi; }
  summary+=("$f: caught $(count caught), missed $(count missed), timeout $(count timeout), unviable $(count unviable)")
done
printf '%s\n' "commit $commit" "${summary[@]}"
