#!/usr/bin/env bash
# Registry garbage collection for RemoteGPU's image registry (Debian's docker-registry /
# CNCF distribution 2.x). Deleting an image in RemoteGPU deletes its manifest through the
# registry API at once; the layers (blobs) it alone used stay on disk until this runs.
#
#   deploy/registry/gc.sh /etc/docker/registry/config.yml [--dry-run]
#
# Distribution's GC is not safe against concurrent pushes: a push that lands while it
# runs may lose blobs. Run it in a quiet window with the registry read-only (set
# `storage.maintenance.readonly.enabled: true` and restart, or stop it), e.g. from cron:
#   0 4 * * 0  root  systemctl stop docker-registry && /opt/remotegpu/deploy/registry/gc.sh /etc/docker/registry/config.yml; systemctl start docker-registry
# The config must have `storage.delete.enabled: true` (RemoteGPU deletes manifests).
# Harbor: use its own "Garbage Collection" schedule instead (Administration → Clean Up).
set -euo pipefail
config="${1:?usage: gc.sh CONFIG.yml [--dry-run]}"
shift
registry="${REGISTRY_BIN:-$(command -v docker-registry || command -v registry || true)}"
[ -n "$registry" ] || { echo "gc.sh: docker-registry (or registry) not found" >&2; exit 1; }
exec "$registry" garbage-collect --delete-untagged "$@" "$config"
