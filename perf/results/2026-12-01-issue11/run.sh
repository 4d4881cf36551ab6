#!/bin/bash
# Issue 11's performance check: what `rewardpool tui --connect --refresh-ms 100` costs a
# server under load, and what it costs itself. `rewardpool load` -> `rewardpool serve` over
# loopback (sync durability, 100 unlimited items, group 4096: issue 10's shape that does
# > 1 M draws/s here: 4 connections x 2 streams, 32 requests of 10 in flight each), a fresh
# data directory per run; each round runs A (load alone) and B (load + the dashboard in a pty,
# tui_pty.py) in alternating order (AB, BA, ...). Per run: the load report (--json), the
# server's CPU seconds during the load, the 1-minute load average before; for B the
# dashboard's CPU over a window inside the load run. Raw lines in results.jsonl;
# summarize.py prints the medians.
#   BIN=/work/perfbuild-tui/release/rewardpool ROUNDS=10 [OUT=results-NAME.jsonl] perf/results/2026-12-01-issue11/run.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-target/release/rewardpool}
ROUNDS=${ROUNDS:-8}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
REFRESH_MS=${REFRESH_MS:-100}
out=${OUT:-$here/results.jsonl}; : > "$out"
work=./bench-data/issue11-$$
mkdir -p "$work"
[ "$(stat -f -c %T "$work")" != tmpfs ] || { echo "tmpfs: refusing to measure durability" >&2; exit 2; }
trap 'rm -rf "$work"' EXIT
port=50111
{
  echo 'pool:'
  echo '  catalog:'
  for i in $(seq 1 100); do echo "    - { item_id: \"item$i\", quantity: -1, probability: $i }"; done
  echo 'wal:'
  echo '  durability: sync'
  echo '  flush_after_n_draw: 4096'
  echo '  max_request_buffer_size: 16384'
  echo 'grpc:'
  echo '  enabled: true'
  echo "  listen_address: \"127.0.0.1:$port\""
} > "$work/sync.yaml"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() {
  local tag=$1
  local data="$work/data-$tag-$RANDOM"
  "$BIN" serve --config "$work/sync.yaml" --data-dir "$data" > "$work/serve.out" 2> "$work/serve.err" &
  local pid=$!
  for _ in $(seq 1 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
  local tui_pid=
  if [ "$tag" = with-tui ]; then
    # The dashboard starts 2 s before the load; its window: 1 s into the load, 2 s short of its end.
    python3 "$here/tui_pty.py" "$BIN" 127.0.0.1:$port "$REFRESH_MS" 3 $((SECONDS_PER_RUN - 3)) > "$work/tui.json" &
    tui_pid=$!
    sleep 2
  fi
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  local before; before=$(ticks $pid)
  local j; j=$("$BIN" load --target 127.0.0.1:$port --connections 4 --streams 2 --in-flight 32 \
    --count 10 --duration ${SECONDS_PER_RUN}s --json 2>/dev/null)
  local after; after=$(ticks $pid)
  local tui=null
  if [ -n "$tui_pid" ]; then wait "$tui_pid"; tui=$(cat "$work/tui.json"); [ -n "$tui" ] || tui=null; fi
  kill -TERM $pid; wait $pid; local rc=$?
  local hz; hz=$(getconf CLK_TCK)
  local cpu; cpu=$(awk -v a="$after" -v b="$before" -v hz="$hz" 'BEGIN { print (a - b) / hz }')
  [ -n "$j" ] || j=null
  echo "{\"tag\":\"$tag\",\"loadavg\":$load,\"serve_cpu_s\":$cpu,\"serve_rc\":$rc,\"tui\":$tui,\"r\":$j}" >> "$out"
  rm -rf "$data"
}

for i in $(seq 1 "$ROUNDS"); do
  if [ $((i % 2)) -eq 1 ]; then run alone; run with-tui; else run with-tui; run alone; fi
done
python3 "$here/summarize.py" "$out"
