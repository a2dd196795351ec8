"""ACL cost per API call as tokens grow (issue #40): creates tokens up to each
count, then times GETs that carry one of them and config writes with it.

    python3 bench/acl.py HOST:PORT ROOT_SECRET [COUNTS...]   (default counts: 10 1000 10000)

Prints one line per count: the p50 and p90 of 300 GETs and of 100 writes, in ms.
"""
import http.client
import json
import statistics
import sys
import time

addr, root = sys.argv[1], sys.argv[2]
counts = [int(c) for c in sys.argv[3:]] or [10, 1000, 10000]
host, port = addr.split(":")
conn = http.client.HTTPConnection(host, int(port), timeout=30)


def call(method, path, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers={"X-Consul-Token": token, "Host": "127.0.0.1"})
    r = conn.getresponse()
    out = r.read()
    if r.status != 200:
        raise SystemExit(f"{method} {path}: {r.status} {out[:200]!r}")
    return json.loads(out) if out else None


call("PUT", "/v1/acl/policy", root, {"Name": "api-write", "Rules": 'service "api" { policy = "write" }'})
mine = call("PUT", "/v1/acl/token", root, {"Policies": [{"Name": "api-write"}]})["SecretID"]
made = 1


def timed(n, f):
    out = []
    for i in range(n):
        t = time.perf_counter()
        f(i)
        out.append((time.perf_counter() - t) * 1000)
    out.sort()
    return statistics.median(out), out[int(len(out) * 0.9)]


for count in counts:
    while made < count:
        call("PUT", "/v1/acl/token", root, {"Policies": [{"Name": "api-write"}]})
        made += 1
    get = timed(300, lambda i: call("GET", "/v1/config/service-defaults", mine))
    put = timed(100, lambda i: call("PUT", "/v1/config", mine, {"Kind": "service-defaults", "Name": "api", "Protocol": "http", "Meta": {"n": str(i)}}))
    print(f"{count:>6} tokens: GET p50 {get[0]:.3f} ms p90 {get[1]:.3f} ms; write p50 {put[0]:.3f} ms p90 {put[1]:.3f} ms", flush=True)
