#!/usr/bin/env bash
# The baseline of bench/env_start.py: JupyterHub + DockerSpawner + configurable-http-proxy,
# installed outside the repository (idempotent; prints the cache directory when done):
#
#   <cache>/venv          jupyterhub, dockerspawner (their own venv: no conflict with ours)
#   <cache>/chp           configurable-http-proxy (npm)
#   <cache>/wheels        jupyterhub and its dependencies as wheels for the image's Python,
#                         installed into a copy of the environment image by the bench
#                         (DockerSpawner's containers run `jupyterhub-singleuser`)
#
# Environment: REMOTEGPU_JUPYTERHUB_CACHE (/var/cache/remotegpu/jupyterhub-bench),
#   REMOTEGPU_JUPYTERHUB_VERSION (6.1.1). Needs python3 (3.8+), npm, network to PyPI and npm.
set -euo pipefail

CACHE="${REMOTEGPU_JUPYTERHUB_CACHE:-/var/cache/remotegpu/jupyterhub-bench}"
VERSION="${REMOTEGPU_JUPYTERHUB_VERSION:-6.1.1}"
mkdir -p "$CACHE"
stamp="$CACHE/.installed-$VERSION"
if [ -f "$stamp" ]; then
    echo "$CACHE"
    exit 0
fi
log="$CACHE/setup.log"
: >"$log"
run() { "$@" >>"$log" 2>&1 || { echo "jupyterhub_setup.sh: failed: $*" >&2; tail -20 "$log" >&2; exit 1; }; }

[ -x "$CACHE/venv/bin/python" ] || run python3 -m venv "$CACHE/venv"
run "$CACHE/venv/bin/pip" install -q "jupyterhub==$VERSION" dockerspawner
run npm install --prefix "$CACHE/chp" --no-audit --no-fund --silent configurable-http-proxy
# Wheels for the image's Python (Debian 12: CPython 3.11, x86_64 glibc).
run "$CACHE/venv/bin/pip" download -q --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d "$CACHE/wheels" "jupyterhub==$VERSION"
touch "$stamp"
echo "$CACHE"
