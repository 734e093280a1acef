#!/usr/bin/env bash
# A throwaway PostgreSQL server for load and fault scripts (the Rust tests have their own in
# tests/support/postgres.rs, which works the same way).
#
#   .ci/pg.sh start DIR [PORT]   initdb in DIR (once), start on 127.0.0.1:PORT (default
#                                55432) and a Unix socket in DIR, create the database
#                                `registrar`, print its URL
#   .ci/pg.sh stop DIR           immediate shutdown by the postmaster's PID, wait for it
#
# Uses the binaries of Debian's postgresql package (/usr/lib/postgresql/*/bin, off the PATH).
# initdb and postgres refuse to run as root: as root, DIR is given to the postgres user and
# both run as that user (every directory above DIR must be searchable by it). fsync is on (a crash test counts on it); set PG_FSYNC=off to trade
# that for speed.
set -euo pipefail

die() { echo "pg.sh: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: $0 start|stop DIR [PORT]"
command=$1
dir=$(realpath -m "$2")
port=${3:-55432}

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bin" ] && [ -x "$bin/initdb" ] || die "install PostgreSQL: apt-get install -y postgresql"

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$command" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
      chown postgres: "$dir"
      runuser -u postgres -- test -x "$dir" ||
        die "the postgres user cannot reach $dir: every directory above it must be searchable (chmod o+x)"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >"$dir/initdb.log"
    fi
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=${PG_FSYNC:-on} -c max_connections=200" \
      >/dev/null || { cat "$dir/server.log" >&2; die "the server did not start"; }
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres registrar 2>/dev/null || true
    echo "postgres://postgres@127.0.0.1:$port/registrar"
    ;;
  stop)
    pidfile="$dir/data/postmaster.pid"
    [ -f "$pidfile" ] || exit 0
    pid=$(head -n 1 "$pidfile")
    # SIGQUIT: PostgreSQL's immediate shutdown, which ends the backends too.
    kill -QUIT "$pid" 2>/dev/null || exit 0
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || exit 0
      sleep 0.1
    done
    die "the postmaster ($pid) did not stop"
    ;;
  *) die "usage: $0 start|stop DIR [PORT]" ;;
esac
