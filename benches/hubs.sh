# Sourced by the benchmark scripts that start hub processes of their own: `$bin` is the
# m3shd binary. Gives them a temporary directory for logs, the benchmark secrets, and
# `serve PORT DATABASE_URL`, which starts `m3shd serve` there, waits until it answers and
# leaves its pid in `$served`. Every process started so is killed on exit.
dir=$(mktemp -d)
export M3SHDUP_TOKEN=master-token-for-benchmarks-0123456789 M3SHDUP_ENCRYPT_KEY=bench-key
export M3SHDUP_ALERTS_ENABLED=false
started=()
trap 'kill ${started[*]} 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
serve() {
    "$bin" serve --bind "127.0.0.1:$1" --database-url "$2" >>"$dir/log" 2>&1 &
    served=$!
    started+=("$served")
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$1/api/health" >/dev/null && return; sleep 0.05; done
    echo "the hub on port $1 did not start (log: $dir/log)" >&2
    exit 1
}
