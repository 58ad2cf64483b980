#!/usr/bin/env bash
# The test command (what CI runs): starts a local PostgreSQL for the shared-study tests — installing Debian's
# postgresql package the first time, idempotently — then runs every test. Extra arguments go to `dotnet test`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -z "${WREN_TEST_POSTGRES:-}" ]; then
  if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      echo "PostgreSQL is not installed and this is not root: install Debian's postgresql package, or set WREN_TEST_POSTGRES" >&2
      exit 2
    fi
    echo "installing PostgreSQL (Debian package postgresql)…" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q postgresql >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; }
  fi
  version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
  as_postgres() { if [ "$(id -un)" = postgres ]; then "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi; }
  if ! pg_lsclusters -h 2>/dev/null | grep -q "^$version main"; then pg_createcluster "$version" main >/dev/null; fi
  pg_lsclusters -h | grep -q "^$version main .* online" || pg_ctlcluster "$version" main start
  port="$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { print $3 }')"
  as_postgres psql -q -p "$port" -v ON_ERROR_STOP=1 -c \
    "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wren') THEN CREATE ROLE wren LOGIN PASSWORD 'wren'; END IF; END \$\$;"
  as_postgres psql -q -p "$port" -tAc "SELECT 1 FROM pg_database WHERE datname = 'wren_test'" | grep -q 1 || as_postgres createdb -p "$port" -O wren wren_test
  export WREN_TEST_POSTGRES="postgresql://wren:wren@127.0.0.1:$port/wren_test"
  echo "PostgreSQL for the tests: postgresql://wren:***@127.0.0.1:$port/wren_test" >&2
fi
exec dotnet test "$root/Wren.slnx" -c Release "$@"
