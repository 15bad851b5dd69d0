#!/usr/bin/env bash
# Identity: Debian's OpenLDAP server (slapd), for the LDAP sign-in tests (they start
# their own slapd on a free port from a throwaway config; the packaged service is not
# used). Idempotent; prints nothing on stdout.
set -euo pipefail
if ! [ -x /usr/sbin/slapd ]; then
  echo "[services] installing slapd" >&2
  apt-get update -qq >/tmp/remotegpu-apt-identity.log 2>&1
  # policy-rc.d 101: install the binary without starting the packaged daemon.
  had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  [ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slapd \
    >>/tmp/remotegpu-apt-identity.log 2>&1 || { tail -n 30 /tmp/remotegpu-apt-identity.log >&2; exit 1; }
  [ "$had_policy" = 1 ] || rm -f /usr/sbin/policy-rc.d
fi
if [ -n "${REMOTEGPU_SERVICES_ENV:-}" ]; then
  echo "export REMOTEGPU_TEST_SLAPD=/usr/sbin/slapd" >> "$REMOTEGPU_SERVICES_ENV"
fi
# OpenID Connect: panva's oidc-provider (npm), started by the OIDC sign-in tests.
OIDC_DIR=/var/cache/remotegpu/oidc-provider
if ! [ -f "$OIDC_DIR/node_modules/oidc-provider/package.json" ]; then
  echo "[services] installing oidc-provider (npm)" >&2
  mkdir -p "$OIDC_DIR"
  [ -f "$OIDC_DIR/package.json" ] || echo '{"name":"rgpu-oidc","private":true}' > "$OIDC_DIR/package.json"
  (cd "$OIDC_DIR" && npm install --no-audit --no-fund oidc-provider@8.8.1 >&2)
fi
if [ -n "${REMOTEGPU_SERVICES_ENV:-}" ]; then
  echo "export REMOTEGPU_TEST_OIDC_PROVIDER=$OIDC_DIR/node_modules" >> "$REMOTEGPU_SERVICES_ENV"
fi
