#!/bin/bash
# Third pass, the final build (7ad3ed5): keyed against keyless pulls of 10, memory and
# buffered, 8 interleaved pairs each.
NEW=${NEW:?}; out=${OUT:-results3.jsonl}; : > "$out"
rec() { local tag=$1; shift; local load; load=$(cut -d' ' -f1 /proc/loadavg)
  local j; j=$("$@" --json 2>/dev/null | tail -1); [ -n "$j" ] || j=null
  echo "{\"tag\":\"$tag\",\"load\":$load,\"r\":$j}" >> "$out"; }
for i in $(seq 1 8); do
  rec memory-pull10 $NEW bench --pull 10
  rec memory-pull10-keys $NEW bench --pull 10 --keys
  rec buffered-pull10 $NEW bench --durability buffered --pull 10
  rec buffered-pull10-keys $NEW bench --durability buffered --pull 10 --keys
done
