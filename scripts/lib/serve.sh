# Sourced by the load scripts (loadtest.sh, soak.sh): starts `lookalike serve` on an index and
# waits until it answers. Expects BIN, PORT and a `die` function; honours SERVE_ARGS (extra
# `serve` options). Sets SERVER (its pid, killed when the script exits) and URL.

# start_server DB LOG
start_server() {
    local db="$1" log="$2"
    # shellcheck disable=SC2086 # SERVE_ARGS is a list of options
    "$BIN" --db "$db" serve --bind "127.0.0.1:$PORT" ${SERVE_ARGS:-} >"$log" 2>&1 &
    SERVER=$!
    trap 'kill "$SERVER" 2>/dev/null || true' EXIT
    URL="http://127.0.0.1:$PORT"
    for _ in $(seq 1 600); do
        curl -fs "$URL/healthz" >/dev/null 2>&1 && return 0
        kill -0 "$SERVER" 2>/dev/null || die "the server exited: $(tail -5 "$log")"
        sleep 0.1
    done
    die "the server did not come up"
}
