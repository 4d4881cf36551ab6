#!/bin/bash
# Issue 12: the time from SIGKILL of a primary to its standby serving, release build.
# A 3-node JetStream cluster on loopback (as run.sh), a primary `serve` (sync, ack: replica,
# 100 unlimited items) under `rewardpool load` (4 connections x 2 streams, 32 pulls of 10 in
# flight), a standby `follow` running beside it. After 3 s the primary is SIGKILLed; then
# the follower is stopped (SIGTERM) and `serve --takeover` starts on the standby's directory
# (catch up with the stream, take the lease, fence, serve). Per trial, milliseconds from the
# kill to: the follower stopped, the standby's `serve` listening (ready to answer), and the
# end of a 50 ms closed-loop `rewardpool load` against it (its draws served are recorded).
# MODE=inplace instead runs the standby as `serve --standby` beside the primary and promotes
# it with `rewardpool promote --connect` (the server stops its follower, takes the pool over
# and serves it without a restart); "serving_ms" is then when `promote` returned (the RPC
# answers once the pool serves) and "follower_stopped_ms" is 0.
#   BIN=target/release/rewardpool TRIALS=5 [MODE=inplace] perf/results/2026-12-01-issue12-batch/failover.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-target/release/rewardpool}
TRIALS=${TRIALS:-5}
MODE=${MODE:-takeover}
out=${OUT:-$here/failover.jsonl}
work=$(pwd)/bench-data/failover-$$
mkdir -p "$work"
[ "$(stat -f -c %T "$work")" != tmpfs ] || { echo "tmpfs: refusing to measure durability" >&2; exit 2; }
nats_pids=()
cleanup() { for p in "${nats_pids[@]}"; do kill -9 "$p" 2>/dev/null; done; pkill -9 -f "$work" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
for i in 1 2 3; do
  routes=""
  for j in 1 2 3; do [ "$j" = "$i" ] || routes="$routes nats-route://127.0.0.1:1632$j,"; done
  cat > "$work/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:1432$i
http: 127.0.0.1:1832$i
jetstream { store_dir: "$work/nats-n$i" }
cluster { name: rp, listen: 127.0.0.1:1632$i, routes: [${routes%,} ] }
CONF
  nats-server -c "$work/n$i.conf" -js > "$work/n$i.log" 2>&1 &
  nats_pids+=($!)
done
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:18321/healthz?js-enabled-only=true" > /dev/null && break; sleep 0.1
done
sleep 3
ms() { date +%s%3N; }
for t in $(seq 1 "$TRIALS"); do
  {
    echo 'pool:'
    echo '  catalog:'
    for i in $(seq 1 100); do echo "    - { item_id: \"item$i\", quantity: -1, probability: $i }"; done
    echo 'wal:'
    echo '  durability: sync'
    echo '  flush_after_n_draw: 4096'
    echo '  max_request_buffer_size: 16384'
    echo 'replication:'
    echo '  nats: ["nats://127.0.0.1:14321", "nats://127.0.0.1:14322", "nats://127.0.0.1:14323"]'
    echo "  stream_prefix: fo$t$$"
    echo '  replicas: 3'
    echo '  ack: replica'
  } > "$work/c.yaml"
  "$BIN" serve --config "$work/c.yaml" --data-dir "$work/old$t" --listen 127.0.0.1:50131 --json > "$work/p.out" 2> "$work/p.err" &
  primary=$!
  for _ in $(seq 1 100); do grep -q listening "$work/p.out" 2>/dev/null && break; sleep 0.05; done
  if [ "$MODE" = inplace ]; then
    "$BIN" serve --config "$work/c.yaml" --data-dir "$work/new$t" --listen 127.0.0.1:50132 --json --standby > "$work/s.out" 2> "$work/s.err" &
    standby=$!
    for _ in $(seq 1 100); do grep -q listening "$work/s.out" 2>/dev/null && break; sleep 0.05; done
  else
    "$BIN" follow --config "$work/c.yaml" --data-dir "$work/new$t" > /dev/null 2> "$work/f.err" &
    follower=$!
  fi
  "$BIN" load --target 127.0.0.1:50131 --connections 4 --streams 2 --in-flight 32 --count 10 \
    --duration 30s --json > "$work/load.out" 2>&1 &
  loader=$!
  sleep 3
  kill -9 $primary; t0=$(ms); wait $primary 2>/dev/null
  if [ "$MODE" = inplace ]; then
    frc=0; t1=$t0
    "$BIN" promote --connect 127.0.0.1:50132 --pool default --json > "$work/promote.out" 2> "$work/promote.err" || frc=$?
    t2=$(ms)
  else
    kill -TERM $follower; wait $follower; frc=$?; t1=$(ms)
    "$BIN" serve --config "$work/c.yaml" --data-dir "$work/new$t" --listen 127.0.0.1:50132 --json --takeover > "$work/s.out" 2> "$work/s.err" &
    standby=$!
    for _ in $(seq 1 1000); do grep -q listening "$work/s.out" 2>/dev/null && break; sleep 0.005; done
    t2=$(ms)
  fi
  "$BIN" load --target 127.0.0.1:50132 --connections 1 --streams 1 --in-flight 1 --count 10 \
    --duration 50ms --json > "$work/one.out" 2>/dev/null
  lrc=$?; t3=$(ms)
  served=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("draws", 0))' "$work/one.out" 2>/dev/null || echo 0)
  kill $loader 2>/dev/null; wait $loader 2>/dev/null
  kill -TERM $standby; wait $standby; src=$?
  echo "{\"mode\":\"$MODE\",\"trial\":$t,\"loadavg\":$(cut -d' ' -f1 /proc/loadavg),\"follower_rc\":$frc,\"one_pull_rc\":$lrc,\"standby_rc\":$src,\"follower_stopped_ms\":$((t1-t0)),\"serving_ms\":$((t2-t0)),\"draws_served_in_50ms\":${served:-0},\"load_done_ms\":$((t3-t0))}" | tee -a "$out"
  rm -rf "$work/old$t" "$work/new$t"
done
