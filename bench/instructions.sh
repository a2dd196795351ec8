#!/usr/bin/env bash
# User-space instructions per request of Tribune's proxy, counted by callgrind: a
# deterministic measure of the request path (wall-clock numbers on this VM drift by
# 10-20 % between minutes; instruction counts move by well under 1 %).
#
#   bench/instructions.sh [SECONDS]          (default 4)
#
# Same policy and tokens as bench/run.sh. Cases: "floor" (allow-all, no provider: the
# HTTP server + client cost), "repeated" (one token, cache hits), "rotating" (10 000
# tokens, every request verifies an RS256 signature). Counters are zeroed after a
# warm-up; the count covers every thread of the proxy. Note: under valgrind the CPU
# reports no ADX/BMI2, so aws-lc's RSA takes a slower code path than natively; compare
# rotating runs with each other, not with the native profile.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-4}
OUT=$(mktemp -d /tmp/tribune-instr.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; pkill -f "$OUT" 2>/dev/null || true' EXIT
need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk || ! need valgrind; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk valgrind >/dev/null
fi
python3 -c 'import jwt, cryptography' 2>/dev/null || python3 -m pip install -q 'pyjwt>=2.8,<3' 'cryptography>=42'
cargo build --release -q -p tribune
BIN=$PWD/target/release/tribune
python3 bench/gen_tokens.py "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port)
cat > "$OUT/upstream.conf" <<EOF
worker_processes 1; daemon off; pid $OUT/upstream.pid; error_log $OUT/upstream.err;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } } }
EOF
nginx -c "$OUT/upstream.conf" -p "$OUT" &
JWKS=$(cat "$OUT/jwks.b64")
cat > "$OUT/policy.json" <<EOF
{"Service": "api", "Protocol": "http", "DefaultIntentionPolicy": "deny", "Entries": [
  {"Kind": "jwt-provider", "Name": "idp", "Issuer": "https://idp.example", "Audiences": ["api"],
   "JSONWebKeySet": {"Local": {"JWKS": "$JWKS"}}},
  {"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*", "Permissions": [
    {"Action": "allow", "HTTP": {"PathPrefix": "/api/"},
     "JWT": {"Providers": [{"Name": "idp", "VerifyClaims": [{"Path": ["role"], "Value": "admin"}]}]}}]}]}]}
EOF
echo '{"Service": "api", "Protocol": "http", "DefaultIntentionPolicy": "allow", "Entries": []}' > "$OUT/floor.json"

count() { # config tokens_file -> instructions per request
  local config=$1 tokens=$2 edge adm n total
  edge=$(free_port); adm=$(free_port)
  rm -f "$OUT"/cg.out*
  TRIBUNE_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "$BIN" connect proxy \
    -config "$config" -local-service-address "127.0.0.1:$UP" -edge-listener "127.0.0.1:$edge" \
    -admin-bind "127.0.0.1:$adm" -workers 1 > "$OUT/cg.log" 2>&1 &
  local pid=$!
  for _ in $(seq 150); do curl -sf -o /dev/null "http://127.0.0.1:$adm/ready" && break; sleep 0.2; done
  TOKENS_FILE=$tokens wrk -t1 -c4 -d2s -s bench/tokens.lua "http://127.0.0.1:$edge" > /dev/null
  callgrind_control -z "$pid" > /dev/null 2>&1
  TOKENS_FILE=$tokens wrk -t1 -c4 -d"${SECS}s" -s bench/tokens.lua "http://127.0.0.1:$edge" > "$OUT/wrk.txt"
  callgrind_control -d "$pid" > /dev/null 2>&1
  n=$(awk '/requests in/ {print $1}' "$OUT/wrk.txt")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  total=$(callgrind_annotate "$(ls -t "$OUT"/cg.out.* | head -1)" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  python3 -c "print(f'{$total / $n:,.0f}')"
}

echo "| case | instructions / request |"
echo "|---|---:|"
echo "| floor (allow-all, no provider) | $(count "$OUT/floor.json" "$OUT/token-1.txt") |"
echo "| repeated token (cache hit) | $(count "$OUT/policy.json" "$OUT/token-1.txt") |"
echo "| 10 000 tokens (RS256 verify each) | $(count "$OUT/policy.json" "$OUT/tokens-10k.txt") |"
