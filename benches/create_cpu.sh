#!/bin/bash
# Durable creates against a fresh hub, with the CPU each create costs per hub thread.
#
#   benches/create_cpu.sh target/release/m3shd [seconds]
#   DATABASE_URL=postgres://… benches/create_cpu.sh target/release/m3shd [seconds]
#
# Starts `m3shd serve` on a temporary database (default settings: synchronous = FULL,
# group commit), warms up for 2 s, then runs wrk (64 connections, benches/create.lua) and
# reads each hub thread's user + system time from /proc before and after: CPU µs per create
# is robust to a shared machine's noise where creates/s is not.
set -euo pipefail
bin=$1
seconds=${2:-10}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/hubs.sh"
port=${PORT:-18445}
serve "$port" "${DATABASE_URL:-$dir/hub.db}"
hub=$served
url="http://127.0.0.1:$port/api/tasks"
wrk -t1 -c64 -d2s -s "$here/create.lua" "$url" >/dev/null
# Clock ticks per thread name (HTTP workers share one name and are summed).
ticks() {
    for t in /proc/$hub/task/*; do
        echo "$(tr ' ' _ <"$t/comm") $(awk '{print $14 + $15}' "$t/stat")"
    done | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
ticks >"$dir/before"
out=$(wrk -t1 -c64 "-d${seconds}s" --latency -s "$here/create.lua" "$url")
ticks >"$dir/after"
creates=$(awk '/requests in/ {print $1}' <<<"$out")
grep -E "Requests/sec|50%|99%|Non-2xx" <<<"$out"
hz=$(getconf CLK_TCK)
join "$dir/before" "$dir/after" | awk -v n="$creates" -v hz="$hz" '
    { us = ($3 - $2) * 1e6 / hz / n; total += us; if (us >= 0.05) printf "  %-16s %6.1f µs/create\n", $1, us }
    END { printf "  %-16s %6.1f µs/create\n", "hub total", total }'
