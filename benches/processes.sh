#!/bin/bash
# The hub suite (`m3shd bench --suite hub`: durable creates/s at 64 connections,
# heartbeats/s, claim and unblock latency) on SQLite, on PostgreSQL with one process, and
# on PostgreSQL with three processes (load sent to the leader, then to a follower), in
# one run on the same machine.
#
#   POSTGRES=postgres://user@host:port benches/processes.sh target/release/m3shd [seconds]
#
# Makes (and drops) databases m3shd_bench_one and m3shd_bench_three on that server.
set -euo pipefail
bin=$1
seconds=${2:-10}
: "${POSTGRES:?set POSTGRES to a PostgreSQL server URL whose user may create databases}"
source "$(dirname "$0")/hubs.sh"
fresh() {
    psql -q "$POSTGRES/postgres" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1 TEMPLATE template0 LOCALE 'C'"
}
stop_all() { kill "${started[@]}" 2>/dev/null; wait "${started[@]}" 2>/dev/null || true; started=(); }
bench() { # label port
    echo "== $1"
    "$bin" bench --suite hub --hub "http://127.0.0.1:$2" --seconds "$seconds" --claims 500 --chains 200
}
serve 18471 "$dir/hub.db"
bench "SQLite, one process" 18471
stop_all
fresh m3shd_bench_one
serve 18472 "$POSTGRES/m3shd_bench_one"
bench "PostgreSQL, one process" 18472
stop_all
fresh m3shd_bench_three
for port in 18473 18474 18475; do serve "$port" "$POSTGRES/m3shd_bench_three"; done
bench "PostgreSQL, three processes, load to the leader" 18473
bench "PostgreSQL, three processes, load to a follower" 18474
stop_all
psql -q "$POSTGRES/postgres" -c "DROP DATABASE m3shd_bench_one" -c "DROP DATABASE m3shd_bench_three"
