#!/bin/bash
# Second pass, same machine, right after run.sh: single draws in memory (10 pairs) and keyed
# pulls of 10 in memory mode (5 pairs), interleaved.
OLD=${OLD:?}; NEW=${NEW:?}; out=${OUT:-results2.jsonl}; : > "$out"
rec() { local tag=$1; shift; local load; load=$(cut -d' ' -f1 /proc/loadavg)
  local j; j=$("$@" --json 2>/dev/null | tail -1); [ -n "$j" ] || j=null
  echo "{\"tag\":\"$tag\",\"load\":$load,\"r\":$j}" >> "$out"; }
for i in $(seq 1 10); do rec old-memory $OLD bench; rec new-memory $NEW bench; done
for i in 1 2 3 4 5; do
  rec new-memory-pull10 $NEW bench --pull 10
  rec new-memory-pull10-keys $NEW bench --pull 10 --keys
done
