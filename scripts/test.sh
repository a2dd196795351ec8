#!/usr/bin/env bash
# The project's test command (README.md): every crate's unit, golden, property and
# CLI tests. Ends with one summary line: "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
# Third-party JOSE/OIDC tools the interop and end-to-end tests drive (interop/):
# PyJWT + cryptography + py-consul (the Consul client scripts import) + websockets
# (a real WebSocket client and server) + prometheus-client (Prometheus's own parser
# of the metrics pages) + kubernetes-validate (the Kubernetes schemas, offline, for
# deploy/kubernetes) + spiffe (py-spiffe, the SPIFFE Workload API client) + xds-protos
# (Envoy's protos, for an ext_authz client) from PyPI,
# jose + oidc-provider from npm (lockfile).
if ! python3 -c 'import jwt, cryptography, consul, websockets.asyncio.server, prometheus_client, kubernetes_validate, spiffe, envoy.service.auth.v3.external_auth_pb2' >/dev/null 2>&1 || ! command -v kubernetes-validate >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'pyjwt>=2.8,<3' 'cryptography>=42' 'py-consul>=1.8,<2' 'websockets>=13,<16' 'prometheus-client>=0.20,<1' 'kubernetes-validate>=1.30,<2' 'spiffe>=0.3,<1' 'xds-protos>=1,<2'
fi
if [ ! -d interop/node_modules ] || [ interop/package-lock.json -nt interop/node_modules ]; then
  (cd interop && npm ci --no-audit --no-fund --silent)
fi
# etcd for the HA tests (real 3-member clusters on loopback) and protoc for etcd's
# gRPC client, from Debian's packages.
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1 || ! command -v protoc >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client protobuf-compiler >/dev/null
  else
    echo "scripts/test.sh needs etcd, etcdctl and protoc: apt-get install etcd-server etcd-client protobuf-compiler" >&2
    exit 1
  fi
fi
# systemd-analyze checks deploy/systemd's units.
if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
  else
    echo "scripts/test.sh needs systemd-analyze for deploy/systemd: apt-get install systemd" >&2
    exit 1
  fi
fi
# Chromium (Debian's) for the browser tests of the web UI (ui/tests), and their npm
# packages: playwright-core drives the system browser and downloads none.
# nginx (auth_request) and Caddy (forward_auth) in front of a service, asking
# `tribune connect authz` (crates/tribune/tests/authz_proxies.rs).
if ! command -v nginx >/dev/null 2>&1 || ! command -v caddy >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light caddy >/dev/null
  else
    echo "scripts/test.sh needs nginx and caddy for the external-authorization tests: apt-get install nginx-light caddy" >&2
    exit 1
  fi
fi
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "scripts/test.sh needs chromium for the UI's browser tests: apt-get install chromium chromium-driver" >&2
    exit 1
  fi
fi
if [ ! -d ui/node_modules ] || [ ui/package-lock.json -nt ui/node_modules ]; then
  (cd ui && npm ci --no-audit --no-fund --silent)
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --features tribune/etcd --lib --bins --tests "$@" 2>&1 | tee "$log" || status=$?
# The browser tests drive the binary cargo test just built (target/debug/tribune);
# screenshots of every page go to target/ui-screenshots/.
if [ "$#" -eq 0 ]; then
  (cd ui && node --test --test-reporter=tap tests/) 2>&1 | tee -a "$log" || status=$?
fi
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^# pass / { p += $3 } /^# fail / { f += $3 }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
