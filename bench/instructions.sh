#!/usr/bin/env bash
# User-space instructions per request of Tribune's proxy, counted by callgrind: a
# deterministic measure of the request path (wall-clock numbers on this VM drift by
# 10-20 % between minutes; instruction counts move by well under 1 %).
#
#   bench/instructions.sh [SECONDS]          (default 4)
#
# CASES="none repeated" counts a subset (default: allow repeated rotating none).
# Same policy and tokens as bench/run.sh. Cases: "allow" (allow-all, no provider: the
# HTTP server + client cost as Tribune pays it), "repeated" (one token, cache hits),
# "rotating" (10 000 tokens, every request verifies an RS256 signature), "none" (no
# token: the 401). The last three are also counted for crates/proxy/examples/floor.rs
# (the least a proxy on the same stack does per request). Counters are zeroed after a
# warm-up; the count covers every thread of the proxy. Each case's profile is kept
# (cg-<case>.out in the temporary directory). Note: under valgrind the CPU reports no
# ADX/BMI2, so aws-lc's RSA takes a slower code path than natively; compare
# rotating runs with each other, not with the native profile.
# TRIBUNE_LOG sets the sidecar's log filter (default warn: no access records);
# TRIBUNE_LOG=info,tribune::access=info counts a request with its access log line.
# COUNT=syscalls counts system calls per request instead (strace -c attached to the
# running proxy for the measured run, no valgrind; the split by call is printed to
# stderr and kept as strace-<case>.txt).
# BODY_BYTES=N makes the upstream answer N-byte bodies (default: "ok\n").
# TRIBUNE_FLAGS adds flags to the sidecar's (e.g. "-replay-buffer 0").
# SYSTEMS=floor counts the floor only (Tribune's column shows "-"); FLOOR_OPTS is
# passed to the floor (its stack options, examples/floor.rs; bench/floor-ab.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-4}
CASES=${CASES:-allow repeated rotating none}
OUT=$(mktemp -d /tmp/tribune-instr.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; pkill -f "$OUT" 2>/dev/null || true' EXIT
. bench/common.sh
bench_setup "$OUT" nginx wrk valgrind strace
cargo build --release -q -p tribune-proxy --example floor
# TRIBUNE_BIN counts another build (an A/B run: a copy of target/release's
# tribune and tribune-sidecar, side by side, made before a change).
BIN=${TRIBUNE_BIN:-$PWD/target/release/tribune}
FLOOR=$PWD/target/release/examples/floor
UP=$(free_port)
ANSWER='return 200 "ok\n";'
if [ -n "${BODY_BYTES:-}" ]; then
  # Responses of BODY_BYTES bytes (a static file) instead of "ok\n".
  mkdir -p "$OUT/www" && head -c "$BODY_BYTES" /dev/zero | tr '\0' x > "$OUT/www/body"
  chmod 755 "$OUT" "$OUT/www" # nginx's workers read it as another user
  ANSWER="root $OUT/www; try_files /body =404;"
fi
cat > "$OUT/upstream.conf" <<EOF
worker_processes 1; daemon off; pid $OUT/upstream.pid; error_log $OUT/upstream.err;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$UP; location / { $ANSWER } } }
EOF
nginx -c "$OUT/upstream.conf" -p "$OUT" &
if [ -n "${BODY_BYTES:-}" ]; then
  sleep 0.5
  got=$(curl -s "http://127.0.0.1:$UP/api/items" | wc -c)
  [ "$got" = "$BODY_BYTES" ] || { echo "BODY_BYTES: the upstream answered $got bytes" >&2; exit 2; }
fi
echo '{"Service": "api", "Protocol": "http", "DefaultIntentionPolicy": "allow", "Entries": []}' > "$OUT/allow.json"

SYSCALLS=0
[ "${COUNT:-instructions}" = syscalls ] && SYSCALLS=1
count() { # name config|floor tokens_file -> instructions (or system calls) per request (profile kept in OUT/cg-name.out)
  local name=$1 config=$2 tokens=$3 edge adm n total tracer=()
  edge=$(free_port); adm=$(free_port)
  rm -f "$OUT"/cg.out*
  [ "$SYSCALLS" = 1 ] || tracer=(valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$OUT/cg.out")
  if [ "$config" = floor ]; then
    "${tracer[@]}" "$FLOOR" "127.0.0.1:$edge" \
      "127.0.0.1:$UP" "$OUT/pubkey.pem" > "$OUT/cg.log" 2>&1 &
  else
    # `connect proxy` execs tribune-sidecar (beside the binary): followed into it.
    TRIBUNE_LOG=${TRIBUNE_LOG:-warn} "${tracer[@]}" "$BIN" connect proxy \
      -config "$config" -local-service-address "127.0.0.1:$UP" -edge-listener "127.0.0.1:$edge" \
      -admin-bind "127.0.0.1:$adm" -workers 1 ${TRIBUNE_FLAGS:-} > "$OUT/cg.log" 2>&1 &
  fi
  local pid=$!
  for _ in $(seq 150); do
    if [ "$config" = floor ]; then grep -q listening "$OUT/cg.log" 2>/dev/null && break
    else curl -sf -o /dev/null "http://127.0.0.1:$adm/ready" && break; fi
    sleep 0.2
  done
  # The warm-up starts half-way through the token list: the measured run's tokens
  # are not in the cache when it starts (both runs stay well under 5 000 requests).
  TOKENS_START=5000 TOKENS_FILE=$tokens wrk -t1 -c4 -d2s -s bench/tokens.lua "http://127.0.0.1:$edge" > /dev/null
  if [ "$SYSCALLS" = 1 ]; then
    # The process serving the port (the sidecar, after `connect proxy`'s exec).
    local served st
    served=$(ss -Hltnp "sport = :$edge" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
    strace -c -f -p "$served" -o "$OUT/strace-$name.txt" 2> /dev/null & st=$!
    sleep 0.5
    TOKENS_FILE=$tokens wrk -t1 -c4 -d"${SECS}s" -s bench/tokens.lua "http://127.0.0.1:$edge" > "$OUT/wrk.txt"
    kill -INT "$st"; wait "$st" 2>/dev/null || true
    n=$(awk '/requests in/ {print $1}' "$OUT/wrk.txt")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    python3 - "$OUT/strace-$name.txt" "$n" "$name" <<'PY'
import sys
n, total, rows = int(sys.argv[2]), 0, []
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) >= 5 and p[0][0].isdigit() and p[-1] != "total":
        rows.append((int(p[3]), p[-1]))
for calls, name in sorted(rows, reverse=True):
    total += calls
    if calls / n >= 0.01:
        print(f"{sys.argv[3]}: {name} {calls / n:.2f} a request", file=sys.stderr)
print(f"{total / n:.2f}")
PY
    return
  fi
  callgrind_control -z "$pid" > /dev/null 2>&1
  TOKENS_FILE=$tokens wrk -t1 -c4 -d"${SECS}s" -s bench/tokens.lua "http://127.0.0.1:$edge" > "$OUT/wrk.txt"
  callgrind_control -d "$pid" > /dev/null 2>&1
  n=$(awk '/requests in/ {print $1}' "$OUT/wrk.txt")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  mv "$(ls -t "$OUT"/cg.out.* | head -1)" "$OUT/cg-$name.out"
  total=$(callgrind_annotate "$OUT/cg-$name.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  python3 -c "print(f'{$total / $n:,.0f}')"
}

want() { [[ " $CASES " == *" $1 "* ]]; }
SYSTEMS=${SYSTEMS:-tribune floor}
count_tribune() { if [[ " $SYSTEMS " == *" tribune "* ]]; then count "$@"; else echo -; fi; }
what=instructions; [ "$SYSCALLS" = 1 ] && what="system calls"
echo "| case | Tribune: $what / request | floor example (examples/floor.rs) |"
echo "|---|---:|---:|"
if want allow; then
  echo "| allow-all, no provider (token sent) | $(count_tribune allow "$OUT/allow.json" "$OUT/token-1.txt") | - |"
fi
if want repeated; then
  echo "| repeated token (cache hit) | $(count_tribune repeated "$OUT/tribune.json" "$OUT/token-1.txt") | $(count floor-repeated floor "$OUT/token-1.txt") |"
fi
if want rotating; then
  echo "| 10 000 tokens (RS256 verify each) | $(count_tribune rotating "$OUT/tribune.json" "$OUT/tokens-10k.txt") | $(count floor-rotating floor "$OUT/tokens-10k.txt") |"
fi
if want none; then
  echo "| no token (answered 401) | $(count_tribune none "$OUT/tribune.json" "") | $(count floor-none floor "") |"
fi
echo
[ "$SYSCALLS" = 1 ] || echo "profiles (callgrind_annotate --inclusive=yes FILE): $OUT/cg-*.out"
