#!/usr/bin/env bash
# The one command that installs everything and runs every check: dependencies, formatting and
# clang-tidy, a ASan+UBSan build with warnings as errors, a short fuzz run, then the unit and
# integration tests (real PostgreSQL, psql, pgbench, psycopg) through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh asan
LINT_BUILD_DIR=build-asan ./scripts/lint.sh
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" ./scripts/fuzz.sh
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
ctest --test-dir build-asan --output-on-failure --timeout 3000
