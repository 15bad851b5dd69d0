#!/usr/bin/env bash
# Installs (when missing) and starts the real services the test suite needs:
# PostgreSQL 15, Redis 7, a Docker engine, Chromium. Idempotent: safe on a fresh
# machine and on one where everything already runs. Prints the env vars to export.
set -euo pipefail

log() { echo "[services] $*" >&2; }

need_pkgs=()
command -v pg_ctlcluster >/dev/null || need_pkgs+=(postgresql)
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v chromium >/dev/null || need_pkgs+=(chromium)
command -v ssh >/dev/null || need_pkgs+=(openssh-client)
# A CJK font, so the console's zh-CN screenshots show characters, not boxes.
[ -d /usr/share/fonts/truetype/wqy ] || need_pkgs+=(fonts-wqy-zenhei)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  apt-get update -qq >/tmp/remotegpu-apt.log 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >>/tmp/remotegpu-apt.log 2>&1 || { tail -n 30 /tmp/remotegpu-apt.log >&2; exit 1; }
fi

# PostgreSQL: start the Debian cluster, then a password role for TCP access.
PG_VER=$(ls /usr/lib/postgresql | sort -n | tail -n1)
if ! pg_lsclusters -h 2>/dev/null | grep -q " main "; then
  pg_createcluster "$PG_VER" main >&2
fi
pg_ctlcluster --skip-systemctl-redirect "$PG_VER" main start >/dev/null 2>&1 || true
for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 && break; sleep 0.5; done
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='remotegpu'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE ROLE remotegpu LOGIN PASSWORD 'remotegpu' CREATEDB\"" >&2
for db in remotegpu_test remotegpu_bench; do
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='$db'\"" | grep -q 1 \
    || su postgres -c "createdb -O remotegpu $db" >&2
done

# Redis: in-memory only, loopback.
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" >&2
  for _ in $(seq 1 20); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.25; done
fi

# Docker engine.
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start"; tail -n 20 /var/log/dockerd.log >&2; exit 1; }
fi

# Components of single contexts (an S3 server, a registry, Prometheus...): each has its
# own idempotent installer in services.d/, run here so a fresh CI machine gets them all.
# They print nothing on stdout (stdout is the env file); exports go through the
# REMOTEGPU_SERVICES_ENV file they may append to.
export REMOTEGPU_SERVICES_ENV=$(mktemp)
for part in "$(dirname "$0")"/services.d/*.sh; do
  [ -e "$part" ] || continue
  log "running $(basename "$part")"
  bash "$part" >&2 || { log "$(basename "$part") failed"; exit 1; }
done
cat "$REMOTEGPU_SERVICES_ENV"; rm -f "$REMOTEGPU_SERVICES_ENV"

echo "export REMOTEGPU_TEST_POSTGRES_URL=postgresql+asyncpg://remotegpu:remotegpu@127.0.0.1:5432/remotegpu_test"
echo "export REMOTEGPU_BENCH_POSTGRES_URL=postgresql+asyncpg://remotegpu:remotegpu@127.0.0.1:5432/remotegpu_bench"
echo "export REMOTEGPU_TEST_REDIS_URL=redis://127.0.0.1:6379/15"
