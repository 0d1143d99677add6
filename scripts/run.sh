#!/usr/bin/env bash
# Builds switchyard and runs it on 127.0.0.1:6543 (admin and /metrics on 127.0.0.1:9543).
# Until the embedded SQLite backend lands, the primary is a PostgreSQL 15 cluster this script
# creates under ./switchyard-data/postgres and stops again when switchyard exits.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh release
data="$PWD/switchyard-data"
pg="$data/postgres"
bin=/usr/lib/postgresql/15/bin
as_owner=()
mkdir -p "$data"
if [ "$(id -u)" -eq 0 ]; then
  # PostgreSQL refuses to run as root.
  chown postgres:postgres "$data"
  chmod 755 "$data"
  as_owner=(runuser -u postgres --)
fi
if [ ! -f "$pg/PG_VERSION" ]; then
  "${as_owner[@]}" "$bin/initdb" -D "$pg" -U postgres --auth=trust -E UTF8 >/dev/null
fi
port="${SWITCHYARD_PG_PORT:-6544}"
"${as_owner[@]}" "$bin/pg_ctl" -D "$pg" -l "$data/postgres.log" -w \
  -o "-p $port -k $data -c listen_addresses=127.0.0.1" start >/dev/null
trap '"${as_owner[@]}" "$bin/pg_ctl" -D "$pg" -m fast -w stop >/dev/null' EXIT
cat <<MSG
switchyard: primary PostgreSQL data in $pg (port $port, log $data/postgres.log)
switchyard: connect with   psql -h 127.0.0.1 -p 6543 -U postgres postgres
switchyard: metrics at     http://127.0.0.1:9543/metrics   (Ctrl-C stops both)
MSG
./build/proxy/switchyard --primary "postgresql://postgres@127.0.0.1:$port/postgres?sslmode=disable" "$@"
