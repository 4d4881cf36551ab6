#!/usr/bin/env python3
"""Summarizes ab.sh's results.jsonl: per mode and pull length, the median draws/s of each
build, and the median of the per-round ratios fair/base (rounds are interleaved, so each
ratio compares two runs taken moments apart)."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1] if len(sys.argv) > 1 else "results.jsonl")]
by = defaultdict(dict)
for r in rows:
    by[(r["mode"], r["pull"], r["round"])][r["build"]] = r["bench"]
print("| mode | pull | base M draws/s (median) | fair M draws/s (median) | fair/base per round (median, min..max) | p99 base / fair (µs, median) | rounds |")
print("|---|---|---|---|---|---|---|")
for mode in ["memory", "buffered", "sync"]:
    for pull in [1, 10]:
        rounds = [v for (m, p, _), v in sorted(by.items()) if m == mode and p == pull and "base" in v and "fair" in v]
        if not rounds:
            continue
        base = [v["base"]["draws_per_sec"] / 1e6 for v in rounds]
        fair = [v["fair"]["draws_per_sec"] / 1e6 for v in rounds]
        ratios = [f / b for b, f in zip(base, fair)]
        p99b = statistics.median(v["base"]["latency_ns"]["p99"] / 1e3 for v in rounds)
        p99f = statistics.median(v["fair"]["latency_ns"]["p99"] / 1e3 for v in rounds)
        print(f"| {mode} | {pull} | {statistics.median(base):.1f} | {statistics.median(fair):.1f} | "
              f"{statistics.median(ratios):.3f} ({min(ratios):.3f}..{max(ratios):.3f}) | "
              f"{p99b:.0f} / {p99f:.0f} | {len(rounds)} |")
