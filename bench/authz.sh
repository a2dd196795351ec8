#!/usr/bin/env bash
# External authorization cost (issue #44, item 6): nginx + auth_request asking
# `tribune connect authz`, against nginx alone (a plain proxy that checks nothing)
# and against Tribune's sidecar (edge listener); then connect authz asked directly
# as Envoy asks it, over gRPC (ext_authz v3, h2c) and in the HTTP form, by the load
# generator `crates/tribune/examples/checks.rs`. All with the bench policy
# (RS256 jwt-provider + service-intentions: PathPrefix /api/ and role = admin) and
# one repeated valid token (a cached verification).
#
#   bench/authz.sh [DURATION_SECONDS] [CONNECTIONS]      (defaults: 10 s, 32)
#
# The systems under test are pinned to CPU 0 (nginx's worker and connect authz share
# it); wrk, the upstream (nginx returning a fixed 200) and the agent to CPU 1.
# Reports requests/s, p50, p99 and CPU seconds per 10 000 requests of each process
# under test; the CPU of a check is connect authz's alone, compared with the
# sidecar's per request (the target: at most 1.5x). Writes bench/results-authz.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-32}
OUT=$(mktemp -d /tmp/tribune-bench-authz.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; pkill -f "$OUT" 2>/dev/null || true' EXIT

. bench/common.sh
bench_setup "$OUT" nginx wrk
BIN=$PWD/target/release/tribune
cargo build --release -q -p tribune --example checks
CHECKS=$PWD/target/release/examples/checks
UP=$(free_port); AG=$(free_port); AZ=$(free_port); NGA=$(free_port); NGX=$(free_port)
TRI=$(free_port); ADM=$(free_port)

cat > "$OUT/upstream.conf" <<EOF
worker_processes 1; daemon off; pid $OUT/upstream.pid; error_log $OUT/upstream.err;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } } }
EOF
taskset -c 1 nginx -c "$OUT/upstream.conf" -p "$OUT" &

# The agent, with the bench policy's entries.
TRIBUNE_LOG=warn taskset -c 1 "$BIN" agent -dev -http-port "$AG" > "$OUT/agent.out" 2>&1 &
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$AG/v1/status/leader" >/dev/null && break; sleep 0.2; done
curl -sf -X PUT -d '{"Kind":"service-defaults","Name":"api","Protocol":"http"}' "http://127.0.0.1:$AG/v1/config" >/dev/null
python3 - "$OUT/tribune.json" "$AG" <<'EOF'
import json, sys, urllib.request
doc = json.load(open(sys.argv[1]))
for e in doc["Entries"]:
    req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[2]}/v1/config", data=json.dumps(e).encode(), method="PUT")
    assert urllib.request.urlopen(req).read() == b"true", e
EOF

GR=$(free_port)
TRIBUNE_LOG=warn taskset -c 0 "$BIN" connect authz -service api -http-listener "127.0.0.1:$AZ" \
  -grpc-listener "127.0.0.1:$GR" -admin-bind 127.0.0.1:0 -state-dir "$OUT/state" -http-addr "127.0.0.1:$AG" > "$OUT/authz.out" 2>&1 &

# nginx + auth_request (the guide's recipe, with keep-alive to both sides).
mkdir -p "$OUT/tmp"
cat > "$OUT/nginx-authz.conf" <<EOF
worker_processes 1; daemon off; pid $OUT/nginx-authz.pid; error_log $OUT/nginx-authz.err;
events { worker_connections 4096; }
http { access_log off;
  client_body_temp_path $OUT/tmp; proxy_temp_path $OUT/tmp; fastcgi_temp_path $OUT/tmp;
  uwsgi_temp_path $OUT/tmp; scgi_temp_path $OUT/tmp;
  upstream up { server 127.0.0.1:$UP; keepalive 64; }
  upstream authz { server 127.0.0.1:$AZ; keepalive 64; }
  server { listen 127.0.0.1:$NGA;
    location / {
      auth_request /_tribune;
      proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
    }
    location = /_tribune {
      internal;
      proxy_pass http://authz/nginx; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI \$request_uri;
      proxy_set_header X-Original-Method \$request_method;
    } } }
EOF
taskset -c 0 nginx -c "$OUT/nginx-authz.conf" -p "$OUT" &

# nginx alone.
cat > "$OUT/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $OUT/nginx.pid; error_log $OUT/nginx.err;
events { worker_connections 4096; }
http { access_log off;
  upstream up { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NGX;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
taskset -c 0 nginx -c "$OUT/nginx.conf" -p "$OUT" &

# The sidecar, the same policy from the snapshot file.
TRIBUNE_LOG=warn taskset -c 0 "$BIN" connect proxy -config "$OUT/tribune.json" \
  -local-service-address "127.0.0.1:$UP" -edge-listener "127.0.0.1:$TRI" \
  -admin-bind "127.0.0.1:$ADM" -workers 1 > "$OUT/tribune.out" 2>&1 &
sleep 3

pids_on() { # the processes serving on port $1 (nginx: its worker)
  ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}
cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
TICKS=$(getconf CLK_TCK)
TOKEN=$OUT/token-1.txt
AUTHZ_PIDS=$(pids_on "$AZ")

RESULTS="$OUT/rows.tsv"
: > "$RESULTS"
run() { # system port
  local system=$1 port=$2 pids before after azb aza rps p50 p99 reqs code
  pids=$(pids_on "$port")
  TOKENS_FILE=$TOKEN taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s bench/tokens.lua "http://127.0.0.1:$port" >/dev/null
  before=$(cpu_ticks $pids); azb=$(cpu_ticks $AUTHZ_PIDS)
  TOKENS_FILE=$TOKEN taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s bench/tokens.lua \
    "http://127.0.0.1:$port" > "$OUT/wrk.txt"
  after=$(cpu_ticks $pids); aza=$(cpu_ticks $AUTHZ_PIDS)
  rps=$(awk '/Requests\/sec/ {print $2}' "$OUT/wrk.txt")
  reqs=$(awk '/requests in/ {print $1}' "$OUT/wrk.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$OUT/wrk.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$OUT/wrk.txt")
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(head -1 "$TOKEN")" "http://127.0.0.1:$port/api/items")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$system" "$rps" "$p50" "$p99" \
    "$(python3 -c "print(f'{($after-$before)/$TICKS/$reqs*10000:.3f}')")" \
    "$(python3 -c "print(f'{($aza-$azb)/$TICKS/$reqs*10000:.3f}')")" "$code" >> "$RESULTS"
}
direct() { # form: connect authz asked directly, as Envoy would (gRPC or HTTP form)
  local form=$1 before after line n
  taskset -c 1 "$CHECKS" --form "$form" --addr "127.0.0.1:$([ "$form" = grpc ] && echo "$GR" || echo "$AZ")" \
    --token-file "$TOKEN" --path /api/items --concurrency "$CONNS" --seconds 2 >/dev/null
  before=$(cpu_ticks $AUTHZ_PIDS)
  line=$(taskset -c 1 "$CHECKS" --form "$form" --addr "127.0.0.1:$([ "$form" = grpc ] && echo "$GR" || echo "$AZ")" \
    --token-file "$TOKEN" --path /api/items --concurrency "$CONNS" --seconds "$DURATION")
  after=$(cpu_ticks $AUTHZ_PIDS)
  echo "$line" | grep -q ' errors=0$' || { echo "authz $form: answers other than allow: $line" >&2; exit 1; }
  n=$(echo "$line" | sed 's/.*checks=\([0-9]*\).*/\1/')
  printf 'authz-%s\t%s\t%sus\t%sus\t%s\t%s\t200\n' "$form" \
    "$(echo "$line" | sed 's/.*per_second=\([0-9]*\).*/\1/')" \
    "$(echo "$line" | sed 's/.*p50_us=\([0-9]*\).*/\1/')" \
    "$(echo "$line" | sed 's/.*p99_us=\([0-9]*\).*/\1/')" \
    "$(python3 -c "print(f'{($after-$before)/$TICKS/$n*10000:.3f}')")" \
    "$(python3 -c "print(f'{($after-$before)/$TICKS/$n*10000:.3f}')")" >> "$RESULTS"
}
for round in $(seq "${ROUNDS:-1}"); do
  run nginx "$NGX"
  run nginx+authz "$NGA"
  run sidecar "$TRI"
  direct grpc
  direct http
done

python3 - "$RESULTS" "$(nproc)" "$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo)" <<'EOF' | tee bench/results-authz.md
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {}
for s, rps, p50, p99, cpu, azcpu, code in rows:
    by.setdefault(s, []).append((float(rps), p50, p99, float(cpu), float(azcpu), code))
def med(s):
    rs = sorted(by[s], key=lambda r: r[0])
    return rs[len(rs) // 2]
print(f"CPU:{sys.argv[3]} ({sys.argv[2]} cores); one repeated RS256 token; `bench/authz.sh`\n")
print("| system | req/s (authz-*: checks/s) | p50 | p99 | CPU s / 10k req (process under test) | status |")
print("|---|---|---|---|---|---|")
for s in ("nginx", "nginx+authz", "sidecar", "authz-grpc", "authz-http"):
    rps, p50, p99, cpu, _, code = med(s)
    print(f"| {s} | {rps:.0f} | {p50} | {p99} | {cpu:.3f} | {code} |")
n, a, t = med("nginx"), med("nginx+authz"), med("sidecar")
print()
print(f"- nginx + auth_request + Tribune: {a[0] / n[0]:.2f}x the requests/s of nginx alone, {a[0] / t[0]:.2f}x the sidecar's")
print(f"- CPU of a check (connect authz alone): {a[4]:.3f} s / 10k, {a[4] / t[3]:.2f}x a sidecar request's ({t[3]:.3f}; target <= 1.5x)")
g, h = med("authz-grpc"), med("authz-http")
print(f"- asked directly, as Envoy asks: gRPC {g[0]:.0f} checks/s (p99 {g[2]}), {g[3] / t[3]:.2f}x a sidecar request's CPU; HTTP form {h[0]:.0f} checks/s (p99 {h[2]}), {h[3] / t[3]:.2f}x")
EOF
