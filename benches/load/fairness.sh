#!/usr/bin/env bash
# Fairness between tenants (issue 13): the victim tenant's GET p50/p99 alone and under another
# tenant's flood, with the server's fairness settings off ("before") and at their defaults
# ("after"), interleaved round by round. Loopback only; every phase is bounded in time and
# each server is killed when its run ends. See benches/load/fairness.py and docs/SECURITY.md.
#
#   benches/load/fairness.sh                      # 3 rounds, 4 s phases, GET and create floods
#   ROUNDS=1 SECONDS_PER_PHASE=2 benches/load/fairness.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
ROUNDS=${ROUNDS:-3}
SECONDS_PER_PHASE=${SECONDS_PER_PHASE:-4}
BEFORE="--max-in-flight-per-tenant 0 --blocking-per-tenant 0"

cargo build --release --bin registrar --manifest-path "$ROOT/Cargo.toml" >&2
for flood in "get 64" "create 128"; do
  set -- $flood
  python3 "$HERE/fairness.py" run --binary "$CARGO_TARGET_DIR/release/registrar" \
    --rounds "$ROUNDS" --seconds "$SECONDS_PER_PHASE" --flood-kind "$1" --flood-conns "$2" \
    --configs "$BEFORE" ""
done
