#!/bin/bash
OLD=${OLD:?a release build of 621e35d}
NEW=${NEW:-target/release/rewardpool}
out=${OUT:-results.jsonl}; : > "$out"
rec() { local tag=$1; shift; local load=$(cut -d' ' -f1 /proc/loadavg); local j=$("$@" --json 2>/dev/null | tail -1); echo "{\"tag\":\"$tag\",\"load\":$load,\"r\":$j}" >> "$out"; }
for i in 1 2 3 4 5; do
  rec old-memory $OLD bench
  rec new-memory $NEW bench
  rec new-memory-pull10 $NEW bench --pull 10
done
for i in 1 2 3; do
  rec old-buffered $OLD bench --durability buffered
  rec new-buffered $NEW bench --durability buffered
  rec new-buffered-pull10 $NEW bench --durability buffered --pull 10
done
for i in 1 2 3; do
  rec new-sync $NEW bench --durability sync
  rec new-sync-pull10 $NEW bench --durability sync --pull 10
done

