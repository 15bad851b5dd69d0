#!/usr/bin/env bash
# Builds the RemoteGPU environment base image locally, with no registry:
# debootstrap a Debian 12 minbase rootfs, add the recipe in base/, `docker import` it.
#
#   ./deploy/images/build-base.sh              build if missing or the recipe changed
#   ./deploy/images/build-base.sh --force      rebuild
#   ./deploy/images/build-base.sh --if-docker  as the default, but exit 0 quietly
#                                              when no Docker daemon answers
# Environment: REMOTEGPU_BASE_IMAGE (remotegpu/base:latest),
#   REMOTEGPU_IMAGE_CACHE (/var/cache/remotegpu), REMOTEGPU_DEBIAN_MIRROR
#   (http://deb.debian.org/debian). Needs root (debootstrap, chroot).
set -euo pipefail

IMAGE="${REMOTEGPU_BASE_IMAGE:-remotegpu/base:latest}"
CACHE_DIR="${REMOTEGPU_IMAGE_CACHE:-/var/cache/remotegpu}"
MIRROR="${REMOTEGPU_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
RECIPE_DIR="$(cd "$(dirname "$0")" && pwd)/base"
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"

force=0
if_docker=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        --if-docker) if_docker=1 ;;
        -h|--help) sed -n '2,12p' "$SELF" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-base.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

if ! docker info >/dev/null 2>&1; then
    [ "$if_docker" = 1 ] && exit 0
    echo "build-base.sh: no Docker daemon answers (start dockerd first)" >&2
    exit 1
fi

# The recipe hash covers every file that shapes the image (not the README).
recipe_hash() {
    (cd "$RECIPE_DIR" && sha256sum packages.txt jupyter-requirements.txt jupyter_server_config.json sshd_config dpkg-excludes \
        entrypoint.sh jupyter_unix_socket.py
     sha256sum "$SELF" | cut -d' ' -f1) | sha256sum | cut -d' ' -f1
}
RECIPE="$(recipe_hash)"
current="$(docker image inspect -f '{{ index .Config.Labels "remotegpu.recipe" }}' "$IMAGE" 2>/dev/null || true)"
if [ "$force" = 0 ] && [ "$current" = "$RECIPE" ]; then
    echo "build-base.sh: $IMAGE is up to date (recipe ${RECIPE:0:12})"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "build-base.sh: building $IMAGE needs root (debootstrap, chroot); try: sudo $0 $*" >&2
    exit 1
fi
for tool in debootstrap chroot tar; do
    command -v "$tool" >/dev/null || { echo "build-base.sh: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done

started=$(date +%s)
arch="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
mkdir -p "$CACHE_DIR/apt-archives/partial" "$CACHE_DIR/pip"
rootfs_cache="$CACHE_DIR/$SUITE-minbase-$arch.tar"
ROOTFS="$(mktemp -d /var/tmp/remotegpu-rootfs.XXXXXX)"

mounted=()
cleanup() {
    local i
    for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
    rm -rf --one-file-system "$ROOTFS"
}
trap cleanup EXIT
bind() { mkdir -p "$2"; mount --bind "$1" "$2"; mounted+=("$2"); }
in_root() { chroot "$ROOTFS" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@"; }

# Chatty build steps log to $BUILD_LOG; on failure its tail is shown.
BUILD_LOG="$CACHE_DIR/build.log"
: >"$BUILD_LOG"
quietly() { "$@" >>"$BUILD_LOG" 2>&1 || { echo "build-base.sh: failed: $*" >&2; tail -25 "$BUILD_LOG" >&2; return 1; }; }
step() { echo "build-base.sh: [$(( $(date +%s) - started ))s] $*"; }

# 1. A minbase rootfs: debootstrap once, then reuse the cached tarball.
if [ -f "$rootfs_cache" ]; then
    step "unpacking cached $SUITE minbase rootfs"
    tar -C "$ROOTFS" --numeric-owner -xpf "$rootfs_cache"
else
    step "debootstrap $SUITE minbase from $MIRROR (cached afterwards in $CACHE_DIR)"
    quietly debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR"
    tar -C "$ROOTFS" --numeric-owner -cpf "$rootfs_cache.tmp" . && mv "$rootfs_cache.tmp" "$rootfs_cache"
fi

# 2. Packages, with downloaded .debs and wheels cached outside the image.
mount -t proc proc "$ROOTFS/proc"; mounted+=("$ROOTFS/proc")
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$ROOTFS/dev/pts"; mounted+=("$ROOTFS/dev/pts")
bind "$CACHE_DIR/apt-archives" "$ROOTFS/var/cache/apt/archives"
bind "$CACHE_DIR/pip" "$ROOTFS/root/.cache/pip"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
install -m 0644 "$RECIPE_DIR/dpkg-excludes" "$ROOTFS/etc/dpkg/dpkg.cfg.d/remotegpu-excludes"
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"; chmod +x "$ROOTFS/usr/sbin/policy-rc.d"
cat >"$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${REMOTEGPU_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} $SUITE-security main
SOURCES
mapfile -t packages < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$RECIPE_DIR/packages.txt")
step "apt-get install ${#packages[@]} packages"
quietly in_root apt-get -o APT::Sandbox::User=root -q update
quietly in_root apt-get -o APT::Sandbox::User=root -q -y --no-install-recommends install "${packages[@]}"

# 3. JupyterLab in its own venv. pip trusts the host's CA bundle (it may hold a proxy's CA).
step "pip install JupyterLab into /opt/jupyter"
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/tmp/host-ca.crt" 2>/dev/null || true
cp "$RECIPE_DIR/jupyter-requirements.txt" "$ROOTFS/tmp/"
quietly in_root python3 -m venv /opt/jupyter
pip_env=(PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore)
[ -s "$ROOTFS/tmp/host-ca.crt" ] && pip_env+=(PIP_CERT=/tmp/host-ca.crt)
[ -n "${PIP_INDEX_URL:-}" ] && pip_env+=(PIP_INDEX_URL="$PIP_INDEX_URL")
quietly in_root env "${pip_env[@]}" /opt/jupyter/bin/pip install -r /tmp/jupyter-requirements.txt
# rfc3987-syntax (pulled in by jupyter-events' jsonschema[format-nongpl]) builds a lark
# grammar when jsonschema imports it: ~1 s of every JupyterLab start, for checking the
# "iri" format of event schemas. Without it jsonschema leaves that format unchecked.
quietly in_root /opt/jupyter/bin/pip uninstall -y rfc3987-syntax lark
# Platform defaults for every JupyterLab (a user's ~/.jupyter config still wins): no
# language-server scan, no classic-notebook shim, no PyPI extension manager, no news or
# update checks (environments may have no Internet; each costs start time or a request).
install -m 0644 "$RECIPE_DIR/jupyter_server_config.json" "$ROOTFS/opt/jupyter/etc/jupyter/jupyter_server_config.json"

# 4. Services: sshd (key-only root login) and the entrypoint.
install -m 0644 "$RECIPE_DIR/sshd_config" "$ROOTFS/etc/ssh/sshd_config.d/remotegpu.conf"
install -m 0755 "$RECIPE_DIR/entrypoint.sh" "$ROOTFS/usr/local/bin/remotegpu-entrypoint"
# Jupyter's extension for the proxy's Unix socket, importable by Jupyter's Python.
install -m 0644 "$RECIPE_DIR/jupyter_unix_socket.py" "$ROOTFS"/opt/jupyter/lib/python3*/site-packages/
# Every module byte-compiled in the image (pip compiled what it installed; this adds the
# extension above and anything it missed), so no start compiles or writes .pyc files.
quietly in_root /opt/jupyter/bin/python -m compileall -q -j 0 /opt/jupyter/lib
# Containers lack CAP_AUDIT_CONTROL: a required pam_loginuid would end every SSH session.
sed -i 's/^session\s\+required\s\+pam_loginuid.so/session optional pam_loginuid.so/' "$ROOTFS/etc/pam.d/sshd"

# 5. Clean up: nothing host- or build-specific stays in the image.
step "cleaning and importing"
for ((i=${#mounted[@]}-1; i>=0; i--)); do umount "${mounted[$i]}"; done
mounted=()
rm -f "$ROOTFS"/etc/ssh/ssh_host_* "$ROOTFS/usr/sbin/policy-rc.d" "$ROOTFS"/tmp/host-ca.crt "$ROOTFS"/tmp/jupyter-requirements.txt
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/root/.cache "$ROOTFS"/var/log/*.log \
       "$ROOTFS"/var/log/apt/* "$ROOTFS"/var/cache/debconf/*-old
: >"$ROOTFS/etc/resolv.conf"
: >"$ROOTFS/etc/machine-id"
mkdir -p "$ROOTFS/root/workspace"

tar -C "$ROOTFS" --numeric-owner -c . | docker import \
    --change 'ENTRYPOINT ["/usr/local/bin/remotegpu-entrypoint"]' \
    --change 'ENV PATH=/opt/jupyter/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'WORKDIR /root/workspace' \
    --change 'EXPOSE 22 8888' \
    --change "LABEL remotegpu.recipe=$RECIPE" \
    --change 'LABEL remotegpu.image=base' \
    --message "remotegpu base image (recipe $RECIPE)" \
    - "$IMAGE" >/dev/null

size=$(docker image inspect -f '{{ .Size }}' "$IMAGE")
echo "build-base.sh: built $IMAGE ($(( size / 1024 / 1024 )) MiB, recipe ${RECIPE:0:12}) in $(( $(date +%s) - started ))s"
