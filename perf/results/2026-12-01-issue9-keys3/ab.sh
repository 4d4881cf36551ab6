#!/bin/bash
# Interleaved A/B of keyed against keyless pulls of 10, per durability mode.
# usage: ROUNDS=5 OUT=results.jsonl ./ab.sh name=/path/to/rewardpool ...
# Each round runs, per build in turn, per mode, keyless then keyed; one JSON line each
# (the bench's own JSON plus build, mode, keyed, round). Data directories on ext4 (never tmpfs).
set -u
ROUNDS=${ROUNDS:-5}
OUT=${OUT:-results.jsonl}
DRAWS=${DRAWS:-20000000}
MODES=${MODES:-memory buffered sync}
DIR=${DIR:-/work/perfrun/keys3}
for round in $(seq 1 "$ROUNDS"); do
  for spec in "$@"; do
    name=${spec%%=*}; bin=${spec#*=}
    for mode in $MODES; do
      for keyed in 0 1; do
        rm -rf "$DIR"; mkdir -p "$DIR"
        flag=""; [ "$keyed" = 1 ] && flag="--keys"
        line=$("$bin" bench --durability "$mode" --pull 10 --draws "$DRAWS" --data-dir "$DIR" $flag --json 2>/dev/null)
        echo "{\"build\":\"$name\",\"mode\":\"$mode\",\"keyed\":$keyed,\"round\":$round,\"load\":\"$(cut -d' ' -f1 /proc/loadavg)\",\"bench\":$line}" >> "$OUT"
      done
    done
  done
done
