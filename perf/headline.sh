#!/usr/bin/env bash
# The issue targets' runs, 1 producer × 100 items: for each shape (durability:window[:group],
# group 200 unless given; default memory:256 buffered:1024 buffered:4096:1000 sync:16384
# sync:4096; override with SHAPES), REPS closed-loop runs
# (the throughput figure), then REPS open-loop runs at half of that median (`--rate`: the
# latency figure, no coordinated omission). Writes
# perf/results/<date>-<host>-headline/: SETUP.md, raw.jsonl, .hgrm and .svg per run, and
# summary.md (medians, each run's figures, and the machine's floor measured before and
# after the runs by rewardpool-hiccup: stalls per core, fdatasync latency in DATA_DIR).
#
#   perf/headline.sh                       # 10,000,000 draws per run, 3 repetitions
#   DRAWS=2000000 REPS=5 DATA_DIR=/mnt/nvme/bench perf/headline.sh
#
# Never point DATA_DIR at tmpfs (/dev/shm): msync and fdatasync are no-ops there.
set -euo pipefail
cd "$(dirname "$0")/.."

DRAWS=${DRAWS:-10000000}
REPS=${REPS:-3}
DATA_DIR=${DATA_DIR:-./bench-data}
. perf/lib.sh
perf_binary
out=${OUT:-"perf/results/$(date +%Y-%m-%d-%H%M)-$(hostname -s)-headline"}
mkdir -p "$out" "$DATA_DIR"
{
  echo "# Setup"
  echo
  perf_machine "$DATA_DIR"
  echo "- draws per run: $DRAWS, repetitions: $REPS; shapes (durability:window[:group]): ${SHAPES:-memory:256 buffered:1024 buffered:4096:1000 sync:16384 sync:4096}"
} > "$out/SETUP.md"

raw="$out/raw.jsonl"
: > "$raw"
floor="$out/floor.jsonl"
: > "$floor"
echo "floor (before)" >&2
perf_floor "$floor" "$DATA_DIR" before
run() { # name, extra args...
  local name=$1; shift
  echo "run $name" >&2
  "$BIN" bench --json --draws "$DRAWS" --data-dir "$DATA_DIR" \
    --hist-out "$out/$name.hgrm" --plot "$out/$name.svg" "$@" \
    | python3 -c "import json,sys; r=json.load(sys.stdin); r['run']='$name'; print(json.dumps(r))" >> "$raw"
}
for mode_window in ${SHAPES:-memory:256 buffered:1024 buffered:4096:1000 sync:16384 sync:4096}; do
  IFS=: read -r mode window group <<< "$mode_window"
  group=${group:-200}
  shape="$mode-w$window"
  [ "$group" = 200 ] || shape="$shape-g$group"
  for rep in $(seq 1 "$REPS"); do
    run "$shape-closed-r$rep" --durability "$mode" --window "$window" --group "$group"
  done
  rate=$(python3 - "$raw" "$shape" <<'PY'
import json, statistics, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
print(int(statistics.median(r["draws_per_sec"] for r in rs if r["run"].startswith(sys.argv[2] + "-closed")) / 2))
PY
)
  for rep in $(seq 1 "$REPS"); do
    run "$shape-open-r$rep" --durability "$mode" --window 65536 --group "$group" --rate "$rate"
  done
done

echo "floor (after)" >&2
perf_floor "$floor" "$DATA_DIR" after

python3 - "$raw" "$out/summary.md" <<'PY'
import json, statistics, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
us = lambda r, p: r["latency_ns"][p] / 1000
with open(sys.argv[2], "w") as f:
    f.write("# Headline runs: 1 producer, 100 items\n\n")
    f.write("| shape | loop | runs | M draws/s (median) | p50 µs | p99 µs | p99.9 µs | max µs | baseline M/s |\n")
    f.write("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
    shapes = []
    for r in rs:
        shape = r["run"].rsplit("-", 2)[0]
        if shape not in shapes:
            shapes.append(shape)
    for shape in shapes:
        for loop in ("closed", "open"):
            cell = [r for r in rs if r["run"].startswith(f"{shape}-{loop}-")]
            if not cell:
                continue
            med = lambda g: statistics.median(g(r) for r in cell)
            f.write(f"| {shape} | {loop} | {len(cell)} | {med(lambda r: r['draws_per_sec'])/1e6:.2f} "
                    f"| {med(lambda r: us(r,'p50')):.1f} | {med(lambda r: us(r,'p99')):.1f} "
                    f"| {med(lambda r: us(r,'p999')):.1f} | {med(lambda r: us(r,'max')):.1f} "
                    f"| {med(lambda r: r['baseline_draws_per_sec'])/1e6:.1f} |\n")
    f.write("\n## Every run\n\n| run | M draws/s | p50 µs | p99 µs | p99.9 µs | max µs |\n|---|---:|---:|---:|---:|---:|\n")
    for r in rs:
        f.write(f"| {r['run']} | {r['draws_per_sec']/1e6:.2f} | {us(r,'p50'):.1f} | {us(r,'p99'):.1f} | {us(r,'p999'):.1f} | {us(r,'max'):.1f} |\n")
PY
{
  echo
  echo "## The machine's floor (rewardpool-hiccup, before and after the runs)"
  echo
  echo "An open-loop p99 of x needs the excess over x below 1 % on the cores the request path uses (tools/hiccup.rs)."
  echo
  perf_floor_table "$floor"
} >> "$out/summary.md"
echo "results in $out" >&2
cat "$out/summary.md"
