#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the tests (.ci/run uses it; so can a developer):
#   eval "$(scripts/pg-test-cluster.sh start [DIR] [PORT])"   prints `export TEST_DATABASE_URL=...`
#   scripts/pg-test-cluster.sh stop DIR
# The cluster belongs to the non-root user `postgres` (initdb refuses root), listens on
# 127.0.0.1 only and on a socket in DIR, trusts local connections (a test database, never
# anything else), and is created fresh in DIR (default: a new temp dir).
set -euo pipefail
cmd=${1:-start}
bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$bin/initdb" ] || { echo "pg-test-cluster: no PostgreSQL server binaries (install Debian's postgresql)" >&2; exit 1; }
as_pg () { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "$cmd" in
  start)
    dir=${2:-$(mktemp -d "${TMPDIR:-/tmp}/wph-pg.XXXXXX")}
    port=${3:-54329}
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    chmod 700 "$dir"
    as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    # In postgresql.conf, so a plain `pg_ctl start` (the tests restart it) keeps them.
    printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\nmax_connections = 300\n" "$port" "$dir" \
      | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres wph_test
    echo "export TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$port/wph_test"
    echo "export TEST_PG_DIR=$dir"
    echo "export TEST_PG_BIN=$bin"
    ;;
  stop)
    dir=${2:?usage: pg-test-cluster.sh stop DIR}
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start [DIR] [PORT] | stop DIR" >&2; exit 2 ;;
esac
