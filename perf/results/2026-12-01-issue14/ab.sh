#!/bin/bash
# Interleaved A/B of the draws' generator and per-seed commitments (issue 14): each round runs,
# per build in turn, per durability mode, single draws then pulls of 10; one JSON line each
# (the bench's own JSON plus build, mode, pull, round and the load average).
# usage: ROUNDS=5 OUT=results.jsonl ./ab.sh base=/path/to/rewardpool fair=/path/to/rewardpool
# Data directories on ext4 (never tmpfs).
set -u
ROUNDS=${ROUNDS:-5}
OUT=${OUT:-results.jsonl}
DRAWS=${DRAWS:-20000000}
MODES=${MODES:-memory buffered sync}
PULLS=${PULLS:-1 10}
DIR=${DIR:-/work/perfrun/fair}
for round in $(seq 1 "$ROUNDS"); do
  for spec in "$@"; do
    name=${spec%%=*}; bin=${spec#*=}
    for mode in $MODES; do
      for pull in $PULLS; do
        rm -rf "$DIR"; mkdir -p "$DIR"
        flag=""; [ "$pull" != 1 ] && flag="--pull $pull"
        line=$("$bin" bench --durability "$mode" $flag --draws "$DRAWS" --data-dir "$DIR" --json 2>/dev/null)
        echo "{\"build\":\"$name\",\"mode\":\"$mode\",\"pull\":$pull,\"round\":$round,\"load\":\"$(cut -d' ' -f1 /proc/loadavg)\",\"bench\":$line}" >> "$OUT"
      done
    done
  done
done
