#!/bin/bash
# The server's own CPU spent on one dashboard: the same server idle (no load), its CPU over
# WINDOW seconds without and with `tui --connect --refresh-ms 100` attached (tui_pty.py),
# interleaved, ROUNDS times. Contention from other work on the machine inflates both sides
# alike; the difference is what serving the dashboard's Watch and GetState costs. One JSON
# line per window into idle.jsonl.
#   BIN=/work/perfbuild-tui/release/rewardpool perf/results/2026-12-01-issue11/idle_cost.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-target/release/rewardpool}
ROUNDS=${ROUNDS:-4}
WINDOW=${WINDOW:-15}
out=${OUT:-$here/idle.jsonl}; : > "$out"
work=./bench-data/issue11-idle-$$
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
port=50112
"$BIN" serve --data-dir "$work/data" --listen 127.0.0.1:$port > "$work/serve.out" 2> "$work/serve.err" &
pid=$!
for _ in $(seq 1 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
sleep 2
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
window() {
  local tag=$1
  local tui_pid=
  if [ "$tag" = with-tui ]; then
    python3 "$here/tui_pty.py" "$BIN" 127.0.0.1:$port 100 2 "$((WINDOW + 1))" > "$work/tui.json" &
    tui_pid=$!
    sleep 2.5
  fi
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  local before; before=$(ticks $pid)
  sleep "$WINDOW"
  local after; after=$(ticks $pid)
  local tui=null
  if [ -n "$tui_pid" ]; then wait "$tui_pid"; tui=$(cat "$work/tui.json"); fi
  local cpu; cpu=$(awk -v a="$after" -v b="$before" -v hz="$hz" -v w="$WINDOW" 'BEGIN { print 100 * (a - b) / hz / w }')
  echo "{\"tag\":\"$tag\",\"loadavg\":$load,\"serve_cpu_pct_of_core\":$cpu,\"tui\":$tui}" >> "$out"
  sleep 1
}
for i in $(seq 1 "$ROUNDS"); do
  if [ $((i % 2)) -eq 1 ]; then window alone; window with-tui; else window with-tui; window alone; fi
done
kill -TERM $pid; wait $pid
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for tag in ("alone", "with-tui"):
    v = [r["serve_cpu_pct_of_core"] for r in rows if r["tag"] == tag]
    print(f"idle server CPU, {tag}: median {statistics.median(v):.2f} % of a core ({', '.join(f'{x:.2f}' for x in v)})")
PY
