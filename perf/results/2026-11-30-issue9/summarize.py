#!/usr/bin/env python3
"""Prints results.jsonl (from run.sh) as a Markdown table, then per-tag medians."""
import json, statistics, sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1] if len(sys.argv) > 1 else "results.jsonl")]
print("| run | load | M draws/s | baseline M | ratio | p50 µs | p99 µs | log B/draw |")
print("|---|---|---|---|---|---|---|---|")
by = defaultdict(list)
for row in rows:
    r = row["r"]
    if r is None:
        print(f"| {row['tag']} | {row['load']} | failed | | | | | |")
        continue
    rate, base = r["draws_per_sec"] / 1e6, r["baseline_draws_per_sec"] / 1e6
    lat = r["latency_ns"]
    lb = r.get("log_bytes_per_draw")
    by[row["tag"]].append((rate, rate / base, lat["p99"] / 1e3, lb))
    print(f"| {row['tag']} | {row['load']} | {rate:.2f} | {base:.1f} | {rate / base:.2f} | "
          f"{lat['p50'] / 1e3:.1f} | {lat['p99'] / 1e3:.1f} | {'' if lb is None else f'{lb:.2f}'} |")
print()
for tag, v in by.items():
    med = lambda i: statistics.median(x[i] for x in v)
    p99max = max(x[2] for x in v)
    lbs = [x[3] for x in v if x[3] is not None]
    lb = f", log {statistics.median(lbs):.2f} B/draw" if lbs else ""
    print(f"- {tag}: {med(0):.2f} M draws/s (n={len(v)}), {med(1):.2f} of the same-run baseline, "
          f"p99 median {med(2):.0f} µs, max {p99max:.0f} µs{lb}")
