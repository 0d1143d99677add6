#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of switchyard from Debian 12's packages.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
packages=(
  build-essential cmake ninja-build pkg-config git
  libboost1.81-all-dev libpq-dev libsqlite3-dev libhiredis-dev libssl-dev
  prometheus-cpp-dev libspdlog-dev catch2 libpg-query-dev libyaml-cpp-dev libcli11-dev
  clang clang-format clang-tidy libclang-rt-14-dev
  postgresql postgresql-client redis-server pgbouncer pgpool2 pgloader sqlite3
  python3 python3-psycopg python3-pytest openssl procps
)
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${packages[@]}"
# The Debian packages enable and start system-wide servers; tests start their own, so stop
# those to keep ports and CPU free (no-op where no init system runs).
for svc in postgresql redis-server pgbouncer pgpool2; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
