#!/bin/bash
# Failover time of three hub processes on one PostgreSQL database.
#
#   DATABASE_URL=postgres://… benches/failover.sh target/release/m3shd [kills]
#
# Starts three `m3shd serve` on the (empty) database, then `kills` times (default 5):
# finds the leader (`GET /api/health`), SIGKILLs it, and times until a task create sent
# to a surviving process is answered 201; the killed process is started again as a
# follower. Prints each time and the median.
set -euo pipefail
bin=$1
kills=${2:-5}
: "${DATABASE_URL:?set DATABASE_URL to an empty PostgreSQL database}"
source "$(dirname "$0")/hubs.sh"
auth="Authorization: Bearer $M3SHDUP_TOKEN"
ports=(18461 18462 18463)
declare -A pids
start() { serve "$1" "$DATABASE_URL"; pids[$1]=$served; }
for port in "${ports[@]}"; do start "$port"; done
times=()
for _ in $(seq "$kills"); do
    leader=""
    for port in "${ports[@]}"; do
        curl -sf -H "$auth" "http://127.0.0.1:$port/api/health" | grep -q '"role":"leader"' && leader=$port
    done
    [[ -n $leader ]] || { echo "no process leads" >&2; exit 1; }
    survivor=${ports[0]}; [[ $survivor == "$leader" ]] && survivor=${ports[1]}
    kill -9 "${pids[$leader]}"; wait "${pids[$leader]}" 2>/dev/null || true
    t0=$(date +%s.%N)
    until [[ $(curl -s -o /dev/null -w '%{http_code}' -H "$auth" -H 'content-type: application/json' \
        -d '{"title":"after the kill","prompt":"p"}' "http://127.0.0.1:$survivor/api/tasks") == 201 ]]; do
        sleep 0.01
    done
    took=$(echo "$(date +%s.%N) - $t0" | bc)
    times+=("$took")
    echo "failover: ${took} s"
    start "$leader"
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print "median of " NR ": " a[int((NR+1)/2)] " s"}'
