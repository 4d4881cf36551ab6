#!/bin/bash
# A/B of keys_cost builds (copy keys_cost.rs into examples/, build --release, copy the binary
# out per variant): N rounds, each build in turn, 2 M pulls x 2 rounds a run, the last kept.
# usage: probe_ab.sh N bin... ; prints median ratio per bin
N=$1; shift
for i in $(seq 1 $N); do for b in "$@"; do $b 2000000 2 | tail -1 | sed "s|^|$(basename $b) |"; done; done > /tmp/probe_ab.out
python3 - "$@" <<'PY'
import sys,json,statistics as st
r={}
for l in open('/tmp/probe_ab.out'):
    n,j=l.split(' ',1); j=json.loads(j); r.setdefault(n,[]).append(j)
for n,v in r.items():
    print(n, 'ratio med', round(st.median(x['ratio'] for x in v),3), 'keyless M', round(st.median(x['keyless'] for x in v)/1e6,1), 'keyed M', round(st.median(x['keyed'] for x in v)/1e6,1), [x['ratio'] for x in v])
PY
