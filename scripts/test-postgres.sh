#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server: initdb into a temporary directory as the
# `postgres` user, listening on a unix socket in that directory only (no TCP), one database
# `ai2in`; stopped and removed afterwards whatever happens. The command sees:
#
#   AI2IN_TEST_DATABASE   postgresql:///ai2in?host=DIR&user=postgres  (what --database takes)
#   AI2IN_TEST_PG_STOP    a command that stops the server (to test an outage)
#   AI2IN_TEST_PG_START   a command that starts it again
#
#   scripts/test-postgres.sh [--if-available] COMMAND [ARG...]
#
# --if-available: without a PostgreSQL server (Debian's postgresql package) or without root
# (initdb runs as `postgres`), run the command anyway, without those variables (the store's
# tests then skip PostgreSQL, saying so).
set -euo pipefail

if_available=0
if [ "${1:-}" = "--if-available" ]; then
  if_available=1
  shift
fi
[ $# -ge 1 ] || { echo "usage: $0 [--if-available] COMMAND [ARG...]" >&2; exit 2; }

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
why=""
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  why="no PostgreSQL server (initdb) installed: apt-get install postgresql"
elif [ "$(id -u)" != 0 ]; then
  why="not root (initdb runs as the postgres user)"
elif ! id postgres >/dev/null 2>&1; then
  why="no postgres user"
fi
if [ -n "$why" ]; then
  if [ $if_available = 1 ]; then
    echo "test-postgres: $why; running without PostgreSQL" >&2
    exec "$@"
  fi
  echo "test-postgres: $why" >&2
  exit 1
fi

dir=$(mktemp -d /tmp/ai2in-pg.XXXXXX)
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
  as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chown postgres: "$dir"
chmod 700 "$dir"   # the socket: only postgres and root may connect (auth is trust)

# A test server: no fsync, no TCP, the socket in $dir.
opts="-c listen_addresses= -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
as_pg "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 ||
  { cat "$dir/initdb.log" >&2; exit 1; }
start="runuser -u postgres -- $bindir/pg_ctl -D $dir/data -l $dir/server.log -w -o '$opts' start"
stop="runuser -u postgres -- $bindir/pg_ctl -D $dir/data -m fast -w stop"
eval "$start" >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
as_pg "$bindir/createdb" -h "$dir" -U postgres ai2in

export AI2IN_TEST_DATABASE="postgresql:///ai2in?host=$dir&user=postgres"
export AI2IN_TEST_PG_STOP="$stop"
export AI2IN_TEST_PG_START="$start"
echo "test-postgres: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') at $AI2IN_TEST_DATABASE" >&2
set +e
"$@"
rc=$?
set -e
exit $rc
