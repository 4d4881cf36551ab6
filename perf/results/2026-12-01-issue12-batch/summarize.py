#!/usr/bin/env python3
"""Per-round ratios of run.sh's results (local and replica over the same round's none),
medians over rounds, per build label; and the fail-over timings."""
import json, statistics as st, sys
from collections import defaultdict

def rounds(path):
    out = defaultdict(dict)  # (label, round index within label) -> variant -> record
    seen = defaultdict(int)
    for line in open(path):
        r = json.loads(line)
        if r['variant'] == 'none':
            seen[r['bin']] += 1
        out[(r['bin'], seen[r['bin']])][r['variant']] = r
    return out

for path in sys.argv[1:]:
    if 'failover' in path:
        rows = [json.loads(l) for l in open(path)]
        for mode in sorted({r['mode'] for r in rows}):
            s = [r['serving_ms'] for r in rows if r['mode'] == mode]
            print(f"{path} {mode}: serving after SIGKILL, ms: {sorted(s)}; median {st.median(s)}")
        continue
    by = defaultdict(lambda: defaultdict(list))
    for (label, _), vs in sorted(rounds(path).items()):
        none = vs.get('none')
        if not none or not none['r']:
            continue
        for v in ('local', 'replica'):
            r = vs.get(v)
            if r and r['r']:
                by[label][v + ' ratio'].append(r['r']['draws_per_sec'] / none['r']['draws_per_sec'])
                by[label][v + ' draws/s'].append(r['r']['draws_per_sec'])
                by[label][v + ' nats cpu s'].append(r['cpu']['nats_s'])
                by[label][v + ' messages'].append(r['messages'] or 0)
                if r['lag_draws']:
                    by[label][v + ' lag p99'].append(r['lag_draws']['p99'])
        by[label]['none draws/s'].append(none['r']['draws_per_sec'])
    for label, m in by.items():
        print(f"{path} [{label}]")
        for k, vals in m.items():
            fmt = (lambda x: f"{x:.3f}") if 'ratio' in k else (lambda x: f"{x:.3g}")
            print(f"  {k}: median {fmt(st.median(vals))}  all {[fmt(x) for x in vals]}")
