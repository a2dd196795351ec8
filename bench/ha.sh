#!/usr/bin/env bash
# HA benchmark (issue #16): config writes through 1 and 3 agents on a real 3-member
# etcd vs the embedded store, propagation to 100 watchers on three agents, and a
# sidecar watcher's failover time (crates/tribune/examples/ha.rs).
#
#   bench/ha.sh [WRITES_PER_WRITER]        (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p tribune --features etcd --example ha -- "${1:-200}"
