#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of switchyard from Debian 12's packages.
# Skips apt entirely when everything is already installed.
set -euo pipefail
cd "$(dirname "$0")"
mapfile -t packages < <(grep -v '^#' packages.txt | tr ' ' '\n' | grep -v '^$')
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
# The packages start system-wide servers; tests and benchmarks start their own.
for service in postgresql redis-server pgbouncer pgpool2; do
  $SUDO service "$service" stop >/dev/null 2>&1 || true
done
