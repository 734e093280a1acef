#!/usr/bin/env bash
# The change feed's read rate (issue 19: "the feed serves ≥ 20,000 events/s to one reader").
#
#   benches/load/feed.sh                 # release build, 20,000 registrations seeded
#   RECORDS=5000 ROUNDS=3 benches/load/feed.sh
#
# Starts registrar (release, the embedded engine, --durability sync) on loopback with a
# temporary data dir, seeds RECORDS registrations and their catalog through the API (the load
# benchmark's seed.py: every write is one change event), then one reader reads the whole feed
# from the start, ROUNDS times each way: JSON pages (`GET /changes/bench?after=&limit=1000`,
# following `cursor`) and one server-sent event stream (`Accept: text/event-stream`, counting
# events until it has them all). Prints events/s per round and the median. Stops what it
# started and removes its data.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RECORDS=${RECORDS:-20000}
ROUNDS=${ROUNDS:-3}
BIN=${1:-}
if [ -z "$BIN" ]; then
  (cd "$ROOT" && cargo build --release --quiet)
  BIN="$ROOT/target/release/registrar"
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/registrar-feed.XXXXXX")
SERVER=
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
OPERATOR="op_feed_$(date +%s%N)"
REGISTRAR_OPERATOR_KEY="$OPERATOR" RUST_LOG=warn "$BIN" serve --bind "127.0.0.1:$PORT" \
  --data-dir "$WORK/data" >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 300); do curl -fsS "$URL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
post() { curl -fsS -H "Authorization: Bearer $OPERATOR" -H 'Content-Type: application/json' -d "$2" "$URL$1"; }
post /admin/tenants '{"id": "bench"}' >/dev/null
KEY=$(post /admin/tenants/bench/keys '{"role": "write", "name": "feed"}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
mkdir -p "$WORK/files"
echo "seeding $RECORDS registrations …" >&2
python3 "$HERE/seed.py" registrar --url "$URL" --auth "Bearer $KEY" --out "$WORK/files" \
  --records "$RECORDS" --students $((RECORDS / 10)) --courses $((RECORDS / 100)) \
  --offerings $((RECORDS / 20)) >/dev/null
python3 - "$URL" "$KEY" "$ROUNDS" <<'PY'
import http.client, json, statistics, sys, time, urllib.parse

url, key, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
host = urllib.parse.urlsplit(url)
auth = {"Authorization": "Bearer " + key}

def pages():
    conn = http.client.HTTPConnection(host.hostname, host.port)
    after, count = 0, 0
    start = time.perf_counter()
    while True:
        conn.request("GET", f"/changes/bench?after={after}&limit=1000", headers=auth)
        response = conn.getresponse()
        page = json.loads(response.read())
        assert response.status == 200, page
        count += page["Count"]
        if page["cursor"] == after:
            return count, time.perf_counter() - start
        after = page["cursor"]

def stream(total):
    conn = http.client.HTTPConnection(host.hostname, host.port)
    start = time.perf_counter()
    conn.request("GET", "/changes/bench?after=0", headers={**auth, "Accept": "text/event-stream"})
    response = conn.getresponse()
    assert response.status == 200, response.status
    count = 0
    while count < total:
        line = response.fp.readline()
        if not line:
            raise SystemExit("the stream ended early")
        if line.startswith(b"id:"):
            count += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return count, elapsed

rates = {"JSON pages": [], "SSE stream": []}
for r in range(rounds):
    n, s = pages()
    rates["JSON pages"].append(n / s)
    print(f"round {r + 1} JSON pages: {n} events in {s:.2f} s = {n / s:,.0f} events/s", file=sys.stderr)
    m, t = stream(n)
    rates["SSE stream"].append(m / t)
    print(f"round {r + 1} SSE stream: {m} events in {t:.2f} s = {m / t:,.0f} events/s", file=sys.stderr)
for way, values in rates.items():
    print(f"{way}: median {statistics.median(values):,.0f} events/s over {rounds} rounds ({n} events; goal ≥ 20,000)")
PY
