#!/usr/bin/env bash
# Builds every image the compose stack runs, locally (no registry is contacted):
#   remotegpu/infra:<hash>     PostgreSQL, Redis, nginx, docker-registry, Prometheus and
#                              Alertmanager, all Debian 12 packages in one debootstrap
#                              rootfs (infra/), `docker import`ed
#   remotegpu/platform:<hash>  the platform (deploy/image/build.sh)
# Each tag is a hash of its inputs: an unchanged input rebuilds nothing.
#
#   deploy/compose/build-images.sh               both images
#   deploy/compose/build-images.sh --infra-only  the infrastructure image only (needs no
#                                                node or Python packages: CI pre-builds it)
# stdout: `export REMOTEGPU_INFRA_IMAGE=...` / `export REMOTEGPU_PLATFORM_IMAGE_REF=...`
# lines for `eval`; progress goes to stderr.
set -euo pipefail
IMAGE_TOOL=build-images.sh
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
REPO="${REMOTEGPU_INFRA_IMAGE_REPO:-remotegpu/infra}"
source "$ROOT/deploy/image/rootfs.sh"

infra_only=0
for arg in "$@"; do
    case "$arg" in
        --infra-only) infra_only=1 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-images.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done
docker info >/dev/null 2>&1 || { echo "build-images.sh: no Docker daemon answers" >&2; exit 1; }

HASH="$( (cd "$HERE" && sha256sum infra/packages.txt infra/entrypoint.sh build-images.sh; sha256sum "$ROOT/deploy/image/rootfs.sh" | cut -d' ' -f1) | sha256sum | cut -c1-16)"
TAG="$REPO:$HASH"
if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "build-images.sh: $TAG is up to date" >&2
else
    rootfs_need_root
    trap rootfs_cleanup EXIT
    rootfs_begin
    mapfile -t packages < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$HERE/infra/packages.txt")
    rootfs_apt "${packages[@]}"
    install -m 0755 "$HERE/infra/entrypoint.sh" "$ROOTFS/usr/local/bin/infra-entrypoint"
    # The packages' own configuration and cluster are not used: every service is configured
    # by the entrypoint and the mounted files.
    rm -rf "$ROOTFS"/var/lib/postgresql/* "$ROOTFS"/etc/postgresql/*
    rm -f "$ROOTFS"/etc/nginx/sites-enabled/default
    mkdir -p "$ROOTFS/etc/remotegpu"
    rootfs_import "$TAG" \
        --change 'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/infra-entrypoint"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'LABEL remotegpu.image=infra' \
        --change "LABEL remotegpu.inputs=$HASH"
    trap - EXIT
    rootfs_cleanup
    prune_older "$REPO" "$HASH"
    size=$(docker image inspect -f '{{ .Size }}' "$TAG")
    rootfs_step "built $TAG ($(( size / 1024 / 1024 )) MiB)"
fi
docker tag "$TAG" "$REPO:latest"
echo "export REMOTEGPU_INFRA_IMAGE=$TAG"
if [ "$infra_only" = 0 ]; then
    platform="$("$ROOT/deploy/image/build.sh")"
    echo "export REMOTEGPU_PLATFORM_IMAGE_REF=$platform"
fi
