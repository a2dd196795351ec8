#!/usr/bin/env bash
# Memory with 10 000 intentions (issue #9, part 3): the agent's RSS before and after
# writing a service-intentions entry for `api` with 10 000 sources, and the peak RSS
# of a proxy for `api` compiling and enforcing it.
#
#   bench/memory.sh [SOURCES]        (default 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
OUT=$(mktemp -d /tmp/tribune-mem.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
cargo build --release -q -p tribune
BIN=$PWD/target/release/tribune
"$BIN" agent -dev -http-port 0 > "$OUT/agent.out" 2>&1 &
AGENT=$!
for _ in $(seq 50); do grep -q 'agent running' "$OUT/agent.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(awk '/HTTP addr:/ {print $3}' "$OUT/agent.out")
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
before=$(rss $AGENT)
python3 - "$ADDR" "$N" <<'EOF2'
import http.client, json, sys, time
host, port = sys.argv[1].split(":")
n = int(sys.argv[2])
entry = {"Kind": "service-intentions", "Name": "api",
         "Sources": [{"Name": f"src-{i}", "Action": "allow" if i % 2 else "deny"} for i in range(n)]}
c = http.client.HTTPConnection(host, int(port))
c.request("PUT", "/v1/config", json.dumps({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}))
c.getresponse().read()
t = time.time()
c.request("PUT", "/v1/config", json.dumps(entry))
r = c.getresponse(); body = r.read()
assert r.status == 200, body
print(f"write of one entry with {n} sources: {(time.time() - t) * 1000:.0f} ms")
EOF2
after=$(rss $AGENT)
TRIBUNE_LOG=warn "$BIN" connect proxy -service api -http-addr "$ADDR" -local-service-address 127.0.0.1:9 \
  -edge-listener 127.0.0.1:0 -admin-bind 127.0.0.1:0 -workers 1 > "$OUT/proxy.out" 2>&1 &
PROXY=$!
start=$(date +%s%N)
for _ in $(seq 300); do
  port=$(awk '/Admin listener:/ {print $3}' "$OUT/proxy.out" 2>/dev/null || true)
  [ -n "$port" ] && curl -sf "http://$port/ready" >/dev/null 2>&1 && break
  sleep 0.05
done
ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "agent RSS: $((before / 1024)) MB before, $((after / 1024)) MB after ($N intentions)"
echo "proxy for api: ready (snapshot fetched and compiled) in ${ready_ms} ms after start, peak RSS $(( $(hwm $PROXY) / 1024 )) MB"
