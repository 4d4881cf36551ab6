#!/bin/bash
# usage: abb.sh N OUT name=BIN... ; interleaved runs, a fresh ./bench-data each (the bench deletes it)
n=$1; out=$2; shift 2
cd "${SCRATCH:?a directory on the disk under test (never tmpfs)}"
for i in $(seq 1 $n); do
  for v in "$@"; do
    name=${v%%=*}; bin=${v#*=}
    echo "=== $name.$i $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $out
    $bin bench --durability sync --draws 300000 2>&1 | grep -E "throughput|latency|syncs" >> $out
  done
done
