#!/bin/bash
# Instructions per durable create, per hub thread, counted by callgrind: a figure that
# does not move with the load of a shared machine (wall-clock figures move by a third).
#
#   benches/create_instructions.sh target/release/m3shd [seconds]
#
# Starts `m3shd serve` under `valgrind --tool=callgrind` on a temporary SQLite database,
# warms up with 3 s of creates, zeroes the counters, runs wrk (16 connections,
# benches/create.lua) for the given seconds (default 20), dumps the counters and divides
# each thread's instructions by the creates answered. Under valgrind the hub runs ~50
# times slower, so group commits hold fewer writes than at full speed: compare binaries
# with this script, not with create_cpu.sh's per-create CPU. SHA-256 runs without the
# CPU's SHA instructions under valgrind, so hashing weighs more here than on hardware.
set -euo pipefail
bin=$1
seconds=${2:-20}
here=$(cd "$(dirname "$0")" && pwd)
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
source "$here/hubs.sh"
port=${PORT:-18446}
launcher=(valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$dir/cg")
start_seconds=120
serve "$port" "$dir/hub.db"
hub=$served
url="http://127.0.0.1:$port/api/tasks"
wrk -t1 -c16 -d3s -s "$here/create.lua" "$url" >/dev/null
callgrind_control -z "$hub" >/dev/null 2>&1
out=$(wrk -t1 -c16 "-d${seconds}s" -s "$here/create.lua" "$url")
callgrind_control -d "$hub" >/dev/null 2>&1
creates=$(awk '/requests in/ {print $1}' <<<"$out")
grep -q "Non-2xx" <<<"$out" && { echo "some creates failed:" >&2; echo "$out" >&2; exit 1; }
echo "creates: $creates"
# Each thread's dump names it only by number: tell them apart by what they run.
for f in "$dir"/cg.1-*; do
    ir=$(awk '/^summary:/ {print $2}' "$f")
    [ "${ir:-0}" -gt 0 ] || continue
    if grep -q "Writer.*run" "$f"; then name=writer
    elif grep -q "h1.*dispatcher" "$f"; then name=http-worker
    elif grep -q "Dispatcher" "$f"; then name=actors
    else name=other; fi
    echo "$name $ir"
done | awk -v n="$creates" '
    { ir[$1] += $2; total += $2 }
    END { split("writer http-worker actors other", order, " ")
          for (i = 1; i <= 4; i++) if (order[i] in ir)
              printf "  %-12s %8.1fk instructions/create\n", order[i], ir[order[i]] / n / 1000
          printf "  %-12s %8.1fk instructions/create\n", "hub total", total / n / 1000 }'
