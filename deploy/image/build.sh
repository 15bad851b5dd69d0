#!/usr/bin/env bash
# Builds the platform's own container image, offline from local inputs (no registry):
#   stage 1 (builder): the console built with Vite on the host; in the rootfs, a builder
#                   venv makes wheels of the platform and its dependencies (pip's cache
#                   in $REMOTEGPU_IMAGE_CACHE/pip), then is removed;
#   stage 2 (runtime): the cached Debian 12 minbase rootfs (as deploy/images/build-base.sh)
#                   + packages.txt, a venv in /opt/remotegpu installed from those wheels
#                   only (--no-index), the console copied in; `docker import`ed.
# The tag is a hash of every input (src/, pyproject.toml, this directory), so a run with
# unchanged inputs does nothing; `latest` points at the newest build.
#
#   deploy/image/build.sh            build when missing or inputs changed; prints the image
#   deploy/image/build.sh --force    rebuild
# Environment: REMOTEGPU_PLATFORM_IMAGE (remotegpu/platform), REMOTEGPU_IMAGE_CACHE
#   (/var/cache/remotegpu), REMOTEGPU_DEBIAN_MIRROR. Needs root (chroot), Docker, node
#   with the console's node_modules (make console), PyPI (or PIP_INDEX_URL) for new wheels.
# stdout: the built image reference only; progress goes to stderr.
set -euo pipefail
IMAGE_TOOL=build.sh
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
REPO="${REMOTEGPU_PLATFORM_IMAGE:-remotegpu/platform}"
CONSOLE="$ROOT/src/remotegpu/entrypoints/console"
source "$HERE/rootfs.sh"

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done
docker info >/dev/null 2>&1 || { echo "build.sh: no Docker daemon answers" >&2; exit 1; }

# The inputs: every file under src/ that ships (not node_modules, builds, bytecode),
# pyproject.toml and this directory.
inputs() {
    (cd "$ROOT" && find src pyproject.toml deploy/image -type f \
        -not -path '*/node_modules/*' -not -path '*/console/dist/*' -not -path '*/__pycache__/*' \
        -not -name '*.pyc' -not -path '*.egg-info/*' | LC_ALL=C sort)
}
HASH="$(cd "$ROOT" && inputs | xargs -d '\n' sha256sum | sha256sum | cut -c1-16)"
TAG="$REPO:$HASH"
if [ "$force" = 0 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
    docker tag "$TAG" "$REPO:latest"
    echo "build.sh: $TAG is up to date" >&2
    echo "$TAG"
    exit 0
fi
rootfs_need_root
command -v npx >/dev/null || { echo "build.sh: node/npx is missing (the console is built with Vite)" >&2; exit 1; }
[ -d "$CONSOLE/node_modules" ] || { echo "build.sh: $CONSOLE/node_modules is missing (make console)" >&2; exit 1; }

WORK="$(mktemp -d /var/tmp/remotegpu-platform-build.XXXXXX)"
trap 'rootfs_cleanup; rm -rf "$WORK"' EXIT
mkdir -p "$CACHE_DIR/pip"

# Stage 1a: the console, built into a scratch directory (the worktree's dist/ is not touched).
rootfs_step "vite build of the console"
(cd "$CONSOLE" && npx vite build --logLevel error --outDir "$WORK/console-dist" --emptyOutDir) >&2

# The platform's sources, copied clean (what ships, nothing built in the worktree).
mkdir -p "$WORK/project"
(cd "$ROOT" && inputs | grep '^src/\|^pyproject.toml$' | tar -cf - -T -) | tar -C "$WORK/project" -xf -

# Stage 2: the runtime rootfs.
rootfs_begin
mapfile -t packages < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$HERE/packages.txt")
rootfs_apt "${packages[@]}"
# Stage 1b (builder, in the rootfs: its Python decides the environment markers): wheels
# of the platform and every dependency, with pip's cache kept outside the image.
rootfs_step "pip wheel in a builder venv (platform + dependencies)"
rootfs_bind "$CACHE_DIR/pip" "$ROOTFS/root/.cache/pip"
rootfs_bind "$WORK/project" "$ROOTFS/tmp/project"
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/tmp/host-ca.crt" 2>/dev/null || true
pip_env=(PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore)
[ -s "$ROOTFS/tmp/host-ca.crt" ] && pip_env+=(PIP_CERT=/tmp/host-ca.crt)
[ -n "${PIP_INDEX_URL:-}" ] && pip_env+=(PIP_INDEX_URL="$PIP_INDEX_URL")
rootfs_quietly in_root python3 -m venv /tmp/builder
rootfs_quietly in_root env "${pip_env[@]}" /tmp/builder/bin/pip wheel -q --wheel-dir /tmp/wheels /tmp/project
# Stage 2b: the runtime venv, from those wheels only.
rootfs_step "venv /opt/remotegpu from the wheels (no index)"
rootfs_quietly in_root python3 -m venv /opt/remotegpu
rootfs_quietly in_root env "${pip_env[@]}" \
    /opt/remotegpu/bin/pip install -q --no-index --find-links /tmp/wheels --no-compile remotegpu
umount "$ROOTFS/tmp/project" && unset '_mounted[-1]'
umount "$ROOTFS/root/.cache/pip" && unset '_mounted[-1]'
rm -rf "$ROOTFS/tmp/builder" "$ROOTFS/tmp/wheels" "$ROOTFS/tmp/project" "$ROOTFS/tmp/host-ca.crt"
site="$(echo "$ROOTFS"/opt/remotegpu/lib/python3*/site-packages)"
mkdir -p "$site/remotegpu/entrypoints/console"
cp -a "$WORK/console-dist" "$site/remotegpu/entrypoints/console/dist"
# pip and setuptools are not needed at run time.
rootfs_quietly in_root /opt/remotegpu/bin/pip uninstall -q -y pip setuptools
rootfs_quietly in_root /opt/remotegpu/bin/python -m compileall -q -j 0 /opt/remotegpu/lib
install -m 0755 "$HERE/entrypoint.sh" "$ROOTFS/usr/local/bin/remotegpu-entrypoint"
mkdir -p "$ROOTFS/var/lib/remotegpu"
chmod 0700 "$ROOTFS/var/lib/remotegpu"

rootfs_import "$TAG" \
    --change 'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/remotegpu-entrypoint"]' \
    --change 'CMD ["serve"]' \
    --change 'ENV PATH=/opt/remotegpu/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
    --change 'ENV REMOTEGPU_HTTP_HOST=0.0.0.0' \
    --change 'ENV REMOTEGPU_DATA_DIR=/var/lib/remotegpu' \
    --change 'WORKDIR /var/lib/remotegpu' \
    --change 'EXPOSE 8080' \
    --change "LABEL remotegpu.image=platform" \
    --change "LABEL remotegpu.inputs=$HASH"
docker tag "$TAG" "$REPO:latest"
prune_older "$REPO" "$HASH"
size=$(docker image inspect -f '{{ .Size }}' "$TAG")
rootfs_step "built $TAG ($(( size / 1024 / 1024 )) MiB)"
echo "$TAG"
