#!/bin/bash
# Issue 9's figures, interleaved: OLD = a release build of 9493418 (this session's start),
# NEW = a release build of main. Raw JSON lines in results.jsonl; summarize.py prints the
# table and medians. Run from a directory on a real disk (never tmpfs): the bench's data
# directory is ./bench-data under the current directory.
set -u
OLD=${OLD:?a release build of 9493418}
NEW=${NEW:-target/release/rewardpool}
out=${OUT:-results.jsonl}; : > "$out"
rec() { local tag=$1; shift; local load; load=$(cut -d' ' -f1 /proc/loadavg)
  local j; j=$("$@" --json 2>/dev/null | tail -1)
  [ -n "$j" ] || j=null
  echo "{\"tag\":\"$tag\",\"load\":$load,\"r\":$j}" >> "$out"; }
for i in 1 2 3 4 5; do
  rec old-memory $OLD bench
  rec new-memory $NEW bench
  rec new-memory-pull10 $NEW bench --pull 10
done
for i in 1 2 3 4 5; do
  rec old-buffered $OLD bench --durability buffered
  rec new-buffered $NEW bench --durability buffered
  rec old-buffered-pull10 $OLD bench --durability buffered --pull 10
  rec new-buffered-pull10 $NEW bench --durability buffered --pull 10
  rec new-buffered-pull10-keys $NEW bench --durability buffered --pull 10 --keys
done
for i in 1 2 3; do
  rec old-sync $OLD bench --durability sync
  rec new-sync $NEW bench --durability sync
done
for i in $(seq 1 10); do
  rec new-sync-pull10 $NEW bench --durability sync --pull 10
done
for i in 1 2 3; do
  rec new-memory-pools1 $NEW bench --pools 1
  rec new-memory-pools2 $NEW bench --pools 2
  rec new-buffered-pools1 $NEW bench --durability buffered --pools 1
  rec new-buffered-pools2 $NEW bench --durability buffered --pools 2
done
