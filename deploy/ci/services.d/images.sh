#!/usr/bin/env bash
# The images context's registry for tests and benches: Debian's docker-registry
# (distribution 2.x, a plain registry v2). Tests start their own instance (own config,
# storage dir, free port, htpasswd auth) and stop it: nothing runs from here.
# htpasswd (bcrypt) comes from the registry's Python side: tests write it with bcrypt
# via passlib-free code, so only the binary is needed. Prints nothing on stdout.
set -euo pipefail
if ! command -v docker-registry >/dev/null 2>&1; then
  apt-get update -qq >/tmp/remotegpu-apt-images.log 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry \
    >>/tmp/remotegpu-apt-images.log 2>&1 || { tail -n 30 /tmp/remotegpu-apt-images.log >&2; exit 1; }
fi
# The Debian package enables a system-wide service on machines with an init system; the
# tests never use it (127.0.0.0/8 registries are insecure-allowed by dockerd by default).
if [ -n "${REMOTEGPU_SERVICES_ENV:-}" ]; then
  echo "export REMOTEGPU_TEST_REGISTRY_BIN=$(command -v docker-registry)" >> "$REMOTEGPU_SERVICES_ENV"
fi
