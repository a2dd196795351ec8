#!/usr/bin/env python3
"""Writes N services (service-defaults + an L7 service-intentions each) to the agent
at ADDR one by one and prints writes/s per fifth of the run (bench/writes.sh)."""
import json, sys, time, urllib.request
addr = sys.argv[1]; n = int(sys.argv[2])
def put(body):
    req = urllib.request.Request(f"http://{addr}/v1/config", data=json.dumps(body).encode(), method="PUT")
    with urllib.request.urlopen(req) as r:
        assert r.read().strip() == b"true"
t0 = time.time(); marks = []
for i in range(n):
    put({"Kind": "service-defaults", "Name": f"svc{i}", "Protocol": "http"})
    put({"Kind": "service-intentions", "Name": f"svc{i}", "Sources": [
        {"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/api/"}}]},
        {"Name": "*", "Action": "deny"}]})
    if (i + 1) % (n // 5) == 0:
        t = time.time(); marks.append((2 * (i + 1), t - t0)); t0 = t
prev = 0
for entries, secs in marks:
    print(f"entries {prev}-{entries}: {(entries - prev) / secs:.0f} writes/s ({secs / (entries - prev) * 1000:.2f} ms each)")
    prev = entries
