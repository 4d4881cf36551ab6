#!/usr/bin/env python3
"""Medians and per-round keyed/keyless ratios of ab.sh's JSON lines: ./summarize.py results.jsonl"""
import json, statistics as st, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rate = {}
for r in runs:
    if r["r"]:
        rate[(r["build"], r["round"], r["keys"])] = r["r"]["draws_per_sec"] / 1e6
builds = list(dict.fromkeys(r["build"] for r in runs))
rounds = sorted({r["round"] for r in runs})
print("| build | n | keyless M/s (median) | keyed M/s (median) | ratio of medians | median of round ratios | round ratios |")
print("|---|---|---|---|---|---|---|")
for b in builds:
    kl = [rate[(b, i, False)] for i in rounds if (b, i, False) in rate]
    ky = [rate[(b, i, True)] for i in rounds if (b, i, True) in rate]
    rr = [rate[(b, i, True)] / rate[(b, i, False)] for i in rounds if (b, i, True) in rate and (b, i, False) in rate]
    print(f"| {b} | {len(rr)} | {st.median(kl):.1f} | {st.median(ky):.1f} | {st.median(ky)/st.median(kl):.3f} | {st.median(rr):.3f} | {' '.join(f'{x:.2f}' for x in rr)} |")
loads = [r["load"] for r in runs]
print(f"\nload average during the runs: {min(loads)}..{max(loads)}")
