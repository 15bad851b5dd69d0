#!/usr/bin/env bash
# Two S3-compatible servers for the object store's contract tests (a MinIO server cannot be
# built or installed on our machines): moto's server mode (PyPI moto[server], in its own
# virtualenv: it pins dependencies that conflict with the kubernetes client) and s3rver (npm).
# Idempotent; prints nothing on stdout; tests start the servers themselves on free ports.
set -euo pipefail
CACHE=${REMOTEGPU_CACHE_DIR:-/var/cache/remotegpu}
MOTO_VENV="$CACHE/moto-venv"
S3RVER_DIR="$CACHE/s3rver"
PY=${PYTHON:-python3}

if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
  echo "[storage] installing moto[server] into $MOTO_VENV" >&2
  "$PY" -m venv "$MOTO_VENV" >&2
  "$MOTO_VENV/bin/pip" install -q 'moto[server]>=5' >&2
fi

if [ ! -x "$S3RVER_DIR/node_modules/.bin/s3rver" ]; then
  command -v npm >/dev/null || { echo "[storage] npm is missing (needed for s3rver)" >&2; exit 1; }
  echo "[storage] installing s3rver into $S3RVER_DIR" >&2
  mkdir -p "$S3RVER_DIR"
  (cd "$S3RVER_DIR" && { [ -f package.json ] || echo '{"name":"s3rver-cache","private":true}' > package.json; } \
    && npm install --silent --no-audit --no-fund s3rver@3 >&2)
fi

if [ -n "${REMOTEGPU_SERVICES_ENV:-}" ]; then
  {
    echo "export REMOTEGPU_TEST_MOTO_SERVER=$MOTO_VENV/bin/moto_server"
    echo "export REMOTEGPU_TEST_S3RVER=$S3RVER_DIR/node_modules/.bin/s3rver"
  } >> "$REMOTEGPU_SERVICES_ENV"
fi
