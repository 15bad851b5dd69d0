#!/usr/bin/env bash
# Remote desktop: guacd 1.3.0 unpacked from Debian bullseye's packages into the cache
# (deploy/guacd/fetch.sh -- the fragile part: bookworm dropped guacamole-server), and the
# desktop image variant (deploy/images/build-desktop.sh) is built by the tests that need it.
# Tests start their own guacd on a free port. Idempotent; prints nothing on stdout (the
# exports go through REMOTEGPU_SERVICES_ENV).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
guacd=$(bash "$here/../../guacd/fetch.sh")
if [ -n "${REMOTEGPU_SERVICES_ENV:-}" ]; then
  echo "export REMOTEGPU_TEST_GUACD=$guacd" >> "$REMOTEGPU_SERVICES_ENV"
fi
