#!/usr/bin/env python3
"""Medians per build of ab.sh's runs: keyless and keyed rates at 10 M draws (first fill of
the 1 M-key window) and 40 M draws, the keyed/keyless ratio of the medians, the median of
per-round ratios, and a steady-state estimate: the 30 M draws after the fill, from the
medians of the runs' seconds ((40 M - 10 M) / (t40 - t10))."""
import json, statistics as st, sys
from collections import defaultdict
# One or more files (pooled: rounds are told apart by file).
runs = []
for f, path in enumerate(sys.argv[1:] or ["results.jsonl"]):
    for l in open(path):
        r = json.loads(l)
        r["round"] = (f, r["round"])
        runs.append(r)
by = defaultdict(list)
for r in runs:
    if r["r"]:
        by[(r["build"], r["draws"], r["keys"])].append(r)
builds = list(dict.fromkeys(r["build"] for r in runs))
med = lambda xs: st.median(xs) if xs else float("nan")
print("| build | draws | n | keyless M/s | keyed M/s | keyed/keyless (medians) | median of round ratios | min..max round ratio |")
print("|---|---|---|---|---|---|---|---|")
secs = {}
for b in builds:
    for d in (10_000_000, 40_000_000):
        kl = by[(b, d, False)]; kd = by[(b, d, True)]
        rl = med([x["r"]["draws_per_sec"] for x in kl]) / 1e6
        rk = med([x["r"]["draws_per_sec"] for x in kd]) / 1e6
        rounds = {x["round"]: x["r"]["draws_per_sec"] for x in kl}
        ratios = [x["r"]["draws_per_sec"] / rounds[x["round"]] for x in kd if x["round"] in rounds]
        secs[(b, d, False)] = med([x["r"]["seconds"] for x in kl])
        secs[(b, d, True)] = med([x["r"]["seconds"] for x in kd])
        print(f"| {b} | {d//1_000_000} M | {len(kd)} | {rl:.1f} | {rk:.1f} | {rk/rl:.3f} | {med(ratios):.3f} | {min(ratios, default=0):.3f}..{max(ratios, default=0):.3f} |")
print()
print("| build | steady keyless M/s | steady keyed M/s | keyed/keyless |")
print("|---|---|---|---|")
for b in builds:
    sl = 30e6 / (secs[(b, 40_000_000, False)] - secs[(b, 10_000_000, False)]) / 1e6
    sk = 30e6 / (secs[(b, 40_000_000, True)] - secs[(b, 10_000_000, True)]) / 1e6
    print(f"| {b} | {sl:.1f} | {sk:.1f} | {sk/sl:.3f} |")
