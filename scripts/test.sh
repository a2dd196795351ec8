#!/usr/bin/env bash
# The project's test command (README.md): every crate's unit, golden, property and
# CLI tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
