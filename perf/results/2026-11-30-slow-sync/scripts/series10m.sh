#!/bin/bash
bin=$1; n=$2; out=$3
cd "${SCRATCH:?a directory on the disk under test (never tmpfs)}"
for i in $(seq 1 $n); do
  echo "=== default.$i $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $out
  $bin bench --durability sync 2>&1 | grep -E "rewardpool bench|throughput|latency|syncs|groups" >> $out
  ls bench-data 2>/dev/null | head -2 >> $out
done
