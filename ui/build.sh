#!/usr/bin/env bash
# Installs the UI's npm packages from package-lock.json and copies the one library the
# UI embeds (dagre, graph layout) into crates/server/ui/vendor/, where the agent's
# binary includes it. CI runs this and fails if the committed copy differs.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --silent --no-audit --no-fund
vendor=../crates/server/ui/vendor
mkdir -p "$vendor"
cp node_modules/@dagrejs/dagre/dist/dagre.min.js "$vendor/dagre.min.js"
cp node_modules/@dagrejs/dagre/LICENSE "$vendor/dagre.LICENSE"
