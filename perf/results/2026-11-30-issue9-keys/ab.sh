#!/bin/bash
# Interleaved A/B of keyed against keyless pulls of 10 (memory durability), builds given as
# NAME=PATH arguments. Each round runs, for every build in turn: keyless and keyed at
# 10 M draws (the first fill of the 1 M-key window: 1 M keys) and at 40 M draws (the fill,
# then 3 M keys through the full window). One JSON line per run: {"tag","build","draws",
# "keys","load","r": <bench --json>}.
# Usage: ROUNDS=7 OUT=results.jsonl ./ab.sh main=/work/bin/rewardpool-main new=/work/bin/...
ROUNDS=${ROUNDS:-7}; out=$(realpath -m "${OUT:-results.jsonl}")
cd "$(mktemp -d)" || exit 1
for i in $(seq 1 "$ROUNDS"); do
  for b in "$@"; do
    name=${b%%=*}; bin=${b#*=}
    for draws in 10000000 40000000; do
      for keys in "" "--keys"; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        j=$("$bin" bench --durability memory --pull 10 --draws $draws $keys --json 2>/dev/null | tail -1)
        [ -n "$j" ] || j=null
        echo "{\"round\":$i,\"build\":\"$name\",\"draws\":$draws,\"keys\":$([ -n "$keys" ] && echo true || echo false),\"load\":$load,\"r\":$j}" >> "$out"
      done
    done
  done
done
