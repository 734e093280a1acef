# Sourced by the CI scripts that need a live registrar on loopback (.ci/schemathesis.sh,
# .ci/clients/run.sh): `serve_registrar BIN PORT NAME` starts BIN on a fresh data dir in a
# temp dir with a made-up operator key, sets WORK (the temp dir), OPERATOR, SERVER (its PID)
# and BASE, and returns once it answers /healthz. On exit the server is stopped by its PID,
# its log is shown if it panicked, and WORK is removed.
serve_registrar() {
    local bin=$1 port=$2 name=$3
    WORK=$(mktemp -d)
    OPERATOR="op_${name}_$(date +%s%N)"
    REGISTRAR_OPERATOR_KEY="$OPERATOR" "$bin" serve --bind "127.0.0.1:$port" \
        --data-dir "$WORK/db" > "$WORK/server.log" 2>&1 &
    SERVER=$!
    trap stop_registrar EXIT
    BASE="http://127.0.0.1:$port"
    # Ready when /healthz answers (python: no curl needed); 30 s at most.
    python3 - "$BASE" <<'PY'
import sys, time, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=1)
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("registrar did not answer /healthz within 30 s")
PY
}

stop_registrar() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    if grep -q "panicked" "$WORK/server.log"; then
        echo "the server panicked:"; grep -A5 panicked "$WORK/server.log" | head -40
    fi
    rm -rf "$WORK"
}
