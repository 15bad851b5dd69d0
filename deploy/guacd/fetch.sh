#!/usr/bin/env bash
# guacd (Apache Guacamole's proxy daemon) for the remote-desktop tunnel, from Debian
# BULLSEYE's 1.3.0 packages -- bookworm and later dropped guacamole-server, so this is the
# fragile part of the desktop feature: it depends on bullseye staying on the Debian mirror
# and on its OpenSSL 1.1 / libwebp6 / libvncclient 0.9.13 unpacking cleanly next to the
# host's own libraries.
#
# Nothing is installed system-wide: a private apt configuration (its own sources list, lists
# and an empty dpkg status; nothing in /etc changes) downloads the bullseye .debs, and
# `dpkg-deb -x` unpacks them into $REMOTEGPU_CACHE_DIR/guacd-1.3.0/root. Only the VNC client
# plugin is taken (no FreeRDP: RDP would need bullseye's whole FreeRDP 2 stack).
# The libraries guacd needs that the host already has (cairo, libjpeg, libpng, pulse, ssh2,
# gcrypt) come from the host; `ldd` is checked at the end and the script fails if anything
# is unresolved. Run guacd as:
#   LD_LIBRARY_PATH=$DIR/root/usr/lib/x86_64-linux-gnu:$DIR/root/lib/x86_64-linux-gnu \
#     $DIR/root/usr/sbin/guacd -f -b 127.0.0.1 -l PORT
# or use $DIR/guacd (a wrapper that sets LD_LIBRARY_PATH).
# Idempotent (keyed by version, locked); prints the guacd wrapper's path on stdout; all
# other output goes to stderr.
set -euo pipefail
VERSION=1.3.0
CACHE=${REMOTEGPU_CACHE_DIR:-/var/cache/remotegpu}
OUT="$CACHE/guacd-$VERSION"
PKGS=(guacd libguac19 libguac-client-vnc0 libssl1.1 libwebp6 libvncclient1 libossp-uuid16 liblzo2-2)
# From the host (bookworm keeps the same sonames).
HOST_PKGS=(libcairo2 libjpeg62-turbo libpng16-16 libpulse0 libssh2-1 libgcrypt20)
log() { echo "[guacd] $*" >&2; }

if [ -x "$OUT/guacd" ]; then echo "$OUT/guacd"; exit 0; fi
mkdir -p "$CACHE"
exec 9>"$CACHE/guacd-$VERSION.lock"
flock 9
if [ -x "$OUT/guacd" ]; then echo "$OUT/guacd"; exit 0; fi

APT_LOG="$CACHE/guacd-apt.log"
: >"$APT_LOG"
missing=()
for p in "${HOST_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
command -v dpkg-deb >/dev/null || missing+=(dpkg)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing host libraries ${missing[*]}"
  apt-get update -qq >>"$APT_LOG" 2>&1 || { tail -n 20 "$APT_LOG" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >>"$APT_LOG" 2>&1 || { tail -n 30 "$APT_LOG" >&2; exit 1; }
fi

APT_DIR="$CACHE/apt-bullseye"
mkdir -p "$APT_DIR/lists/partial"
mirror=$(grep -h -m1 -E '^URIs: .*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true)
mirror=${mirror:-http://deb.debian.org/debian}
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bullseye main" >"$APT_DIR/sources.list"
APT_OPTS=(-o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
          -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::State::status=/dev/null"
          -o "Dir::Cache=$APT_DIR/cache" -o "APT::Sandbox::User=root")
mkdir -p "$APT_DIR/cache/archives/partial"
log "fetching bullseye's guacamole-server $VERSION packages"
apt-get "${APT_OPTS[@]}" update -qq >>"$APT_LOG" 2>&1 || { tail -n 20 "$APT_LOG" >&2; exit 1; }

WORK=$(mktemp -d "$CACHE/guacd-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && apt-get "${APT_OPTS[@]}" download "${PKGS[@]}" >>"$APT_LOG" 2>&1) \
  || { tail -n 20 "$APT_LOG" >&2; exit 1; }
mkdir -p "$WORK/root"
for deb in "$WORK"/*.deb; do dpkg-deb -x "$deb" "$WORK/root"; done
ver=$(dpkg-deb -f "$WORK"/guacd_*.deb Version)
case "$ver" in "$VERSION"*) ;; *) log "unexpected guacd version $ver"; exit 1;; esac

LIBS="$WORK/root/usr/lib/x86_64-linux-gnu:$WORK/root/lib/x86_64-linux-gnu"
for f in "$WORK/root/usr/sbin/guacd" "$WORK/root/usr/lib/x86_64-linux-gnu/libguac-client-vnc.so.0"; do
  if LD_LIBRARY_PATH="$LIBS" ldd "$f" | grep -q 'not found'; then
    log "unresolved libraries for $f:"; LD_LIBRARY_PATH="$LIBS" ldd "$f" | grep 'not found' >&2; exit 1
  fi
done

rm -rf "$OUT"
mkdir -p "$OUT"
mv "$WORK/root" "$OUT/root"
cat >"$OUT/guacd" <<WRAP
#!/bin/sh
# guacd $ver unpacked from Debian bullseye (deploy/guacd/fetch.sh)
here=\$(dirname "\$0")
LD_LIBRARY_PATH="\$here/root/usr/lib/x86_64-linux-gnu:\$here/root/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" \\
  exec "\$here/root/usr/sbin/guacd" "\$@"
WRAP
chmod +x "$OUT/guacd"
"$OUT/guacd" -v >&2 || true
log "guacd $ver ready in $OUT"
echo "$OUT/guacd"
