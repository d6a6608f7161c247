# Sourced by the benchmark scripts that start hub processes of their own: `$bin` is the
# m3shd binary. Gives them a temporary directory, the benchmark secrets, and
# `serve PORT DATABASE_URL`, which starts `m3shd serve` there, waits until it answers and
# leaves its pid in `$served`. Every process started so is killed on exit. A script may
# set `launcher` (an array run before the binary, `valgrind …` say) and `start_seconds`
# (how long a start may take; 10 s unless set).
dir=$(mktemp -d)
export M3SHDUP_TOKEN=master-token-for-benchmarks-0123456789 M3SHDUP_ENCRYPT_KEY=bench-key
export M3SHDUP_ALERTS_ENABLED=false
started=()
trap 'kill ${started[*]} 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
serve() {
    local log="$dir/hub-${#started[@]}.log"
    ${launcher[@]+"${launcher[@]}"} "$bin" serve --bind "127.0.0.1:$1" --database-url "$2" \
        >"$log" 2>&1 &
    served=$!
    started+=("$served")
    local deadline=$((SECONDS + ${start_seconds:-10}))
    # Ready once this process says it listens (so another process answering on a port
    # this one could not take is never measured in its place) and answers.
    until grep -q "m3shd listening on" "$log" && curl -sf "http://127.0.0.1:$1/api/health" >/dev/null; do
        if ! kill -0 "$served" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            echo "the hub on port $1 did not start; its log ends:" >&2
            tail -n 5 "$log" >&2
            exit 1
        fi
        sleep 0.05
    done
}
