#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for FUZZ_SECONDS (default 30) from the
# checked-in corpus. New inputs go to a temp dir; a crash leaves crash-* files to check in
# under tests/fuzz/corpus/ as regression cases once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSWITCHYARD_FUZZ=ON >/dev/null
cmake --build build-fuzz -j2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in fuzz_protocol; do
  corpus="tests/fuzz/corpus/${target#fuzz_}"
  echo "fuzzing $target for ${seconds}s from $corpus"
  "build-fuzz/tests/fuzz/$target" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=1024 \
    -print_final_stats=1 "$work" "$corpus" 2>&1 | tail -n 12
done
