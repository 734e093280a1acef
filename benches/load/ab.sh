#!/usr/bin/env bash
# Before/after: two registrar binaries on one seeded data set, scenario by scenario, runs
# alternated (A, B, A, B, …) so that the machine's drift lands on both. For a change that must
# not cost speed (e.g. issue 16's "every scenario within 5 %"):
#
#   benches/load/ab.sh OLD_BINARY NEW_BINARY
#   SCENARIOS="get list" ROUNDS=3 DURATION=8 RECORDS=5000 benches/load/ab.sh A B
#
# The data set is seeded once, by A (an older build cannot read what a newer one wrote), and
# every run starts its binary on a fresh copy of it, so writes of one run do not change what
# the next reads. SEED_EACH=1 seeds the same data set twice, once by each binary: B then
# runs on what it wrote itself (in its own stored format) rather than on A's, which measures
# a change of format without its one-time upgrade work (each record's first write under B). Uses the load benchmark's seed.py and load.lua; wrk from Debian.
# Prints one line per run and a table of medians (req/s, p50, p99) with B/A.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
A=$(realpath "$1")
B=$(realpath "$2")
DURATION=${DURATION:-8}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-2}
RECORDS=${RECORDS:-5000}
SCENARIOS=${SCENARIOS:-get list search patch create}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/registrar-ab.XXXXXX")
SERVER=
stop() {
  if [ -n "$SERVER" ]; then
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=
  fi
}
trap 'stop; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
OPERATOR="op_ab_$(date +%s%N)"

start() { # BINARY DATA_DIR
  REGISTRAR_OPERATOR_KEY="$OPERATOR" RUST_LOG=info "$1" serve --bind "127.0.0.1:$PORT" \
    --data-dir "$2" >>"$WORK/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 300); do
    curl -fsS "$URL/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the server did not start:" >&2
  tail -20 "$WORK/server.log" >&2
  exit 1
}

post() { curl -fsS -H "Authorization: Bearer $OPERATOR" -H 'Content-Type: application/json' -d "$2" "$URL$1"; }

seed() { # BINARY SIDE: the data set in $WORK/seeded-SIDE, its files in $WORK/files-SIDE
  start "$1" "$WORK/seeded-$2"
  post /admin/tenants '{"id": "bench"}' >/dev/null
  KEY=$(post /admin/tenants/bench/keys '{"role": "write", "name": "load"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
  mkdir -p "$WORK/files-$2"
  local creates=$(( (ROUNDS * DURATION * 2 + 4) * 25000 ))
  python3 "$HERE/seed.py" registrar --url "$URL" --auth "Bearer $KEY" --out "$WORK/files-$2" \
    --records "$RECORDS" --students $((RECORDS / 10)) --courses $((RECORDS / 100)) \
    --offerings $((RECORDS / 20)) --create-students $(( creates / (RECORDS / 20) + 1 )) >/dev/null
  stop
}
seed "$A" A
if [ "${SEED_EACH:-0}" = 1 ]; then
  seed "$B" B
else
  ln -s "$WORK/seeded-A" "$WORK/seeded-B"
  ln -s "$WORK/files-A" "$WORK/files-B"
fi

K=0
printf 'scenario\tbinary\tround\trps\tp50_ms\tp99_ms\n' >"$WORK/results.tsv"
for scenario in $SCENARIOS; do
  for round in $(seq "$ROUNDS"); do
    for side in A B; do
      bin=$A
      [ "$side" = B ] && bin=$B
      rm -rf "$WORK/run" && cp -a "$WORK/seeded-$side/." "$WORK/run"
      start "$bin" "$WORK/run"
      # One second unrecorded, then the measured run.
      wrk -t"$THREADS" -c"$CONNECTIONS" -d1s -s "$HERE/load.lua" "$URL" -- registrar "$scenario" \
        "$WORK/files-$side" "$K" "$THREADS" >"$WORK/warm.txt" 2>&1 || true
      K=$(( $(grep -o 'max_k=[0-9]*' "$WORK/warm.txt" | cut -d= -f2 || echo "$K") + 1 ))
      out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s -s "$HERE/load.lua" \
        "$URL" -- registrar "$scenario" "$WORK/files-$side" "$K" "$THREADS")
      stop
      line=$(grep '^RESULT ' <<<"$out")
      declare -A r=()
      for kv in ${line#RESULT }; do r[${kv%%=*}]=${kv#*=}; done
      K=$(( r[max_k] + 1 ))
      p50=$(awk "BEGIN {print ${r[p50_us]} / 1000}")
      p99=$(awk "BEGIN {print ${r[p99_us]} / 1000}")
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$side" "$round" "${r[rps]}" "$p50" "$p99" \
        >>"$WORK/results.tsv"
      printf '%-7s %s round %s: %9.0f req/s  p50 %6.2f ms  p99 %7.2f ms  errors %s non-2xx %s\n' \
        "$scenario" "$side" "$round" "${r[rps]}" "$p50" "$p99" "${r[errors]}" "${r[non2xx]}" >&2
    done
  done
done

python3 - "$WORK/results.tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print(f"{'scenario':8} {'A req/s':>10} {'B req/s':>10} {'B/A':>6} {'A p50':>7} {'B p50':>7} {'A p99':>7} {'B p99':>7}")
for scenario in dict.fromkeys(r["scenario"] for r in rows):
    med = {}
    for side in "AB":
        mine = [r for r in rows if r["scenario"] == scenario and r["binary"] == side]
        med[side] = {k: statistics.median(float(r[k]) for r in mine) for k in ("rps", "p50_ms", "p99_ms")}
    a, b = med["A"], med["B"]
    print(f"{scenario:8} {a['rps']:10.0f} {b['rps']:10.0f} {b['rps'] / a['rps']:6.3f} "
          f"{a['p50_ms']:7.2f} {b['p50_ms']:7.2f} {a['p99_ms']:7.2f} {b['p99_ms']:7.2f}")
PY
