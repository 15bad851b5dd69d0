# Shared by deploy/image/build.sh and deploy/compose/build-images.sh (sourced, not run):
# a Debian 12 minbase rootfs (the same cached debootstrap tarball as
# deploy/images/build-base.sh), apt packages installed in a chroot with .debs cached
# outside the image, then `docker import`. No registry is ever contacted.
#
# Callers set: IMAGE_TOOL (name for messages), and may set REMOTEGPU_IMAGE_CACHE,
# REMOTEGPU_DEBIAN_MIRROR, REMOTEGPU_DEBIAN_SECURITY_MIRROR.

CACHE_DIR="${REMOTEGPU_IMAGE_CACHE:-/var/cache/remotegpu}"
MIRROR="${REMOTEGPU_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
ROOTFS=""
_mounted=()
_started=$(date +%s)

rootfs_step() { echo "$IMAGE_TOOL: [$(( $(date +%s) - _started ))s] $*" >&2; }

rootfs_need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "$IMAGE_TOOL: building images needs root (debootstrap, chroot)" >&2
        exit 1
    fi
    for tool in debootstrap chroot tar; do
        command -v "$tool" >/dev/null || { echo "$IMAGE_TOOL: $tool is missing (apt-get install $tool)" >&2; exit 1; }
    done
}

rootfs_cleanup() {
    local i
    for ((i=${#_mounted[@]}-1; i>=0; i--)); do umount -l "${_mounted[$i]}" 2>/dev/null || true; done
    _mounted=()
    [ -n "$ROOTFS" ] && rm -rf --one-file-system "$ROOTFS"
    ROOTFS=""
}

# Chatty steps log to $CACHE_DIR/<tool>.log; on failure its tail is shown.
rootfs_quietly() {
    "$@" >>"$ROOTFS_LOG" 2>&1 || { echo "$IMAGE_TOOL: failed: $*" >&2; tail -25 "$ROOTFS_LOG" >&2; return 1; }
}

rootfs_bind() { mkdir -p "$2"; mount --bind "$1" "$2"; _mounted+=("$2"); }

in_root() {
    chroot "$ROOTFS" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
}

# The caller traps EXIT with rootfs_cleanup (mounts and the scratch rootfs go).
# rootfs_begin: unpack (or debootstrap once) the minbase rootfs into $ROOTFS, mount
# proc/devpts, bind the apt cache, keep services from starting.
rootfs_begin() {
    local arch rootfs_cache
    arch="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
    mkdir -p "$CACHE_DIR/apt-archives/partial"
    ROOTFS_LOG="$CACHE_DIR/$IMAGE_TOOL.log"
    : >"$ROOTFS_LOG"
    rootfs_cache="$CACHE_DIR/$SUITE-minbase-$arch.tar"
    ROOTFS="$(mktemp -d /var/tmp/remotegpu-rootfs.XXXXXX)"
    if [ -f "$rootfs_cache" ]; then
        rootfs_step "unpacking cached $SUITE minbase rootfs"
        tar -C "$ROOTFS" --numeric-owner -xpf "$rootfs_cache"
    else
        rootfs_step "debootstrap $SUITE minbase from $MIRROR (cached afterwards in $CACHE_DIR)"
        rootfs_quietly debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR"
        tar -C "$ROOTFS" --numeric-owner -cpf "$rootfs_cache.tmp" . && mv "$rootfs_cache.tmp" "$rootfs_cache"
    fi
    mount -t proc proc "$ROOTFS/proc"; _mounted+=("$ROOTFS/proc")
    mount -t devpts -o newinstance,ptmxmode=0666 devpts "$ROOTFS/dev/pts"; _mounted+=("$ROOTFS/dev/pts")
    rootfs_bind "$CACHE_DIR/apt-archives" "$ROOTFS/var/cache/apt/archives"
    cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
    printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"; chmod +x "$ROOTFS/usr/sbin/policy-rc.d"
    # No docs, man pages or locales in a server image.
    cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/remotegpu-slim" <<'SLIM'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
SLIM
    cat >"$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${REMOTEGPU_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} $SUITE-security main
SOURCES
}

# rootfs_apt PKG...: apt-get install without recommends.
rootfs_apt() {
    rootfs_step "apt-get install $*"
    rootfs_quietly in_root apt-get -o APT::Sandbox::User=root -q update
    rootfs_quietly in_root apt-get -o APT::Sandbox::User=root -q -y --no-install-recommends install "$@"
}

# rootfs_import IMAGE [--change ...]...: unmount, clean, import with the given changes.
rootfs_import() {
    local image="$1"; shift
    local i
    rootfs_step "cleaning and importing $image"
    for ((i=${#_mounted[@]}-1; i>=0; i--)); do umount "${_mounted[$i]}"; done
    _mounted=()
    rm -f "$ROOTFS/usr/sbin/policy-rc.d"
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/root/.cache "$ROOTFS"/var/log/*.log \
           "$ROOTFS"/var/log/apt/* "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/tmp/*
    : >"$ROOTFS/etc/resolv.conf"
    : >"$ROOTFS/etc/machine-id"
    tar -C "$ROOTFS" --numeric-owner -c . | docker import "$@" - "$image" >/dev/null
}

# image_label IMAGE LABEL: the label's value, empty when the image or label is missing.
image_label() {
    docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# prune_older REPO KEEP: remove this repository's other tags (older builds), except
# `latest`; an image a container still uses stays (docker rmi refuses it).
prune_older() {
    local tag
    docker images "$1" --format '{{.Tag}}' | grep -vx -e latest -e "$2" -e '<none>' | while read -r tag; do
        docker rmi "$1:$tag" >/dev/null 2>&1 && echo "$IMAGE_TOOL: removed the older $1:$tag" >&2 || true
    done
}
