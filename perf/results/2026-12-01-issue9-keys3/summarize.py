#!/usr/bin/env python3
"""Keyed against keyless per build and mode: medians, ratio of medians, per-round ratios."""
import json, statistics as st, sys
from collections import defaultdict
runs = defaultdict(dict)
for path in sys.argv[1:]:
    for line in open(path):
        r = json.loads(line)
        runs[(r['build'], r['mode'], r['round'])][r['keyed']] = r['bench']
print('| build | mode | rounds | keyless M/s | keyed M/s | ratio of medians | median round ratio | round ratios | keyed p99 µs |')
print('|---|---|---|---|---|---|---|---|---|')
groups = defaultdict(list)
for (b, m, rnd), v in sorted(runs.items()):
    if 0 in v and 1 in v:
        groups[(b, m)].append(v)
for (b, m), vs in groups.items():
    kl = [v[0]['draws_per_sec'] / 1e6 for v in vs]
    kd = [v[1]['draws_per_sec'] / 1e6 for v in vs]
    ratios = [d / l for d, l in zip(kd, kl)]
    p99 = st.median(v[1]['latency_ns']['p99'] / 1e3 for v in vs)
    print(f"| {b} | {m} | {len(vs)} | {st.median(kl):.1f} | {st.median(kd):.1f} | "
          f"{st.median(kd)/st.median(kl):.2f} | {st.median(ratios):.2f} | "
          f"{' '.join(f'{x:.2f}' for x in ratios)} | {p99:.0f} |")
