#!/bin/bash
# Interleaved A/B: old (621e35d) vs new (main), bench --durability sync, 300K draws, then
# 10 consecutive new runs at the default shape (10 M draws). JSON lines to results.jsonl.
OLD=${OLD:?the old build, e.g. a release build of 621e35d}
NEW=${NEW:-target/release/rewardpool}
out=${OUT:-results.jsonl}; : > "$out"
for i in 1 2 3 4 5 6; do
  for which in old new; do
    bin=$OLD; [ $which = new ] && bin=$NEW
    load=$(cut -d' ' -f1 /proc/loadavg)
    j=$(timeout 900 $bin bench --durability sync --draws 300000 --json 2>/dev/null | tail -1)
    echo "{\"series\":\"ab300k\",\"bin\":\"$which\",\"run\":$i,\"load\":$load,\"r\":$j}" >> "$out"
  done
done
for i in $(seq 1 10); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  j=$(timeout 900 $NEW bench --durability sync --json 2>/dev/null | tail -1)
  echo "{\"series\":\"default10m\",\"bin\":\"new\",\"run\":$i,\"load\":$load,\"r\":$j}" >> "$out"
done
