#!/bin/bash
# Issue 12's shipping cost again, after batching (a shipper that is behind sends every ready
# group in one message): the same harness as ../2026-12-01-issue12/run.sh, plus the messages
# the stream stored and the groups the pool committed per run, and a "bin" field (LABEL) so
# two builds' runs can be interleaved:
#   for r in 1 2 3; do for b in old new; do LABEL=$b BIN=... ROUNDS=1 OUT=... run.sh; done; done
# NATS_ENV="GOMAXPROCS=1" runs each nats-server with one Go processor; LINGER_MS=N sets
# replication.linger_ms.
# Issue 12's performance figures: `rewardpool load` -> `rewardpool serve` over loopback, sync
# durability, pulls of 10 (issue 10's shape: 4 connections x 2 streams, 32 requests of 10 in
# flight each), with no replication, `ack: local` and `ack: replica` to a 3-node JetStream
# cluster on loopback (3 replicas, file storage), all on this machine. Per run: the load
# report (--json), and the shipper's lag (rewardpool_replication_lag_draws from /metrics,
# sampled every 100 ms during the load), and the CPU seconds the server and the three NATS
# servers spent during the load. Rounds interleave the three variants.
#   BIN=target/release/rewardpool ROUNDS=3 perf/results/2026-12-01-issue12/run.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-target/release/rewardpool}
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
# The load's shape (requests of 10 in flight: connections x streams x in-flight).
LOAD_SHAPE=${LOAD_SHAPE:---connections 4 --streams 2 --in-flight 32}
VARIANTS=${VARIANTS:-none local replica}
out=${OUT:-$here/results.jsonl}
LABEL=${LABEL:-}
work=$(pwd)/bench-data/issue12-$$
mkdir -p "$work"
[ "$(stat -f -c %T "$work")" != tmpfs ] || { echo "tmpfs: refusing to measure durability" >&2; exit 2; }
nats_pids=()
cleanup() { for p in "${nats_pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$work"; }
trap cleanup EXIT
for i in 1 2 3; do
  routes=""
  for j in 1 2 3; do [ "$j" = "$i" ] || routes="$routes nats-route://127.0.0.1:1622$j,"; done
  cat > "$work/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:1422$i
http: 127.0.0.1:1822$i
jetstream { store_dir: "$work/nats-n$i" }
cluster { name: rp, listen: 127.0.0.1:1622$i, routes: [${routes%,} ] }
CONF
  env ${NATS_ENV:-} nats-server -c "$work/n$i.conf" -js > "$work/n$i.log" 2>&1 &
  nats_pids+=($!)
done
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:18221/healthz?js-enabled-only=true" > /dev/null && break; sleep 0.1
done
sleep 3
port=50121; mport=19464
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
config() { # variant prefix
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
  echo 'metrics:'
  echo "  listen_address: \"127.0.0.1:$mport\""
  if [ "$1" != none ]; then
    echo 'replication:'
    echo '  nats: ["nats://127.0.0.1:14221", "nats://127.0.0.1:14222", "nats://127.0.0.1:14223"]'
    echo "  stream_prefix: $2"
    echo '  replicas: 3'
    echo "  ack: $1"
    [ -z "${LINGER_MS:-}" ] || echo "  linger_ms: $LINGER_MS"
  fi
}
run() { # variant round
  local variant=$1 prefix="rp$2$1"
  config "$variant" "$prefix" > "$work/c.yaml"
  local data="$work/data-$variant-$2"
  "$BIN" serve --config "$work/c.yaml" --data-dir "$data" > "$work/serve.out" 2> "$work/serve.err" &
  local pid=$!
  for _ in $(seq 1 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
  : > "$work/lag"
  ( while kill -0 $pid 2>/dev/null; do
      curl -fs "http://127.0.0.1:$mport/metrics" 2>/dev/null | awk '/^rewardpool_replication_lag_draws/ {print $2}' >> "$work/lag"
      sleep 0.1
    done ) &
  local sampler=$!
  local t0; t0=$(ticks $pid; for p in "${nats_pids[@]}"; do ticks $p; done | paste -sd' ')
  local j; j=$("$BIN" load --target 127.0.0.1:$port $LOAD_SHAPE \
    --count 10 --duration ${SECONDS_PER_RUN}s --json 2>/dev/null)
  kill $sampler 2>/dev/null; wait $sampler 2>/dev/null
  local m; m=$(curl -fs "http://127.0.0.1:$mport/metrics" 2>/dev/null)
  local msgs; msgs=$(echo "$m" | awk '/^rewardpool_replication_shipped_sequence/ {print $2}')
  local groups; groups=$(echo "$m" | awk '/^rewardpool_groups_total/ {print $2}')
  local t1; t1=$(ticks $pid; for p in "${nats_pids[@]}"; do ticks $p; done | paste -sd' ')
  local cpu; cpu=$(python3 -c 'import sys,json,os
a=[int(x) for x in sys.argv[1].split()]; b=[int(x) for x in sys.argv[2].split()]; hz=os.sysconf("SC_CLK_TCK")
d=[(y-x)/hz for x,y in zip(a,b)]
print(json.dumps({"serve_s":d[0],"nats_s":round(sum(d[1:]),2)}))' "$t0" "$t1")
  local lag; lag=$(python3 -c 'import json,sys
v=sorted(float(x) for x in open(sys.argv[1]).read().split())
print(json.dumps({"samples":len(v),"p50":v[len(v)//2],"p99":v[min(len(v)-1,int(len(v)*0.99))],"max":v[-1]}) if v else "null")' "$work/lag")
  kill -TERM $pid; wait $pid; local rc=$?
  [ -n "$j" ] || j=null
  echo "{\"bin\":\"$LABEL\",\"messages\":${msgs:-null},\"groups\":${groups:-null},\"variant\":\"$variant\",\"round\":$2,\"loadavg\":$(cut -d' ' -f1 /proc/loadavg),\"serve_rc\":$rc,\"lag_draws\":$lag,\"cpu\":$cpu,\"r\":$j}" >> "$out"
  rm -rf "$data"
}
for r in $(seq 1 "$ROUNDS"); do
  for v in $VARIANTS; do run $v $r; done
done
