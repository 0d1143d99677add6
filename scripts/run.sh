#!/usr/bin/env bash
# Builds switchyard and runs it on its embedded default: 127.0.0.1:6543 (admin and /metrics on
# 127.0.0.1:9543), a SQLite primary and secondary under ./switchyard-data, no other server.
# Extra arguments go to switchyard (e.g. --primary postgresql://... to front PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh release
exec ./build/proxy/switchyard "$@"
