#!/usr/bin/env bash
# Runs `rewardpool bench --json` over durability (memory, buffered, sync) × producers (1, 2) ×
# items (100, 10000), REPS repetitions each (default 3), and writes
# perf/results/<date>-<host>/: SETUP.md, raw.jsonl, one .hgrm and one .svg per run, and
# summary.md with the median of each cell.
#
#   perf/run_matrix.sh                      # defaults: 2,000,000 draws per run, data in ./bench-data
#   DRAWS=500000 REPS=5 DATA_DIR=/mnt/nvme/bench perf/run_matrix.sh
#   WINDOW=4096 GROUP=2048 OUT=/tmp/matrix perf/run_matrix.sh   # more groups in flight
#
# Never point DATA_DIR at tmpfs (/dev/shm): msync and fdatasync are no-ops there.
set -euo pipefail
cd "$(dirname "$0")/.."

DRAWS=${DRAWS:-2000000}
REPS=${REPS:-3}
DATA_DIR=${DATA_DIR:-./bench-data}
WINDOW=${WINDOW:-256}
GROUP=${GROUP:-200}
. perf/lib.sh
perf_binary
out=${OUT:-"perf/results/$(date +%Y-%m-%d)-$(hostname -s)"}
mkdir -p "$out" "$DATA_DIR"
{
  echo "# Setup"
  echo
  perf_machine "$DATA_DIR"
  echo "- draws per run: $DRAWS, repetitions: $REPS, window: $WINDOW, group: $GROUP"
} > "$out/SETUP.md"

raw="$out/raw.jsonl"
: > "$raw"
for durability in memory buffered sync; do
  for producers in 1 2; do
    for items in 100 10000; do
      for rep in $(seq 1 "$REPS"); do
        name="$durability-p$producers-i$items-r$rep"
        echo "run $name" >&2
        "$BIN" bench --json --draws "$DRAWS" --durability "$durability" \
          --producers "$producers" --items "$items" --data-dir "$DATA_DIR" \
          --window "$WINDOW" --group "$GROUP" \
          --hist-out "$out/$name.hgrm" --plot "$out/$name.svg" >> "$raw"
      done
    done
  done
done

# Median per cell (durability, producers, items) of draws/s, baseline and latency percentiles.
python3 - "$raw" "$out/summary.md" <<'PY'
import json, statistics, sys
from collections import defaultdict
cells = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    cells[(r["durability"], r["producers"], r["items"])].append(r)
order = {"memory": 0, "buffered": 1, "sync": 2}
with open(sys.argv[2], "w") as f:
    f.write("# Summary (median of each cell)\n\n")
    f.write("| durability | producers | items | runs | M draws/s | baseline M draws/s | p50 µs | p99 µs | p99.9 µs | max µs |\n")
    f.write("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    for key in sorted(cells, key=lambda k: (order.get(k[0], 9), k[1], k[2])):
        rs = cells[key]
        med = lambda f: statistics.median(f(r) for r in rs)
        lat = lambda p: med(lambda r: r["latency_ns"][p]) / 1000
        f.write(f"| {key[0]} | {key[1]} | {key[2]} | {len(rs)} | {med(lambda r: r['draws_per_sec'])/1e6:.2f} "
                f"| {med(lambda r: r['baseline_draws_per_sec'])/1e6:.1f} | {lat('p50'):.1f} | {lat('p99'):.1f} "
                f"| {lat('p999'):.1f} | {lat('max'):.1f} |\n")
PY
echo "results in $out" >&2
cat "$out/summary.md"
