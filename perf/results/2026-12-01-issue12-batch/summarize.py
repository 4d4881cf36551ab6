#!/usr/bin/env python3
"""Medians per variant of run.sh's results: draws/s, p99 latency, shipper lag."""
import json, statistics as st, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r['r']:
        runs[r['variant']].append(r)
base = st.median(r['r']['draws_per_sec'] for r in runs['none']) if runs['none'] else None
print('| variant | runs | draws/s (median) | of none | p99 ms | lag draws p99 (median of runs) | lag max | server CPU s | NATS CPU s |')
print('|---|---|---|---|---|---|---|---|---|')
for v in ['none', 'local', 'replica']:
    rs = runs[v]
    if not rs:
        continue
    d = st.median(r['r']['draws_per_sec'] for r in rs)
    p99 = st.median(r['r']['latency_ns']['p99'] / 1e6 for r in rs) if 'latency_ns' in rs[0]['r'] else float('nan')
    lags = [r['lag_draws'] for r in rs if r['lag_draws']]
    lp99 = st.median(l['p99'] for l in lags) if lags else '-'
    lmax = max(l['max'] for l in lags) if lags else '-'
    cpus = [r['cpu'] for r in rs if r.get('cpu')]
    scpu = f"{st.median(c['serve_s'] for c in cpus):.1f}" if cpus else '-'
    ncpu = f"{st.median(c['nats_s'] for c in cpus):.1f}" if cpus else '-'
    print(f"| {v} | {len(rs)} | {d/1e6:.2f} M | {d/base:.3f} | {p99:.2f} | {lp99} | {lmax} | {scpu} | {ncpu} |")
