#!/bin/bash
# usage: series.sh BIN N OUT [extra bench args]
bin=$1; n=$2; out=$3; shift 3
cd "${SCRATCH:?a directory on the disk under test (never tmpfs)}"
for i in $(seq 1 $n); do
  echo "=== run $i $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $out
  $bin bench --durability sync --draws 300000 "$@" 2>&1 | grep -E "throughput|latency|syncs" >> $out
done
