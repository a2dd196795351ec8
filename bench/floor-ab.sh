#!/usr/bin/env bash
# Floor against floor (issue #46, item 2): which of the stack's options lowers the
# least a proxy on Tribune's stack does per request. Each variant is the floor
# (crates/proxy/examples/floor.rs) with one option changed (FLOOR_OPTS), counted by
# bench/instructions.sh: user-space instructions (callgrind) and system calls
# (strace -c) per request, repeated token and 401. Both are deterministic to well
# under 1 %; wall-clock A/B runs on this VM are not (+-10 %).
#
#   bench/floor-ab.sh [SECONDS]        (default 3)
#
# VARIANTS="name=FLOOR_OPTS ..." picks the variants ("default=" is hyper's defaults).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-3}
VARIANTS=${VARIANTS:-"default= writev=writev=0 writev1=writev=1 client_writev=client_writev=0 date=date=0 client_read_exact=client_read_exact=8192 max_buf=max_buf=16384 nodelay=nodelay=0 auto=auto=1"}
row() { # table file, case label -> the floor's column
  awk -F'|' -v c="$2" 'index($2, c) {gsub(/ /, "", $4); print $4}' "$1"
}
echo "| floor variant (FLOOR_OPTS) | instructions, repeated | instructions, 401 | system calls, repeated | system calls, 401 |"
echo "|---|---:|---:|---:|---:|"
T=$(mktemp)
trap 'rm -f "$T"' EXIT
for v in $VARIANTS; do
  name=${v%%=*} opts=${v#*=}
  SYSTEMS=floor CASES="repeated none" FLOOR_OPTS=$opts bench/instructions.sh "$SECS" > "$T" 2> /dev/null
  ir=$(row "$T" "repeated") in=$(row "$T" "no token")
  SYSTEMS=floor CASES="repeated none" FLOOR_OPTS=$opts COUNT=syscalls bench/instructions.sh "$SECS" > "$T" 2> /dev/null
  sr=$(row "$T" "repeated") sn=$(row "$T" "no token")
  echo "| $name (\`${opts:-none}\`) | $ir | $in | $sr | $sn |"
done
