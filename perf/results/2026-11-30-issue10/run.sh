#!/bin/bash
# Issue 10's figures: `rewardpool load` -> `rewardpool serve` over loopback, sync durability,
# 100 unlimited items (weights 1..=100, as `bench`), a fresh data directory per run under
# ./bench-data (run from a directory on a real disk, never tmpfs). Per run: the load
# generator's --json report, the server's CPU seconds during the load (utime + stime from
# /proc/PID/stat) and the generator's (GNU time). The same session's in-process bench
# (sync, pulls of 10 and single draws) with its CPU seconds, for CPU per draw. The machine's
# floor (rewardpool-hiccup, CPU and disk) before and after. Raw lines in results.jsonl;
# summarize.py prints the table.
#   BIN=target/release/rewardpool ROUNDS=3 perf/results/2026-11-30-issue10/run.sh
set -u
BIN=${BIN:-target/release/rewardpool}
HICCUP=${HICCUP:-$(dirname "$BIN")/rewardpool-hiccup}
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
out=${OUT:-results.jsonl}; : > "$out"
work=./bench-data/issue10-$$
mkdir -p "$work"
[ "$(stat -f -c %T "$work")" != tmpfs ] || { echo "tmpfs: refusing to measure durability" >&2; exit 2; }
trap 'rm -rf "$work"' EXIT
port=50091
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
floor() {
  local tag=$1
  local j; j=$("$HICCUP" --seconds 3 --json 2>/dev/null | tr '\n' ',' | sed 's/,$//')
  echo "{\"tag\":\"floor-cpu-$tag\",\"r\":[$j]}" >> "$out"
  j=$("$HICCUP" --disk "$work" --seconds 3 --json 2>/dev/null | tr '\n' ',' | sed 's/,$//')
  echo "{\"tag\":\"floor-disk-$tag\",\"r\":[$j]}" >> "$out"
}
serve_load() {
  local tag=$1; shift
  local data="$work/data-$tag-$RANDOM"
  "$BIN" serve --config "$work/sync.yaml" --data-dir "$data" > "$work/serve.out" 2> "$work/serve.err" &
  local pid=$!
  for _ in $(seq 1 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
  local before; before=$(ticks $pid)
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  local j; j=$(/usr/bin/time -f '%U %S' -o "$work/time" "$BIN" load --target 127.0.0.1:$port "$@" --json 2>/dev/null)
  local after; after=$(ticks $pid)
  kill -TERM $pid; wait $pid; local rc=$?
  local gen; gen=$(awk '{print $1 + $2}' "$work/time")
  local hz; hz=$(getconf CLK_TCK)
  local cpu; cpu=$(awk -v a="$after" -v b="$before" -v hz="$hz" 'BEGIN { print (a - b) / hz }')
  [ -n "$j" ] || j=null
  echo "{\"tag\":\"$tag\",\"load\":$load,\"serve_cpu_s\":$cpu,\"load_cpu_s\":$gen,\"serve_rc\":$rc,\"r\":$j}" >> "$out"
  rm -rf "$data"
}
bench() {
  local tag=$1; shift
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  local j; j=$(/usr/bin/time -f '%U %S' -o "$work/time" "$BIN" bench --data-dir "$work" "$@" --json 2>/dev/null | tail -1)
  local cpu; cpu=$(awk '{print $1 + $2}' "$work/time")
  [ -n "$j" ] || j=null
  echo "{\"tag\":\"$tag\",\"load\":$load,\"cpu_s\":$cpu,\"r\":$j}" >> "$out"
}

floor before
for i in $(seq 1 "$ROUNDS"); do
  serve_load pull10-4conn --connections 4 --streams 2 --in-flight 32 --count 10 --duration ${SECONDS_PER_RUN}s
  serve_load single-4conn --connections 4 --streams 4 --in-flight 64 --count 1 --duration ${SECONDS_PER_RUN}s
  # The Go k6 shape: 100 streams (k6 ramps its virtual users in, so their requests spread
  # over the 0.5 s pause), each a request of 10, then 0.5 s of pause.
  serve_load k6-ramp-100streams --connections 4 --ramp 0:100:5s,hold:$((2 * SECONDS_PER_RUN))s --count 10 --pause 500ms
  # The same 100 streams started at one instant: a burst of 100 requests every 0.5 s.
  serve_load burst-100streams --connections 4 --streams 25 --count 10 --pause 500ms --duration $((2 * SECONDS_PER_RUN))s
  bench bench-sync-pull10 --durability sync --pull 10 --draws 20000000
  bench bench-sync-single --durability sync --draws 10000000
done
floor after
