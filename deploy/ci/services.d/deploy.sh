#!/usr/bin/env bash
# deploy/: a compose tool for the compose smoke test (Debian's `docker-compose`, v1, when
# neither `docker compose` nor `docker-compose` exists) and the stack's infrastructure
# image (deploy/compose/build-images.sh --infra-only: Debian packages only, so it is
# built before the project's venv and node_modules exist; the platform image is built by
# the test through deploy/image/build.sh, cached by content hash). Idempotent; prints
# nothing on stdout (the image reference goes to REMOTEGPU_SERVICES_ENV).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  echo "[services] installing docker-compose" >&2
  apt-get update -qq >/tmp/remotegpu-apt-deploy.log 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose \
    >>/tmp/remotegpu-apt-deploy.log 2>&1 || { tail -n 30 /tmp/remotegpu-apt-deploy.log >&2; exit 1; }
fi
if docker info >/dev/null 2>&1; then
  exports="$("$here/../../compose/build-images.sh" --infra-only)"
  if [ -n "${REMOTEGPU_SERVICES_ENV:-}" ]; then
    echo "$exports" >> "$REMOTEGPU_SERVICES_ENV"
  fi
fi
