#!/usr/bin/env bash
# Side-by-side proxy benchmark (issue #9, part 1): direct, nginx (plain reverse proxy),
# HAProxy 2.6 (jwt_verify RS256 + iss/aud/exp + path + claim), Tribune's proxy (edge
# listener, one worker, the same policy as jwt-provider + service-intentions), and the
# floor (crates/proxy/examples/floor.rs: the least a proxy on Tribune's stack - hyper's
# HTTP/1 server and client, tokio, aws-lc-rs - does per request: 401 without a token,
# RSA check of a new token, forward; nothing of Tribune's).
#
#   bench/run.sh [DURATION_SECONDS] [CONNECTIONS]      (defaults: 10 s, 32)
#
# ROUNDS=N repeats every measurement N times, interleaved, and reports the median
# round (this VM's speed drifts by 10-20 % between minutes).
# SYSTEMS="direct nginx haproxy tribune floor" and SCENARIOS="repeated rotating none" pick a
# subset (the ratios need nginx, haproxy and tribune); the system tribune-shadow is Tribune with a
# staged candidate that decides every request differently, tribune-noreplay Tribune
# with -replay-buffer 0 (SYSTEMS="tribune tribune-shadow tribune-noreplay" gives the
# shadow evaluation's and the replay window's costs as ratios), tribune-base an earlier
# build (BASE=DIR holding its tribune and tribune-sidecar; SYSTEMS="tribune tribune-base"
# gives this build against it, both in the same rounds); floor-b the floor with
# FLOOR_B_OPTS (its stack options, examples/floor.rs: SYSTEMS="floor floor-b" is a
# floor-against-floor A/B in the same rounds, issue #46 item 2); PERF=1 records a perf profile of Tribune
# and of the floor per scenario into the temporary directory (perf-<system>-<scenario>.data).
#
# The proxy under test is pinned to CPU 0; wrk and the upstream (nginx returning a
# fixed 200) to CPU 1. Scenarios: one repeated valid token, 10 000 distinct valid
# tokens in rotation, no token. Writes bench/results.md (a markdown table with
# requests/s, p50, p99, CPU seconds per 10 000 requests, peak RSS and the ratios).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-32}
OUT=$(mktemp -d /tmp/tribune-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; pkill -f "$OUT" 2>/dev/null || true' EXIT

. bench/common.sh
bench_setup "$OUT" nginx haproxy wrk
cargo build --release -q -p tribune-proxy --example floor
BIN=$PWD/target/release/tribune
UP=$(free_port); NGX=$(free_port); HAP=$(free_port); TRI=$(free_port); ADM=$(free_port); FLR=$(free_port)
TRS=$(free_port); ADS=$(free_port); TRN=$(free_port); ADN=$(free_port)
TRB=$(free_port); ADB=$(free_port); FLB=$(free_port)

# Upstream: nginx answering 200 on CPU 1.
cat > "$OUT/upstream.conf" <<EOF
worker_processes 1; daemon off; pid $OUT/upstream.pid; error_log $OUT/upstream.err;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } } }
EOF
taskset -c 1 nginx -c "$OUT/upstream.conf" -p "$OUT" &

# nginx as a plain reverse proxy (no auth) on CPU 0.
cat > "$OUT/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $OUT/nginx.pid; error_log $OUT/nginx.err;
events { worker_connections 4096; }
http { access_log off;
  upstream up { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NGX;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
taskset -c 0 nginx -c "$OUT/nginx.conf" -p "$OUT" &

# HAProxy: RS256 signature, iss, aud, exp, path prefix and claim; one thread.
cat > "$OUT/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:$HAP
  http-request return status 401 content-type text/plain string "Jwt is missing" unless { req.hdr(authorization) -m beg "Bearer " }
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request return status 401 content-type text/plain string "Jwt verification fails" unless { var(txn.alg) -m str RS256 }
  http-request return status 401 content-type text/plain string "Jwt verification fails" unless { var(txn.bearer),jwt_verify(txn.alg,"$OUT/pubkey.pem") -m int 1 }
  http-request return status 401 content-type text/plain string "Jwt issuer is not configured" unless { var(txn.bearer),jwt_payload_query('\$.iss') -m str "https://idp.example" }
  http-request return status 401 content-type text/plain string "Audiences in Jwt are not allowed" unless { var(txn.bearer),jwt_payload_query('\$.aud') -m str "api" }
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request return status 401 content-type text/plain string "Jwt is expired" if { var(txn.exp),sub(txn.now) -m int lt 0 } || { var(txn.exp) -m int lt 1 }
  http-request deny deny_status 403 unless { path_beg /api/ }
  http-request deny deny_status 403 unless { var(txn.bearer),jwt_payload_query('\$.role') -m str admin }
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:$UP
EOF
# txn.now for the exp check.
sed -i "s|  http-request set-var(txn.exp)|  http-request set-var(txn.now) date\n  http-request set-var(txn.exp)|" "$OUT/haproxy.cfg"
taskset -c 0 haproxy -f "$OUT/haproxy.cfg" -db &

# Tribune: the same policy, from a snapshot file (written by gen_tokens.py).
TRIBUNE_LOG=warn taskset -c 0 "$BIN" connect proxy -config "$OUT/tribune.json" \
  -local-service-address "127.0.0.1:$UP" -edge-listener "127.0.0.1:$TRI" \
  -admin-bind "127.0.0.1:$ADM" -workers 1 > "$OUT/tribune.out" 2>&1 &
# The floor: the same upstream, the same key.
case " ${SYSTEMS:-floor} " in *" floor "*)
  taskset -c 0 "$PWD/target/release/examples/floor" "127.0.0.1:$FLR" "127.0.0.1:$UP" "$OUT/pubkey.pem" \
    > "$OUT/floor.out" 2>&1 & ;;
esac
case " ${SYSTEMS:-} " in *" floor-b "*)
  FLOOR_OPTS=${FLOOR_B_OPTS:-} taskset -c 0 "$PWD/target/release/examples/floor" "127.0.0.1:$FLB" "127.0.0.1:$UP" \
    "$OUT/pubkey.pem" > "$OUT/floor-b.out" 2>&1 & ;;
esac
case " ${SYSTEMS:-} " in *" tribune-shadow "*)
  TRIBUNE_LOG=warn taskset -c 0 "$BIN" connect proxy -config "$OUT/tribune-shadow.json" \
    -local-service-address "127.0.0.1:$UP" -edge-listener "127.0.0.1:$TRS" \
    -admin-bind "127.0.0.1:$ADS" -workers 1 > "$OUT/tribune-shadow.out" 2>&1 & ;;
esac
case " ${SYSTEMS:-} " in *" tribune-noreplay "*)
  TRIBUNE_LOG=warn taskset -c 0 "$BIN" connect proxy -config "$OUT/tribune.json" \
    -local-service-address "127.0.0.1:$UP" -edge-listener "127.0.0.1:$TRN" \
    -admin-bind "127.0.0.1:$ADN" -workers 1 -replay-buffer 0 > "$OUT/tribune-noreplay.out" 2>&1 & ;;
esac
case " ${SYSTEMS:-} " in *" tribune-base "*)
  [ -x "${BASE:-}/tribune" ] || { echo "tribune-base needs BASE=DIR with an earlier build's tribune" >&2; exit 2; }
  TRIBUNE_LOG=warn taskset -c 0 "$BASE/tribune" connect proxy -config "$OUT/tribune.json" \
    -local-service-address "127.0.0.1:$UP" -edge-listener "127.0.0.1:$TRB" \
    -admin-bind "127.0.0.1:$ADB" -workers 1 > "$OUT/tribune-base.out" 2>&1 & ;;
esac
sleep 2

pid_of() { # the process serving on port $1
  ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
TICKS=$(getconf CLK_TCK)

RESULTS="$OUT/rows.tsv"
: > "$RESULTS"
run() { # system port scenario tokens_file
  local system=$1 port=$2 scenario=$3 file=$4 pid before after rps p50 p99 reqs codes
  pid=$(pid_of "$port")
  # Warm-up, then the measured run.
  TOKENS_FILE=$file taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s bench/tokens.lua "http://127.0.0.1:$port" >/dev/null
  if [ "${PERF:-0}" = 1 ] && { [ "$system" = tribune ] || [ "$system" = floor ]; }; then
    perf record -q -g -F 999 -p "$pid" -o "$OUT/perf-$system-$scenario.data" -- sleep "$DURATION" 2>/dev/null &
    perf_pid=$!
  fi
  before=$(cpu_ticks "$pid")
  TOKENS_FILE=$file taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s bench/tokens.lua \
    "http://127.0.0.1:$port" > "$OUT/wrk.txt"
  after=$(cpu_ticks "$pid")
  if [ -n "${perf_pid:-}" ]; then wait "$perf_pid" || true; perf_pid=; fi
  rps=$(awk '/Requests\/sec/ {print $2}' "$OUT/wrk.txt")
  reqs=$(awk '/requests in/ {print $1}' "$OUT/wrk.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$OUT/wrk.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$OUT/wrk.txt")
  codes=$(curl -s -o /dev/null -w '%{http_code}' ${file:+-H "Authorization: Bearer $(head -1 "$file")"} "http://127.0.0.1:$port/api/items")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$system" "$scenario" "$rps" "$p50" "$p99" \
    "$(python3 -c "print(f'{($after-$before)/$TICKS/$reqs*10000:.3f}')")" "$(( $(hwm_kb "$pid") / 1024 ))" "$codes" >> "$RESULTS"
}

for round in $(seq "${ROUNDS:-1}"); do
for scenario in ${SCENARIOS:-repeated rotating none}; do
  case $scenario in
    repeated) file=$OUT/token-1.txt ;;
    rotating) file=$OUT/tokens-10k.txt ;;
    none) file= ;;
  esac
  for system in ${SYSTEMS:-direct nginx haproxy tribune floor}; do
    case $system in
      direct) run direct "$UP" "$scenario" "$file" ;;
      nginx) run nginx "$NGX" "$scenario" "$file" ;;
      haproxy) run haproxy "$HAP" "$scenario" "$file" ;;
      tribune) run tribune "$TRI" "$scenario" "$file" ;;
      floor) run floor "$FLR" "$scenario" "$file" ;;
      floor-b) run floor-b "$FLB" "$scenario" "$file" ;;
      tribune-shadow) run tribune-shadow "$TRS" "$scenario" "$file" ;;
      tribune-noreplay) run tribune-noreplay "$TRN" "$scenario" "$file" ;;
      tribune-base) run tribune-base "$TRB" "$scenario" "$file" ;;
    esac
  done
done
done

REPORT=bench/results.md
if [ -n "${SYSTEMS:-}${SCENARIOS:-}" ]; then REPORT=$OUT/results.md; fi # a subset: keep the full table
python3 - "$RESULTS" "$DURATION" "$CONNS" > "$REPORT" <<'EOF'
import sys, datetime, platform, os, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
def ms(v):
    v = v.strip()
    for unit, f in (("us", 0.001), ("ms", 1), ("s", 1000)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)
cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" :\t")
rounds = max(collections.Counter((r[0], r[1]) for r in rows).values())
print(f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {cpu}, {os.cpu_count()} cores; "
      f"wrk -t1 -c{sys.argv[3]} -d{sys.argv[2]}s; proxy on CPU 0, wrk + upstream on CPU 1; "
      f"{rounds} round(s), median by requests/s.\n")
print("| scenario | system | requests/s | p50 ms | p99 ms | CPU s / 10k req | peak RSS MB | status |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
by = {}
groups = {}
for r in rows:
    groups.setdefault((r[1], r[0]), []).append(r)
for (sc, s), rs in groups.items():
    # With ROUNDS > 1: the median round by requests/s.
    s, sc, rps, p50, p99, cpu_, rss, code = sorted(rs, key=lambda r: float(r[2]))[len(rs) // 2]
    by[(sc, s)] = (float(rps), ms(p99))
    print(f"| {sc} | {s} | {float(rps):,.0f} | {ms(p50):.2f} | {ms(p99):.2f} | {cpu_} | {rss} | {code} |")
print()
print("| scenario | Tribune / HAProxy req/s | Tribune / nginx req/s | Tribune / floor req/s | p99 Tribune vs HAProxy |")
print("|---|---:|---:|---:|---:|")
for sc in ("repeated", "rotating", "none"):
    if not all((sc, s) in by for s in ("tribune", "haproxy", "nginx")):
        continue
    t, h, n = by[(sc, "tribune")], by[(sc, "haproxy")], by[(sc, "nginx")]
    f = f"{t[0] / by[(sc, 'floor')][0]:.2f}x" if (sc, "floor") in by else "-"
    print(f"| {sc} | {t[0] / h[0]:.2f}x | {t[0] / n[0]:.2f}x | {f} | {t[1]:.2f} vs {h[1]:.2f} ms |")
if rounds > 1:
    # The ratio within each round (systems measured seconds apart, so the VM's drift
    # between minutes mostly cancels), and the median of those.
    print()
    pairs = (("tribune", "haproxy"), ("tribune", "nginx"), ("tribune", "floor"), ("floor", "nginx"))
    names = {"tribune": "Tribune", "haproxy": "HAProxy", "nginx": "nginx", "floor": "floor"}
    print("| scenario | " + " | ".join(f"{names[a]} / {names[b]} by round (median)" for a, b in pairs) + " |")
    print("|---|" + "---|" * len(pairs))
    for sc in ("repeated", "rotating", "none"):
        rps = {s: [float(r[2]) for r in groups.get((sc, s), [])] for s in names}
        cells = []
        for a, b in pairs:
            if not rps[a] or len(rps[a]) != len(rps[b]):
                cells.append("-")
                continue
            ratios = [x / y for x, y in zip(rps[a], rps[b])]
            med = sorted(ratios)[len(ratios) // 2]
            cells.append(", ".join(f"{x:.2f}x" for x in ratios) + f" ({med:.2f}x)")
        print(f"| {sc} | " + " | ".join(cells) + " |")
med = lambda v: sorted(v)[len(v) // 2]
for variant, base, what in (("tribune-shadow", "tribune", "a staged candidate (every request differs) vs none"),
                            ("tribune-noreplay", "tribune", "-replay-buffer 0 vs the default window"),
                            ("tribune-base", "tribune", "the earlier build (BASE) vs this one"),
                            ("floor-b", "floor", f"the floor with {os.environ.get('FLOOR_B_OPTS', '')} vs without")):
    scs = [sc for sc in ("repeated", "rotating", "none") if (sc, variant) in groups and (sc, base) in groups]
    if not scs:
        continue
    print()
    print(f"| scenario | CPU / request, {what}, by round (median) | requests/s ratio (median) |")
    print("|---|---|---:|")
    for sc in scs:
        a, b = groups[(sc, variant)], groups[(sc, base)]
        cpu_ratios = [float(x[5]) / float(y[5]) for x, y in zip(a, b)]
        rps_ratios = [float(x[2]) / float(y[2]) for x, y in zip(a, b)]
        print(f"| {sc} | " + ", ".join(f"{x:.3f}" for x in cpu_ratios) + f" ({med(cpu_ratios):.3f}) | {med(rps_ratios):.3f} |")
EOF
cat "$REPORT"
if [ "${PERF:-0}" = 1 ]; then echo "perf profiles: $OUT/perf-*.data"; fi
