# Shared by the perf scripts (sourced, not run): the binary and the machine description.

# Builds the release binary unless BIN names one; sets BIN.
perf_binary() {
  if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet
    BIN=target/release/rewardpool
  fi
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
