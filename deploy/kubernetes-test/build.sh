#!/usr/bin/env bash
# Builds kube-apiserver, kube-scheduler and kube-controller-manager (Kubernetes 1.20.2) for the
# Kubernetes runtime adapter's tests, offline, from Debian bookworm's SOURCE package
# `kubernetes` (1.20.5+really1.20.2, all Go dependencies vendored) with Debian's Go 1.19.
#
#   * GOPATH mode (GO111MODULE=off): the tree is placed at $GOPATH/src/k8s.io/kubernetes so
#     vendor/ (with its symlinks into staging/) resolves without the module proxy;
#   * the vendored openapi-gen runs first (pkg/generated/openapi is not in the tarball);
#   * the vendored modern-go/reflect2 and json-iterator are replaced by Debian's
#     golang-github-modern-go-reflect2-dev / golang-github-json-iterator-go-dev (the vendored
#     reflect2 1.0.1 crashes on Go >= 1.18).
#
# The binaries go to $REMOTEGPU_CACHE_DIR/kubernetes-<version>/ (outside the repository),
# keyed by version; the build runs only when one is missing, so the script is idempotent.
# Prints the binary directory on stdout; everything else goes to stderr.
set -euo pipefail
KUBE_VERSION=1.20.2
DEB_VERSION_GLOB='1.20.5+really1.20.2*'
CACHE=${REMOTEGPU_CACHE_DIR:-/var/cache/remotegpu}
OUT="$CACHE/kubernetes-$KUBE_VERSION"
BINS=(kube-apiserver kube-scheduler kube-controller-manager)
log() { echo "[kubernetes-build] $*" >&2; }

have_all() { for b in "${BINS[@]}"; do [ -x "$OUT/$b" ] || return 1; done; }
if have_all; then echo "$OUT"; exit 0; fi

# One build at a time (services.sh and a developer may run it together).
mkdir -p "$CACHE"
exec 9>"$CACHE/kubernetes-$KUBE_VERSION.lock"
flock 9
if have_all; then echo "$OUT"; exit 0; fi

APT_LOG="$CACHE/kubernetes-build-apt.log"
need=()
[ -x /usr/lib/go-1.19/bin/go ] || need+=(golang-1.19-go)
[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need+=(golang-github-modern-go-reflect2-dev)
[ -d /usr/share/gocode/src/github.com/json-iterator/go ] || need+=(golang-github-json-iterator-go-dev)
command -v dpkg-source >/dev/null || need+=(dpkg-dev)
apt-get update -qq >"$APT_LOG" 2>&1 || { tail -n 20 "$APT_LOG" >&2; exit 1; }
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >>"$APT_LOG" 2>&1 \
    || { tail -n 30 "$APT_LOG" >&2; exit 1; }
fi

# Source packages: the machine's sources list has no deb-src entries, so a private apt
# configuration (its own sources list and lists directory, nothing in /etc changes) asks
# the same Debian mirror for bookworm's sources.
SRC_APT="$CACHE/apt-src"
mkdir -p "$SRC_APT/lists/partial"
if [ ! -f "$SRC_APT/sources.list" ]; then
  mirror=$(grep -h -m1 -E '^URIs: .*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main" >"$SRC_APT/sources.list"
fi
APT_SRC_OPTS=(-o "Dir::Etc::SourceList=$SRC_APT/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
              -o "Dir::State::Lists=$SRC_APT/lists")

WORK=$(mktemp -d "$CACHE/kubernetes-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
log "fetching Debian's source package kubernetes into $WORK"
apt-get "${APT_SRC_OPTS[@]}" update -qq >>"$APT_LOG" 2>&1 || { tail -n 20 "$APT_LOG" >&2; exit 1; }
(cd "$WORK" && apt-get "${APT_SRC_OPTS[@]}" source --download-only kubernetes >>"$APT_LOG" 2>&1) \
  || { tail -n 20 "$APT_LOG" >&2; exit 1; }
orig=$(ls "$WORK"/kubernetes_$DEB_VERSION_GLOB.orig.tar.gz 2>/dev/null | head -n1)
[ -n "$orig" ] || { log "no kubernetes $DEB_VERSION_GLOB source in bookworm"; ls "$WORK" >&2; exit 1; }

export GOPATH="$WORK/gopath" GO111MODULE=off CGO_ENABLED=0
export GOFLAGS= GOCACHE="$WORK/gocache" GOTOOLCHAIN=local HOME="$WORK"
export PATH="/usr/lib/go-1.19/bin:$PATH"
SRC="$GOPATH/src/k8s.io/kubernetes"
mkdir -p "$SRC"
tar xzf "$orig" -C "$SRC" --strip-components=1

# Debian's patches (kubectl printing, CVE-2021-25743) do not touch the three servers.
log "replacing vendored reflect2/json-iterator with Debian's"
rm -rf "$SRC/vendor/github.com/modern-go/reflect2" "$SRC/vendor/github.com/json-iterator/go"
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$SRC/vendor/github.com/modern-go/reflect2"
cp -r /usr/share/gocode/src/github.com/json-iterator/go "$SRC/vendor/github.com/json-iterator/go"
find "$SRC/vendor/github.com/modern-go/reflect2" "$SRC/vendor/github.com/json-iterator/go" \
  \( -name '*_test.go' -o -name go.mod -o -name go.sum \) -delete

cd "$SRC"
JOBS=${KUBE_BUILD_JOBS:-2}
log "building openapi-gen"
nice -n 10 go build -p "$JOBS" -o "$WORK/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
log "generating pkg/generated/openapi"
dirs=$( { find pkg cmd plugin -type f -name '*.go' ! -name '*_test.go'; \
          find -L vendor/k8s.io -type f -name '*.go' ! -name '*_test.go'; } \
        | grep -v -E '^vendor/k8s.io/(code-generator|sample-apiserver)/' \
        | xargs grep --color=never -l '^// *+k8s:openapi-gen=' \
        | xargs -n1 dirname | LC_ALL=C sort -u \
        | sed 's#^#k8s.io/kubernetes/#' | paste -sd, -)
nice -n 10 "$WORK/openapi-gen" --logtostderr -v 0 -i "$dirs" \
  -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
  -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r "$WORK/openapi-violations.report" >&2
[ -s pkg/generated/openapi/zz_generated.openapi.go ] || { log "openapi-gen produced nothing"; exit 1; }

V=k8s.io/kubernetes/vendor/k8s.io/component-base/version
LDFLAGS="-s -w -X $V.gitVersion=v$KUBE_VERSION -X $V.gitMajor=1 -X $V.gitMinor=20 -X $V.gitTreeState=clean -X $V.buildDate=1970-01-01T00:00:00Z"
log "building ${BINS[*]} (GOPATH mode, -p $JOBS; several minutes)"
mkdir -p "$WORK/bin"
nice -n 10 go build -p "$JOBS" -ldflags "$LDFLAGS" -o "$WORK/bin/" \
  ./cmd/kube-apiserver ./cmd/kube-scheduler ./cmd/kube-controller-manager
mkdir -p "$OUT"
for b in "${BINS[@]}"; do install -m 0755 "$WORK/bin/$b" "$OUT/$b.tmp" && mv "$OUT/$b.tmp" "$OUT/$b"; done
"$OUT/kube-apiserver" --version >&2
echo "$OUT"
