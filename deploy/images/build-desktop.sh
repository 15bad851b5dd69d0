#!/usr/bin/env bash
# Builds remotegpu/desktop locally: remotegpu/base (build-base.sh, built first when
# missing) + Xvfb, XFCE, x11vnc and xterm from Debian (deploy/images/desktop/). Nothing is
# pulled from a registry: `docker build` (classic builder) starts FROM the local base.
#
#   ./deploy/images/build-desktop.sh              build if missing or the recipe changed
#   ./deploy/images/build-desktop.sh --force      rebuild
#   ./deploy/images/build-desktop.sh --if-docker  exit 0 quietly when no Docker daemon answers
# Environment: REMOTEGPU_DESKTOP_IMAGE (remotegpu/desktop:latest), REMOTEGPU_BASE_IMAGE.
set -euo pipefail
IMAGE="${REMOTEGPU_DESKTOP_IMAGE:-remotegpu/desktop:latest}"
BASE="${REMOTEGPU_BASE_IMAGE:-remotegpu/base:latest}"
HERE="$(cd "$(dirname "$0")" && pwd)"
RECIPE_DIR="$HERE/desktop"
force=0; if_docker=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        --if-docker) if_docker=1 ;;
        *) echo "build-desktop.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done
if ! docker info >/dev/null 2>&1; then
    [ "$if_docker" = 1 ] && exit 0
    echo "build-desktop.sh: no Docker daemon answers (start dockerd first)" >&2; exit 1
fi
"$HERE/build-base.sh" >&2
base_id="$(docker image inspect -f '{{ .Id }}' "$BASE")"
RECIPE="$( (cd "$RECIPE_DIR" && sha256sum Dockerfile packages.txt desktop.sh; echo "$base_id") | sha256sum | cut -d' ' -f1)"
current="$(docker image inspect -f '{{ index .Config.Labels "remotegpu.recipe" }}' "$IMAGE" 2>/dev/null || true)"
if [ "$force" = 0 ] && [ "$current" = "$RECIPE" ]; then
    echo "build-desktop.sh: $IMAGE is up to date (recipe ${RECIPE:0:12})"; exit 0
fi
started=$(date +%s)
LOG="${REMOTEGPU_IMAGE_CACHE:-/var/cache/remotegpu}/build-desktop.log"
mkdir -p "$(dirname "$LOG")"
echo "build-desktop.sh: building $IMAGE from $BASE (log: $LOG)"
DOCKER_BUILDKIT=0 docker build --pull=false --build-arg "BASE=$BASE" \
    --label "remotegpu.recipe=$RECIPE" --label remotegpu.image=desktop -t "$IMAGE" "$RECIPE_DIR" >"$LOG" 2>&1 \
    || { echo "build-desktop.sh: docker build failed" >&2; tail -25 "$LOG" >&2; exit 1; }
docker image prune -f --filter "label=remotegpu.image=desktop" --filter dangling=true >/dev/null 2>&1 || true
size=$(docker image inspect -f '{{ .Size }}' "$IMAGE")
echo "build-desktop.sh: built $IMAGE ($(( size / 1024 / 1024 )) MiB, recipe ${RECIPE:0:12}) in $(( $(date +%s) - started ))s"
