#!/bin/sh
# The infrastructure image's entrypoint: one Debian-packaged service per container.
#   postgres      PostgreSQL 15; first start: initdb, role $POSTGRES_USER / $POSTGRES_PASSWORD
#                 owning database $POSTGRES_DB (data: /var/lib/postgresql/data)
#   redis         redis-server, append-only file in /var/lib/redis, $REDIS_PASSWORD if set
#   nginx         nginx with /etc/remotegpu/nginx.conf.template (mounted), @PUBLIC_HOST@ and
#                 @APPS_DOMAIN@ replaced from REMOTEGPU_PUBLIC_HOST / REMOTEGPU_APPS_DOMAIN
#   registry      docker-registry (distribution 2.x) with /etc/remotegpu/registry.yml (mounted)
#   prometheus    with /etc/remotegpu/prometheus.yml (mounted); $REMOTEGPU_METRICS_TOKEN is
#                 written to /run/remotegpu/metrics-token for its scrape
#   alertmanager  prometheus-alertmanager with /etc/remotegpu/alertmanager.yml (mounted)
set -eu
service="${1:-}"
[ $# -gt 0 ] && shift
as() { user="$1"; shift; exec setpriv --reuid="$user" --regid="$user" --init-groups "$@"; }
case "$service" in
    postgres)
        bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
        data=/var/lib/postgresql/data
        mkdir -p "$data" /run/postgresql
        chown postgres:postgres "$data" /run/postgresql
        chmod 0700 "$data"
        if [ ! -s "$data/PG_VERSION" ]; then
            : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
            user="${POSTGRES_USER:-remotegpu}" db="${POSTGRES_DB:-remotegpu}"
            setpriv --reuid=postgres --regid=postgres --init-groups \
                "$bin/initdb" -D "$data" -U postgres -E UTF8 --locale=C.UTF-8 --auth-local=peer --auth-host=scram-sha-256 >/dev/null
            echo "host all all 0.0.0.0/0 scram-sha-256" >>"$data/pg_hba.conf"
            pw=$(printf '%s' "$POSTGRES_PASSWORD" | sed "s/'/''/g")
            printf "CREATE ROLE \"%s\" LOGIN PASSWORD '%s';\nCREATE DATABASE \"%s\" OWNER \"%s\";\n" "$user" "$pw" "$db" "$user" |
                setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" --single -D "$data" postgres >/dev/null
            echo "postgres: initialised $data (role $user, database $db)"
        fi
        as postgres "$bin/postgres" -D "$data" -c listen_addresses='*' -c unix_socket_directories=/run/postgresql "$@" ;;
    redis)
        mkdir -p /var/lib/redis && chown redis:redis /var/lib/redis
        set -- --bind 0.0.0.0 --protected-mode no --dir /var/lib/redis --appendonly yes --save "" "$@"
        [ -n "${REDIS_PASSWORD:-}" ] && set -- "$@" --requirepass "$REDIS_PASSWORD"
        as redis redis-server "$@" ;;
    nginx)
        : "${REMOTEGPU_PUBLIC_HOST:?set REMOTEGPU_PUBLIC_HOST}" "${REMOTEGPU_APPS_DOMAIN:?set REMOTEGPU_APPS_DOMAIN}"
        sed -e "s/@PUBLIC_HOST@/$REMOTEGPU_PUBLIC_HOST/g" -e "s/@APPS_DOMAIN@/$REMOTEGPU_APPS_DOMAIN/g" \
            /etc/remotegpu/nginx.conf.template >/run/nginx.conf
        exec nginx -c /run/nginx.conf -g 'daemon off;' "$@" ;;
    registry)
        mkdir -p /var/lib/docker-registry && chown docker-registry: /var/lib/docker-registry 2>/dev/null || true
        exec docker-registry serve /etc/remotegpu/registry.yml ;;
    prometheus)
        mkdir -p /run/remotegpu /var/lib/prometheus/metrics2
        printf '%s' "${REMOTEGPU_METRICS_TOKEN:-}" >/run/remotegpu/metrics-token
        chown -R prometheus: /run/remotegpu /var/lib/prometheus
        as prometheus prometheus --config.file=/etc/remotegpu/prometheus.yml \
            --storage.tsdb.path=/var/lib/prometheus/metrics2 --web.listen-address=:9090 "$@" ;;
    alertmanager)
        mkdir -p /var/lib/prometheus/alertmanager && chown -R prometheus: /var/lib/prometheus
        as prometheus prometheus-alertmanager --config.file=/etc/remotegpu/alertmanager.yml \
            --storage.path=/var/lib/prometheus/alertmanager --web.listen-address=:9093 --cluster.listen-address= "$@" ;;
    *)
        [ -n "$service" ] && exec "$service" "$@"
        echo "infra-entrypoint: postgres | redis | nginx | registry | prometheus | alertmanager" >&2; exit 2 ;;
esac
