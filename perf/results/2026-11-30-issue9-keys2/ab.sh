#!/bin/bash
# Interleaved A/B of keyed against keyless pulls of 10 (memory durability, 20 M draws: 2 M keys,
# the 1 M-key window filled, then 1 M keys through the full window). Builds as NAME=PATH;
# each round runs, per build in turn, keyless then keyed. One JSON line per run:
# {"round","build","keys","load","r": <bench --json>}.
# Usage: ROUNDS=6 OUT=results.jsonl ./ab.sh base=/work/bin/rewardpool-keys2-base new=/work/bin/...
ROUNDS=${ROUNDS:-6}; out=$(realpath -m "${OUT:-results.jsonl}")
cd "$(mktemp -d)" || exit 1
for i in $(seq 1 "$ROUNDS"); do
  for b in "$@"; do
    name=${b%%=*}; bin=${b#*=}
    for keys in "" "--keys"; do
      load=$(cut -d' ' -f1 /proc/loadavg)
      j=$("$bin" bench --durability memory --pull 10 --draws 20000000 $keys --json 2>/dev/null | tail -1)
      [ -n "$j" ] || j=null
      echo "{\"round\":$i,\"build\":\"$name\",\"keys\":$([ -n "$keys" ] && echo true || echo false),\"load\":$load,\"r\":$j}" >> "$out"
    done
  done
done
