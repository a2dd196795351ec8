#!/usr/bin/env bash
# Installs the UI's npm packages from package-lock.json and copies the libraries the
# UI embeds (dagre, graph layout; jsdiff, the Staged page's line diff) into
# crates/server/ui/vendor/, where the agent's binary includes them. CI runs this and
# fails if the committed copy differs.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --silent --no-audit --no-fund
vendor=../crates/server/ui/vendor
mkdir -p "$vendor"
cp node_modules/@dagrejs/dagre/dist/dagre.min.js "$vendor/dagre.min.js"
cp node_modules/@dagrejs/dagre/LICENSE "$vendor/dagre.LICENSE"
cp node_modules/diff/dist/diff.min.js "$vendor/diff.min.js"
cp node_modules/diff/LICENSE "$vendor/diff.LICENSE"
