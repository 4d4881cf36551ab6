#!/bin/bash
# usage: abn.sh BIN N OUT VARIANT... ; VARIANT is "name:ENV=1,ENV2=1" or "name:"
bin=$1; n=$2; out=$3; shift 3
cd "${SCRATCH:?a directory on the disk under test (never tmpfs)}"
for i in $(seq 1 $n); do
  for v in "$@"; do
    name=${v%%:*}; envs=${v#*:}
    echo "=== $name.$i $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $out
    env $(echo $envs | tr ',' ' ') $bin bench --durability sync --draws 300000 2>&1 | grep -E "throughput|latency|syncs" >> $out
  done
done
