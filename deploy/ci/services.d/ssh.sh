#!/usr/bin/env bash
# SSH: OpenSSH's client tools and rsync, for the SSH gateway tests and bench
# (tests/integration/test_ssh_gateway.py, bench/ssh_gateway.py run ssh, scp, sftp and
# rsync through the gateway). Idempotent; prints nothing on stdout.
set -euo pipefail
missing=()
command -v ssh >/dev/null || missing+=(openssh-client)
command -v rsync >/dev/null || missing+=(rsync)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[services] installing ${missing[*]}" >&2
  apt-get update -qq >/tmp/remotegpu-apt-ssh.log 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >>/tmp/remotegpu-apt-ssh.log 2>&1 || { tail -n 30 /tmp/remotegpu-apt-ssh.log >&2; exit 1; }
fi
