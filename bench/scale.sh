#!/usr/bin/env bash
# The control plane at scale (issue #40): an agent with ACLs on (default deny,
# embedded store in a temp dir), then crates/tribune/examples/scale.rs: N simulated
# sidecars holding the sidecar's blocking policy query, T tokens, E intentions.
#
#   bench/scale.sh [WATCHERS TOKENS ENTRIES]      (default: 1000 10 10)
#   ETCD=1 bench/scale.sh ...                     3 agents on a 3-member etcd
#   WATCH=health bench/scale.sh ...               the watchers hold /v1/health/connect/<svc>
#                                                 (ENTRIES services registered with sidecars)
#   QUERIES=3 bench/scale.sh ...                  each watcher also holds its leaf's and one
#                                                 upstream's query, as a sidecar does
#   H2=1 bench/scale.sh ...                       the watchers speak as the sidecar does
#                                                 (HTTP/2: their queries share a connection)
#
# Needs `ulimit -n` above WATCHERS + 100 for the agent and the generator.
set -euo pipefail
cd "$(dirname "$0")/.."
WATCHERS=${1:-1000} TOKENS=${2:-10} ENTRIES=${3:-10}
OUT=$(mktemp -d /tmp/tribune-scale.XXXXXX)
# Agents start in command substitutions (not jobs of this shell): killed by pid file.
# KEEP=1 keeps the agents' and etcd's logs in $OUT.
trap 'kill $(jobs -p) $(cat "$OUT"/*.pid 2>/dev/null) 2>/dev/null || true; wait 2>/dev/null; [ -n "${KEEP:-}" ] && echo "logs kept in $OUT" || rm -rf "$OUT"' EXIT
ulimit -n "$(( WATCHERS * ${QUERIES:-1} + 4096 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# Built with the etcd store either way (one build for both runs; needs protoc).
command -v protoc >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null; }
cargo build --release -q -p tribune --features etcd --bin tribune --example scale
BIN=target/release/tribune
cat > "$OUT/agent.hcl" <<'HCL'
acl {
  enabled = true
  default_policy = "deny"
  tokens { initial_management = "scale-root" }
}
limits { http_max_conns_per_client = 0 }
HCL
start_agent() { # NAME EXTRA-ARGS...
  local name=$1; shift
  "$BIN" agent -http-port 0 -config-file "$OUT/agent.hcl" "$@" > "$OUT/$name.out" 2>&1 &
  echo $! > "$OUT/$name.pid"
  for _ in $(seq 300); do grep -q 'agent running' "$OUT/$name.out" 2>/dev/null && break; sleep 0.1; done
  awk '/HTTP addr:/ {print $3}' "$OUT/$name.out"
}
if [ -z "${ETCD:-}" ]; then
  ADDRS=$(start_agent a -data-dir "$OUT/a")
  PIDS=$(cat "$OUT/a.pid")
else
  command -v etcd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; }
  port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  CLUSTER= CLIENTS=
  for m in 1 2 3; do
    eval "P$m=$(port) C$m=$(port)"
  done
  CLUSTER="m1=http://127.0.0.1:$P1,m2=http://127.0.0.1:$P2,m3=http://127.0.0.1:$P3"
  for m in 1 2 3; do
    eval "peer=\$P$m client=\$C$m"
    etcd --name "m$m" --data-dir "$OUT/etcd$m" --listen-peer-urls "http://127.0.0.1:$peer" \
      --initial-advertise-peer-urls "http://127.0.0.1:$peer" --listen-client-urls "http://127.0.0.1:$client" \
      --advertise-client-urls "http://127.0.0.1:$client" --initial-cluster "$CLUSTER" \
      --initial-cluster-state new > "$OUT/etcd$m.out" 2>&1 &
    CLIENTS="${CLIENTS:+$CLIENTS,}http://127.0.0.1:$client"
  done
  ADDRS= PIDS=
  for a in a b c; do
    addr=$(start_agent "$a" -etcd-endpoints "$CLIENTS")
    ADDRS="${ADDRS:+$ADDRS,}$addr"
    PIDS="${PIDS:+$PIDS,}$(cat "$OUT/$a.pid")"
  done
fi
# Every loop in the generator is bounded; the whole run is too.
timeout 3600 target/release/examples/scale --agent "$ADDRS" --agent-pid "$PIDS" --token scale-root \
  --watchers "$WATCHERS" --tokens "$TOKENS" --entries "$ENTRIES" --watch "${WATCH:-snapshot}" \
  --queries "${QUERIES:-1}" --h2 "${H2:-0}"
