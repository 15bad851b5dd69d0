#!/usr/bin/env bash
# Monitoring: Debian's Prometheus server, for the Prometheus metrics store and the
# Grafana dashboard's queries (tests start their own on a free port; the packaged
# service is not used). Idempotent; prints nothing on stdout.
set -euo pipefail
if ! command -v prometheus >/dev/null 2>&1; then
  echo "[services] installing prometheus" >&2
  apt-get update -qq >/tmp/remotegpu-apt-monitoring.log 2>&1
  # policy-rc.d 101: install the binary without starting the packaged daemon.
  had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  [ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
    >>/tmp/remotegpu-apt-monitoring.log 2>&1 || { tail -n 30 /tmp/remotegpu-apt-monitoring.log >&2; exit 1; }
  [ "$had_policy" = 1 ] || rm -f /usr/sbin/policy-rc.d
fi
# A packaged daemon someone started is left alone; tests use their own instance.
if [ -n "${REMOTEGPU_SERVICES_ENV:-}" ]; then
  echo "export REMOTEGPU_PROMETHEUS_BIN=$(command -v prometheus)" >> "$REMOTEGPU_SERVICES_ENV"
fi
