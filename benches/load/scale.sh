#!/usr/bin/env bash
# How GET by id and lookup by student hold up as one tenant grows: the same wrk runs
# (benches/load/load.lua, registrar side only) against the search bench's data sets of
# different sizes, one after the other, plus start-up time, resident memory and disk use.
#
#   benches/load/scale.sh                          # 20,000 and 1,000,000 registrations
#   SIZES="10000 1000000" DURATION=10 benches/load/scale.sh
#
# The data sets are the ones `cargo bench --bench search_batch` builds through the store's
# write path into target/bench-data/<size> (one tenant `bench`, 1,000 contacts, size/1000
# offerings, ~0.4 KB registrations with every index entry); a missing one is built first
# (about 5 minutes for 1,000,000 on this machine). The server runs on the data set itself
# (it adds one read key, which later bench runs ignore). Results: target/load-bench/scale-<time>/.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SIZES=${SIZES:-"20000 1000000"}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-2}
IDS=${IDS:-20000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RESULTS=${RESULTS:-$ROOT/target/load-bench/scale-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$RESULTS"
PID=""

log() { echo "scale: $*" >&2; }
cleanup() { [[ -n "$PID" ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; true; }
trap cleanup EXIT INT TERM

command -v wrk >/dev/null || { log "wrk is missing: run benches/load/run.sh once (it installs it)"; exit 1; }
(cd "$ROOT" && cargo build --quiet --release --bin registrar)
REGISTRAR="$CARGO_TARGET_DIR/release/registrar"

printf 'size\tscenario\tround\trps\tp50_us\tp99_us\terrors\n' >"$RESULTS/results.tsv"
printf 'size\tstart_s\trss_start_mb\trss_end_mb\tdisk_bytes\n' >"$RESULTS/footprint.tsv"

for size in $SIZES; do
  data="$ROOT/target/bench-data/$size"
  if [[ ! -f "$data/complete.json" ]]; then
    log "building the $size-registration data set (cargo bench --bench search_batch)"
    (cd "$ROOT" && REGISTRAR_BENCH_SIZES=$size cargo bench --quiet --bench search_batch -- --list >/dev/null)
  fi
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  url="http://127.0.0.1:$port"
  operator="op_scale_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  started=$(date +%s.%N)
  RUST_LOG=warn "$REGISTRAR" serve --bind "127.0.0.1:$port" --data-dir "$data/db" \
    --operator-key "$operator" >"$RESULTS/registrar-$size.log" 2>&1 &
  PID=$!
  until curl -fsS -o /dev/null "$url/healthz" 2>/dev/null; do
    kill -0 "$PID" 2>/dev/null || { log "registrar exited; see $RESULTS/registrar-$size.log"; exit 1; }
    sleep 0.05
  done
  start_s=$(python3 -c "print(round($(date +%s.%N) - $started, 2))")
  rss_start=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$PID/status")
  log "$size: up in ${start_s} s, RSS ${rss_start} MB; collecting ids"
  dir="$RESULTS/ids-$size"
  mkdir -p "$dir"
  # Ids and students from lookups by offering, spread over the whole data set.
  python3 - "$url" "$operator" "$data/complete.json" "$dir" "$IDS" <<'EOF'
import json, sys, urllib.request
url, operator, offerings_file, out, wanted = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
def call(method, path, key, body=None):
    req = urllib.request.Request(url + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
key = call("POST", "/admin/tenants/bench/keys", operator, {"role": "read", "name": "scale"})["key"]
offerings = json.load(open(offerings_file))
per = max(1, wanted // len(offerings))
step = max(1, len(offerings) * per // wanted)
ids, students = [], set()
for offering in offerings[::step]:
    page = call("GET", f"/courseRegistrations/bench/courseOffering/{offering}?limit={min(per, 1000)}", key)
    for item in page["Items"]:
        ids.append(item["id"])
        students.add(item["student_id"])
    if len(ids) >= wanted:
        break
open(f"{out}/auth", "w").write(f"Bearer {key}\n")
open(f"{out}/registrations.txt", "w").write("\n".join(ids) + "\n")
open(f"{out}/students.txt", "w").write("\n".join(sorted(students)) + "\n")
print(f"{len(ids)} ids, {len(students)} students", file=sys.stderr)
EOF
  for scenario in get list; do
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$HERE/load.lua" "$url" -- registrar "$scenario" "$dir" 0 "$THREADS" >/dev/null
    for round in $(seq 1 "$ROUNDS"); do
      line=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -s "$HERE/load.lua" "$url" -- registrar "$scenario" "$dir" 0 "$THREADS" | grep '^RESULT')
      value() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$size" "$scenario" "$round" "$(value rps)" "$(value p50_us)" "$(value p99_us)" "$(($(value errors) + $(value non2xx)))" >>"$RESULTS/results.tsv"
      log "$size $scenario round $round: $(value rps) req/s, p99 $(value p99_us) µs, errors $(value errors), non-2xx $(value non2xx)"
    done
  done
  rss_end=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$PID/status")
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  disk=$(du -sb "$data/db" | cut -f1)
  printf '%s\t%s\t%s\t%s\t%s\n' "$size" "$start_s" "$rss_start" "$rss_end" "$disk" >>"$RESULTS/footprint.tsv"
done

python3 - "$RESULTS" <<'EOF'
import csv, statistics, sys
res = sys.argv[1]
rows = list(csv.DictReader(open(f"{res}/results.tsv"), delimiter="\t"))
foot = {r["size"]: r for r in csv.DictReader(open(f"{res}/footprint.tsv"), delimiter="\t")}
sizes = list(dict.fromkeys(r["size"] for r in rows))
med = lambda size, sc, f: statistics.median(float(r[f]) for r in rows if r["size"] == size and r["scenario"] == sc)
print("| registrations | GET by id req/s | p99 ms | lookup by student (10) req/s | p99 ms | start-up s | RSS start / after MB | disk bytes per registration |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in sizes:
    f = foot[s]
    print(f"| {int(s):,} | {med(s,'get','rps'):,.0f} | {med(s,'get','p99_us')/1000:.2f} | {med(s,'list','rps'):,.0f} | {med(s,'list','p99_us')/1000:.2f} | {f['start_s']} | {f['rss_start_mb']} / {f['rss_end_mb']} | {int(f['disk_bytes'])/int(s):,.0f} |")
if len(sizes) > 1:
    a, b = sizes[0], sizes[-1]
    for sc, name in (("get", "GET by id"), ("list", "lookup")):
        print(f"\n{name}: {int(b):,} serves {med(b,sc,'rps')/med(a,sc,'rps'):.2f}x the req/s of {int(a):,} (goal: within 2x, i.e. >= 0.5x)", end="")
    print()
errors = [r for r in rows if r["errors"] not in ("0", "")]
for r in errors:
    print(f"WARNING: {r['size']} {r['scenario']} round {r['round']}: {r['errors']} errors")
EOF
