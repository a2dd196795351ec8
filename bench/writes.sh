#!/usr/bin/env bash
# Agent write throughput as the store grows (issue #9, part 3): N services, each a
# service-defaults (http) and a service-intentions entry with an L7 permission,
# written one after the other over HTTP; prints writes/s per fifth of the run.
#
#   bench/writes.sh [N] [dev|durable]        (defaults: 1000 services = 2000 entries, durable)
#
# durable: a data directory in a temp dir (redb, fsync per commit); dev: in memory.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
MODE=${2:-durable}
OUT=$(mktemp -d /tmp/tribune-writes.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
cargo build --release -q -p tribune
if [ "$MODE" = dev ]; then
  target/release/tribune agent -dev -http-port 0 > "$OUT/agent.out" 2>&1 &
else
  target/release/tribune agent -data-dir "$OUT/data" -http-port 0 > "$OUT/agent.out" 2>&1 &
fi
for _ in $(seq 100); do grep -q 'agent running' "$OUT/agent.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(awk '/HTTP addr:/ {print $3}' "$OUT/agent.out")
python3 bench/writes.py "$ADDR" "$N"
