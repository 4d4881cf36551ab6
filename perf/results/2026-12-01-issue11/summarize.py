#!/usr/bin/env python3
"""Medians of run.sh's results.jsonl: the server's draws/s alone and with the dashboard, the
paired ratio per round (B / A of the same round), the server's CPU per draw, and the
dashboard's own CPU share of one core."""
import json
import statistics
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "results.jsonl"
rows = [json.loads(line) for line in open(path) if line.strip()]
med = statistics.median
alone = [r for r in rows if r["tag"] == "alone" and r.get("r")]
withd = [r for r in rows if r["tag"] == "with-tui" and r.get("r")]


def line(tag, runs):
    dps = [r["r"]["draws_per_sec"] for r in runs]
    cpu = [r["serve_cpu_s"] / r["r"]["draws"] * 1e6 for r in runs]
    p99 = [r["r"]["latency_ns"]["p99"] / 1e6 for r in runs]
    la = [r["loadavg"] for r in runs]
    print(f"| {tag} | {len(runs)} | {med(dps) / 1e6:.3f} M ({min(dps) / 1e6:.3f}–{max(dps) / 1e6:.3f}) "
          f"| {med(p99):.2f} ms | {med(cpu):.3f} | {med(la):.1f} |")


print("| server | runs | draws/s median (min–max) | p99 | server CPU µs/draw | load avg before |")
print("|---|---:|---|---:|---:|---:|")
line("load alone", alone)
line("load + tui --refresh-ms 100", withd)
# Rounds in order: each pair is one alone and one with-tui run (order alternating).
pairs = []
a_runs = [r for r in rows if r["tag"] == "alone"]
b_runs = [r for r in rows if r["tag"] == "with-tui"]
for a, b in zip(a_runs, b_runs):
    if a.get("r") and b.get("r"):
        pairs.append(b["r"]["draws_per_sec"] / a["r"]["draws_per_sec"])
if pairs:
    print()
    print(f"paired ratio with/without per round: {', '.join(f'{p:.3f}' for p in pairs)}")
    print(f"median paired ratio: {med(pairs):.3f} (cost {100 * (1 - med(pairs)):+.1f} %); "
          f"ratio of medians: {med(r['r']['draws_per_sec'] for r in withd) / med(r['r']['draws_per_sec'] for r in alone):.3f}")
tui = [r["tui"] for r in withd if r.get("tui")]
if tui:
    pct = [t["cpu_pct_of_core"] for t in tui]
    print(f"dashboard CPU (% of one core, {tui[0]['window_s']:.0f} s windows): median {med(pct):.2f}, "
          f"min {min(pct):.2f}, max {max(pct):.2f}; exit codes {sorted(set(t['exit'] for t in tui))}; "
          f"output {med(t['bytes_per_s'] for t in tui) / 1e3:.1f} kB/s; "
          f"alternate screen left last: {all(t['left_alt_screen_last'] for t in tui)}")
