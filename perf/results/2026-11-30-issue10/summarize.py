#!/usr/bin/env python3
"""Medians per shape of run.sh's results.jsonl: throughput, latency, CPU per draw."""
import json
import statistics
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "results.jsonl"
rows = [json.loads(line) for line in open(path) if line.strip()]
med = statistics.median


def fmt_ns(ns):
    return f"{ns / 1e6:.2f} ms" if ns >= 1e6 else f"{ns / 1e3:.0f} µs"


print("| shape | runs | draws/s (median, min–max) | requests/s | p50 | p99 | p99.9 | server CPU µs/draw | generator CPU µs/draw | load avg |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
shapes = []
for r in rows:
    if r["tag"] not in shapes and not r["tag"].startswith("floor"):
        shapes.append(r["tag"])
for tag in shapes:
    runs = [r for r in rows if r["tag"] == tag and r.get("r")]
    if not runs:
        continue
    if tag.startswith("bench"):
        dps = [r["r"]["draws_per_sec"] for r in runs]
        # The process's CPU includes the same run's baseline (one thread, draws / baseline s).
        cpu = [
            (r["cpu_s"] - r["r"]["draws"] / r["r"]["baseline_draws_per_sec"]) / r["r"]["draws"] * 1e6
            for r in runs
        ]
        lat = [r["r"]["latency_ns"] for r in runs]
        print(
            f"| {tag} (in process) | {len(runs)} | {med(dps) / 1e6:.2f} M ({min(dps) / 1e6:.2f}–{max(dps) / 1e6:.2f}) | — "
            f"| {fmt_ns(med(l['p50'] for l in lat))} | {fmt_ns(med(l['p99'] for l in lat))} | {fmt_ns(med(l['p999'] for l in lat))} "
            f"| {med(cpu):.3f} | — | {med(r['load'] for r in runs):.1f} |"
        )
        continue
    dps = [r["r"]["draws_per_sec"] for r in runs]
    rps = [r["r"]["requests_per_sec"] for r in runs]
    lat = [r["r"]["latency_ns"] for r in runs]
    scpu = [r["serve_cpu_s"] / max(r["r"]["responses"], 1) * 1e6 for r in runs]
    gcpu = [r["load_cpu_s"] / max(r["r"]["responses"], 1) * 1e6 for r in runs]
    bad = sum(1 for r in runs if r["serve_rc"] != 0 or set(r["r"]["status_codes"]) - {"OK"})
    print(
        f"| {tag} | {len(runs)} | {med(dps) / 1e6:.3f} M ({min(dps) / 1e6:.3f}–{max(dps) / 1e6:.3f}) | {med(rps) / 1e3:.1f} K "
        f"| {fmt_ns(med(l['p50'] for l in lat))} | {fmt_ns(med(l['p99'] for l in lat))} | {fmt_ns(med(l['p999'] for l in lat))} "
        f"| {med(scpu):.3f} | {med(gcpu):.3f} | {med(r['load'] for r in runs):.1f} |"
        + (f" ({bad} runs with errors or a failed stop)" if bad else "")
    )
    if tag.startswith(("k6", "burst")):
        print(f"|   {tag}: p99 of each run | | {', '.join(fmt_ns(l['p99']) for l in lat)} | | | | | | | |")
for r in rows:
    if r["tag"].startswith("floor"):
        print(f"\n{r['tag']}: {json.dumps(r['r'])[:600]}")
