# Shared by bench/run.sh and bench/instructions.sh (sourced from the repository root).
need() { command -v "$1" >/dev/null 2>&1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# bench_setup OUT PACKAGE...: installs the Debian packages whose commands are missing,
# PyJWT, builds the release binary, and writes keys, tokens and tribune.json to OUT.
bench_setup() {
  local out=$1 missing=
  shift
  for p in "$@"; do need "$p" || missing=1; done
  if [ -n "$missing" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
  python3 -c 'import jwt, cryptography' 2>/dev/null || python3 -m pip install -q 'pyjwt>=2.8,<3' 'cryptography>=42'
  cargo build --release -q -p tribune
  python3 bench/gen_tokens.py "$out"
}
