#!/usr/bin/env bash
# Checks formatting (clang-format) and the Python tests and benchmarks (pyflakes: the
# benchmarks run in no test, so an undefined name would otherwise surface only when someone
# runs them), then, unless LINT_FORMAT_ONLY=1, runs clang-tidy over every source file using
# build/compile_commands.json. Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t sources < <(git ls-files '*.cpp' '*.hpp')
echo "clang-format: checking ${#sources[@]} files"
clang-format --dry-run --Werror "${sources[@]}"
mapfile -t scripts < <(git ls-files '*.py')
echo "pyflakes: checking ${#scripts[@]} files"
pyflakes3 "${scripts[@]}"
if [ "${LINT_FORMAT_ONLY:-0}" = 1 ]; then exit 0; fi
build="${LINT_BUILD_DIR:-build}"
[ -f "$build/compile_commands.json" ] || cmake -S . -B "$build" -G Ninja >/dev/null
mapfile -t units < <(git ls-files '*.cpp' | grep -v '^tests/fuzz/')
echo "clang-tidy: checking ${#units[@]} files"
printf '%s\n' "${units[@]}" | xargs -P 2 -n 4 clang-tidy -p "$build" --quiet --extra-arg=-Wno-unknown-warning-option
