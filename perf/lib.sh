# Shared by the perf scripts (sourced, not run): the binary and the machine description.

# Builds the release binaries unless BIN names one; sets BIN and HICCUP (tools/hiccup.rs).
perf_binary() {
  if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet
    BIN=target/release/rewardpool
  fi
  HICCUP=${HICCUP:-$(dirname "$BIN")/rewardpool-hiccup}
}

# Appends the machine's floor to JSON-lines file $1, each line tagged "when": $3: CPU
# stalls per core (FLOOR_SECONDS, default 5), then fdatasync latency in data directory $2
# for 64 and 256 KiB writes. Latency figures are read against these (perf/README.md).
perf_floor() {
  local secs=${FLOOR_SECONDS:-5}
  {
    "$HICCUP" --json --seconds "$secs"
    "$HICCUP" --json --seconds "$secs" --disk "$2" --write-kib 64
    "$HICCUP" --json --seconds "$secs" --disk "$2" --write-kib 256
  } | python3 -c "import json,sys
for l in sys.stdin:
    r = json.loads(l); r['when'] = '$3'; print(json.dumps(r))" >> "$1"
}

# Markdown for the floor measured into JSON-lines file $1.
perf_floor_table() {
  python3 - "$1" <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
print("| when | what | figures |")
print("|---|---|---|")
for r in rs:
    if r["mode"] == "cpu":
        e = r["excess_percent_by_bound_us"]
        print(f"| {r['when']} | core {r['core']} stalls, {r['seconds']:.0f} s | longest {r['gap_max_ns']/1e6:.2f} ms; "
              f"{r['percent_in_gaps_over_1ms']:.2f} % of the time in gaps > 1 ms; excess over 20 / 50 / 1000 / 2000 µs: "
              f"{e['20']:.2f} / {e['50']:.2f} / {e['1000']:.2f} / {e['2000']:.2f} % |")
    else:
        p = r["fdatasync_us"]
        print(f"| {r['when']} | {r['write_kib']} KiB write + fdatasync | {r['mb_per_sec']:.0f} MB/s; p50 {p['p50']:.0f} µs, "
              f"p99 {p['p99']:.0f} µs, p99.9 {p['p999']:.0f} µs, max {p['max']:.0f} µs |")
PY
}

# Prints the machine description lines of SETUP.md for a run writing into data directory $1.
perf_machine() {
  echo "- date: $(date -Iseconds)"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
  echo "- nproc: $(nproc)"
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "- kernel: $(uname -r)"
  echo "- governor: $(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null || echo 'n/a (no cpufreq: VM?)')"
  echo "- isolcpus: $(cat /sys/devices/system/cpu/isolated 2>/dev/null || echo n/a)"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- rustc: $(rustc --version)"
  echo "- data directory filesystem: $(df -T "$1" | awk 'NR==2 {print $2}') ($1)"
}
