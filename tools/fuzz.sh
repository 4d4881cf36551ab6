#!/usr/bin/env bash
# Runs one fuzz target (fuzz/fuzz_targets/TARGET.rs) for MINUTES minutes on one core, from
# its committed seed corpus (fuzz/corpus/TARGET, read only; new inputs go to a scratch
# corpus under fuzz/target, not committed). Crashes land in fuzz/artifacts/TARGET/.
#
#   tools/fuzz.sh TARGET MINUTES        e.g. tools/fuzz.sh frame 5; MINUTES may be 0.5
#   tools/fuzz.sh build                 builds every target (what CI's smoke run needs)
#   ASAN=1 tools/fuzz.sh TARGET MINUTES the same under AddressSanitizer (its own build in
#                                       fuzz/target-asan; see below)
#
# AddressSanitizer: `-Zsanitizer=address` is an unstable flag; RUSTC_BOOTSTRAP=1 lets the
# stable compiler accept it (the sanitizer runtime ships with the stable toolchain). The
# standard library itself is not instrumented (that needs -Zbuild-std and nightly), our code
# and every dependency is.
#
# Stable Rust is enough: libFuzzer comes from the libfuzzer-sys crate, and the coverage
# instrumentation flags below are stable codegen options (what cargo-fuzz passes, without
# a sanitizer). `cargo fuzz run TARGET` also works where cargo-fuzz and nightly are present.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
target_triple=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="${RUSTFLAGS:-} -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
if [[ ${ASAN:-0} == 1 ]]; then
  export RUSTC_BOOTSTRAP=1 RUSTFLAGS="$RUSTFLAGS -Zsanitizer=address"
  export CARGO_TARGET_DIR=target-asan ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
fi
out=${CARGO_TARGET_DIR:-target}
# --target keeps the flags off build scripts and proc macros, as cargo-fuzz does.
cargo build --release --target "$target_triple" --bins
[[ ${1:-} == build ]] && exit 0
name=${1:?usage: tools/fuzz.sh TARGET MINUTES}
minutes=${2:?usage: tools/fuzz.sh TARGET MINUTES}
seconds=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')
bin="$out/$target_triple/release/$name"
scratch="target/corpus/$name"
mkdir -p "$scratch" "artifacts/$name"
# The first corpus directory receives new inputs: the scratch one; the seeds are read.
"$bin" "$scratch" "corpus/$name" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
  -rss_limit_mb=2048 -artifact_prefix="artifacts/$name/" -print_final_stats=1
