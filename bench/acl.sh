#!/usr/bin/env bash
# ACL cost per API call as tokens grow (issue #40): an agent with ACLs on (default
# deny, embedded store in a temp dir), then bench/acl.py.
#
#   bench/acl.sh [COUNTS...]        (default: 10 1000 10000)
#   BASE=path/to/other/tribune bench/acl.sh ...   runs that binary instead (A/B)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(mktemp -d /tmp/tribune-acl.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$OUT"' EXIT
BIN=${BASE:-target/release/tribune}
if [ -z "${BASE:-}" ]; then cargo build --release -q -p tribune; fi
cat > "$OUT/acl.hcl" <<'HCL'
acl {
  enabled = true
  default_policy = "deny"
  tokens { initial_management = "bench-root" }
}
HCL
"$BIN" agent -data-dir "$OUT/data" -http-port 0 -config-file "$OUT/acl.hcl" > "$OUT/agent.out" 2>&1 &
for _ in $(seq 100); do grep -q 'agent running' "$OUT/agent.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(awk '/HTTP addr:/ {print $3}' "$OUT/agent.out")
python3 bench/acl.py "$ADDR" bench-root "$@"
