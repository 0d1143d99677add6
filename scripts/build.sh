#!/usr/bin/env bash
# Configures and builds switchyard. Usage: scripts/build.sh [release|asan] (default release).
# release -> build/, asan -> build-asan/ (ASan+UBSan). Warnings are errors in both.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-release}"
case "$kind" in
  release) dir=build; flags=(-DCMAKE_BUILD_TYPE=Release) ;;
  asan) dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSWITCHYARD_SANITIZE=ON) ;;
  *) echo "usage: $0 [release|asan]" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" -G Ninja -DSWITCHYARD_WERROR=ON "${flags[@]}" >/dev/null
cmake --build "$dir" -j2
