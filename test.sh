#!/usr/bin/env bash
# The test command (what CI runs). For the shared-study tests it runs a private, throw-away PostgreSQL: a new
# cluster in a temporary folder (initdb, trust authentication, no password), listening on 127.0.0.1 at a free port
# and on a socket in that folder, stopped and deleted when this script exits. The machine's own clusters are
# neither created, started nor touched. Debian's postgresql package is installed only when its binaries are
# missing (then any cluster the package creates is dropped again). Set WREN_TEST_POSTGRES to use a server of your
# own instead. For the data-parallel training tests it needs Open MPI (mpirun, libmpi.so.40): Debian's openmpi-bin and
# libopenmpi-dev are installed only when mpirun is missing (nothing is started; mpirun runs only inside the tests).
# Extra arguments go to `dotnet test`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

install_mpi() {
  if [ "$(id -u)" != 0 ]; then
    echo "Open MPI is not installed and this is not root: the MPI training tests need Debian's openmpi-bin and libopenmpi-dev" >&2
    return
  fi
  echo "installing Open MPI (Debian packages openmpi-bin, libopenmpi-dev)…" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q openmpi-bin libopenmpi-dev >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q openmpi-bin libopenmpi-dev >/dev/null; }
}
command -v mpirun >/dev/null || install_mpi

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

install_postgres() {
  if [ "$(id -u)" != 0 ]; then
    echo "PostgreSQL is not installed and this is not root: install Debian's postgresql package, or set WREN_TEST_POSTGRES" >&2
    exit 2
  fi
  echo "installing PostgreSQL (Debian package postgresql)…" >&2
  local before
  before="$(pg_lsclusters -h 2>/dev/null | awk '{ print $1 "/" $2 }' || true)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q postgresql >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; }
  # The package creates and starts a system cluster; this script wants none: drop what the install added.
  pg_lsclusters -h 2>/dev/null | awk '{ print $1 "/" $2 }' | while read -r cluster; do
    if ! grep -qx "$cluster" <<<"$before"; then pg_dropcluster --stop "${cluster%/*}" "${cluster#*/}"; fi
  done
}

free_port() {
  local port
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "no free port found for the test PostgreSQL" >&2
  exit 2
}

if [ -z "${WREN_TEST_POSTGRES:-}" ]; then
  [ -n "$(pg_bin)" ] || install_postgres
  bin="$(pg_bin)"
  scratch="$(mktemp -d /tmp/wren-test-pg.XXXXXX)"
  owner="$(id -un)"
  temp_user=""
  if [ "$(id -u)" = 0 ]; then   # initdb refuses root: run the cluster as the package's postgres user, or a temporary one
    if getent passwd postgres >/dev/null; then owner=postgres; else
      temp_user="wren-pg-$$"; useradd --system --no-create-home --shell /usr/sbin/nologin "$temp_user"; owner="$temp_user"
    fi
    chown "$owner" "$scratch"
  fi
  as_owner() { if [ "$(id -un)" = "$owner" ]; then "$@"; else runuser -u "$owner" -- "$@"; fi; }
  cleanup() {
    as_owner "$bin/pg_ctl" -D "$scratch/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$scratch"
    if [ -n "$temp_user" ]; then userdel "$temp_user" 2>/dev/null || true; fi
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  as_owner "$bin/initdb" -D "$scratch/data" -U wren --auth=trust -E UTF8 >"$scratch/initdb.log" 2>&1 \
    || { cat "$scratch/initdb.log" >&2; exit 2; }
  for attempt in 1 2 3; do
    port="$(free_port)"
    if as_owner "$bin/pg_ctl" -D "$scratch/data" -l "$scratch/server.log" -w -t 30 \
         -o "-p $port -k $scratch -c listen_addresses=127.0.0.1" start >/dev/null; then break; fi
    [ "$attempt" = 3 ] && { cat "$scratch/server.log" >&2; exit 2; }
  done
  as_owner "$bin/createdb" -h "$scratch" -p "$port" -U wren wren_test
  export WREN_TEST_POSTGRES="postgresql://wren@127.0.0.1:$port/wren_test"
  echo "PostgreSQL for the tests: $WREN_TEST_POSTGRES (private cluster in $scratch, removed at exit)" >&2
fi
dotnet test "$root/Wren.slnx" -c Release "$@"
