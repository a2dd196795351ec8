#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for SECONDS each (default 60) with
# libFuzzer on stable Rust (cargo fuzz -s none: no sanitizer, so no nightly).
# Seeds come from the committed corpus fuzz/corpus/<target> (and examples/ for the
# entry parsers); what the run finds is
# kept in a scratch directory, so the committed corpus only changes by hand.
# A crash stops the script with exit 1 and leaves the input under
# fuzz/artifacts/<target>/; make it a regression test before fixing.
# Prints one line per target: "fuzz <target>: <runs> runs in <s> s" and ends with
# "fuzz: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version '^0.13' >/dev/null
fi
targets=$(grep -A1 '^\[\[bin\]\]' fuzz/Cargo.toml | sed -n 's/^name = "\(.*\)"/\1/p')
(cd fuzz && cargo fuzz build -s none --release -a >/dev/null 2>&1) || (cd fuzz && cargo fuzz build -s none --release -a)
passed=0
failed=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in $targets; do
  mkdir -p "$scratch/$t" "fuzz/corpus/$t"
  log="$scratch/$t.log"
  # The example entries seed the parsers too (read only, like the committed corpus).
  extra=()
  case "$t" in hcl | entry_decode) extra=(../examples) ;; esac
  if (cd fuzz && cargo fuzz run -s none --release -a "$t" "$scratch/$t" "corpus/$t" "${extra[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1) >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz $t: ${runs:-?} runs in $seconds s"
    passed=$((passed + 1))
  else
    echo "fuzz $t: FAILED (input kept under fuzz/artifacts/$t/)"
    tail -40 "$log"
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
