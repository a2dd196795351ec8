#!/usr/bin/env bash
# Mesh path benchmark (issue #9, part 2): web's app -> web's sidecar -> mTLS -> api's
# sidecar -> api, against web's app -> api directly, at a fixed request rate.
#
#   bench/mesh.sh [RATE] [SECONDS]         (defaults: 1000 requests/s, 10 s)
#
# Real processes: the agent, two sidecars (release build, pinned to CPU 0), nginx as
# the api (CPU 1), the fixed-rate load driver (CPU 1), which sends a direct and a
# mesh request at each tick (each path at RATE). api speaks http, so its sidecar
# runs the full L7 path (intention web -> api allow). Prints the added latency, the
# connections each sidecar opened and accepted (connection_events_total), and the
# sidecars' CPU time and peak RSS.
#
# For a timeline of slow moments: LOADGEN_SLOW_MS=5 writes every request slower than
# 5 ms to load.err, MESH_LOG=warn,tribune_proxy::mesh=debug logs every mesh
# connection with its handshake time (both in the run's temp directory).
# PROXY_FLAGS="-replay-buffer 0" passes extra flags to both sidecars. PERF=1 records
# the api sidecar's CPU (perf, cpu-clock, kernel included) during the measured run.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-1000}
SECS=${2:-10}
OUT=$(mktemp -d /tmp/tribune-mesh.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }
cargo build --release -q -p tribune
cargo build --release -q -p tribune-proxy --example loadgen
BIN=$PWD/target/release/tribune
LOAD=$PWD/target/release/examples/loadgen
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API=$(free_port); AMESH=$(free_port); WMESH=$(free_port); UPS=$(free_port)

cat > "$OUT/api.conf" <<EOF2
worker_processes 1; daemon off; pid $OUT/api.pid; error_log $OUT/api.err;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$API; location / { return 200 "ok\n"; } } }
EOF2
taskset -c 1 nginx -c "$OUT/api.conf" -p "$OUT" &

"$BIN" agent -dev -http-port 0 > "$OUT/agent.out" 2>&1 &
for _ in $(seq 50); do grep -q 'agent running' "$OUT/agent.out" 2>/dev/null && break; sleep 0.1; done
export TRIBUNE_HTTP_ADDR=$(awk '/HTTP addr:/ {print $3}' "$OUT/agent.out")
printf 'Kind = "service-defaults"\nName = "api"\nProtocol = "http"\n' > "$OUT/d.hcl"
printf 'Kind = "service-intentions"\nName = "api"\nSources = [{ Name = "web", Action = "allow" }]\n' > "$OUT/i.hcl"
printf 'service { name = "api" port = %s connect { sidecar_service { port = %s } } }\n' "$API" "$AMESH" > "$OUT/api.hcl"
printf 'service { name = "web" port = 8080 connect { sidecar_service { port = %s proxy { upstreams = [{ destination_name = "api", local_bind_port = %s }] } } } }\n' "$WMESH" "$UPS" > "$OUT/web.hcl"
"$BIN" config write "$OUT/d.hcl" >/dev/null
"$BIN" config write "$OUT/i.hcl" >/dev/null
"$BIN" services register "$OUT/api.hcl" >/dev/null
"$BIN" services register "$OUT/web.hcl" >/dev/null
TRIBUNE_LOG=${MESH_LOG:-warn} taskset -c 0 "$BIN" connect proxy -sidecar-for api -admin-bind 127.0.0.1:0 -workers 1 ${PROXY_FLAGS:-} > "$OUT/api-proxy.out" 2>&1 &
APID=$!
TRIBUNE_LOG=${MESH_LOG:-warn} taskset -c 0 "$BIN" connect proxy -sidecar-for web -admin-bind 127.0.0.1:0 -workers 1 ${PROXY_FLAGS:-} > "$OUT/web-proxy.out" 2>&1 &
WPID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$UPS/" >/dev/null 2>&1 && break; sleep 0.1; done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Paired: at each tick the driver sends one direct and one mesh request (each path at
# RATE), so both see the same timer lateness and machine noise; 1 s warm-up first.
a0=$(ticks $APID); w0=$(ticks $WPID)
if [ "${PERF:-0}" = 1 ]; then
  # The api sidecar's CPU by function, kernel included (cpu-clock: no PMU needed).
  perf record -q -e cpu-clock -F 4999 -g -p "$APID" -o "$OUT/perf-api.data" -- sleep "$((SECS + 1))" 2>/dev/null &
  PERF_PID=$!
fi
both=$(taskset -c 1 "$LOAD" "http://127.0.0.1:$API/,http://127.0.0.1:$UPS/" "$RATE" "$SECS" 2> "$OUT/load.err")
a1=$(ticks $APID); w1=$(ticks $WPID)
if [ -n "${PERF_PID:-}" ]; then wait "$PERF_PID" || true; echo "perf profile of the api sidecar: $OUT/perf-api.data"; fi
# Connections opened during the run (warm-up included): new connections on the mesh
# path cost TLS handshakes on the sidecars' core.
events() {
  local admin; admin=$(awk '/Admin listener:/ {print $3}' "$OUT/$1-proxy.out")
  curl -sf "http://$admin/stats/prometheus" | awk -v who="$1" '/^tribune_proxy_connection_events_total/ {
    match($0, /event="[a-z_]*"/); e = substr($0, RSTART + 7, RLENGTH - 8); if ($2 > 0) out = out " " e "=" $2 }
    END { print who " sidecar connections:" out }'
}
events web; events api
# Peak RSS counts the binary's file-backed pages (shared, clean: the kernel maps code
# in 64 KB blocks around each page touched); what the sidecar itself allocated is
# the anonymous part.
for who in api web; do
  pid=$APID; [ "$who" = web ] && pid=$WPID
  awk -v who="$who" '/^RssAnon/ {a = $2} /^RssFile/ {f = $2} END {
    printf "%s sidecar RSS after the run: anonymous %.1f MB, file-backed %.1f MB\n", who, a / 1024, f / 1024 }' "/proc/$pid/status"
done
# `connect proxy` runs as tribune-sidecar when that binary sits beside tribune.
MAPPED=$(readlink "/proc/$APID/exe")
echo "api sidecar, pages of the binary resident ($(basename "$MAPPED")):"; python3 bench/pages.py "$APID" "$MAPPED"
direct=$(echo "$both" | sed -n 1p); mesh=$(echo "$both" | sed -n 2p)
python3 - "$direct" "$mesh" "$((a1 - a0))" "$((w1 - w0))" "$(getconf CLK_TCK)" "$RATE" "$SECS" \
  "$(awk '/VmHWM/ {print $2}' /proc/$APID/status)" "$(awk '/VmHWM/ {print $2}' /proc/$WPID/status)" <<'EOF2'
import json, sys
d, m = json.loads(sys.argv[1]), json.loads(sys.argv[2])
at, wt, hz, rate, secs = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
print(f"| path | requests | errors | p50 ms | p90 ms | p99 ms | max ms | >= 10 ms |")
print(f"|---|---:|---:|---:|---:|---:|---:|---:|")
for name, r in (("direct", d), ("mesh", m)):
    print(f"| {name} | {r['requests']} | {r['errors']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {r['max_ms']:.3f} | {r['over_10ms']} |")
print(f"| **added by the mesh** | | | {m['p50_ms']-d['p50_ms']:.3f} | {m['p90_ms']-d['p90_ms']:.3f} | {m['p99_ms']-d['p99_ms']:.3f} | | |")
# The CPU counted spans the driver's warm-up second too, at the same rate.
n = rate * (secs + 1)
print(f"\napi sidecar: {at/hz:.2f} CPU s ({at/hz/n*1e6:.1f} µs/request), peak RSS {int(sys.argv[8])/1024:.1f} MB; "
      f"web sidecar: {wt/hz:.2f} CPU s ({wt/hz/n*1e6:.1f} µs/request), peak RSS {int(sys.argv[9])/1024:.1f} MB")
EOF2
