#!/bin/sh
# The platform image's entrypoint: `serve`, `worker`, `agent`, `migrate`, or any other
# `remotegpu` subcommand (create-admin, openapi, push-base-image, images, job...).
#   serve    the API server (REMOTEGPU_HTTP_HOST defaults to 0.0.0.0 in the image)
#   worker   Dramatiq workers + the periodic housekeeping (needs REMOTEGPU_REDIS_URL)
#   agent    the host agent; --server defaults to $REMOTEGPU_SERVER_URL and --token to
#            $REMOTEGPU_AGENT_TOKEN (only needed until the agent has registered)
#   migrate  apply the migrations; then, when REMOTEGPU_ADMIN_USERNAME and
#            REMOTEGPU_ADMIN_PASSWORD are set, make sure that admin exists (done here, once,
#            so N serve replicas starting together never race to create it)
set -eu
cmd="${1:-serve}"
[ $# -gt 0 ] && shift
case "$cmd" in
    agent)
        set -- agent ${REMOTEGPU_SERVER_URL:+--server "$REMOTEGPU_SERVER_URL"} \
            ${REMOTEGPU_AGENT_TOKEN:+--token "$REMOTEGPU_AGENT_TOKEN"} "$@"
        exec remotegpu "$@" ;;
    migrate)
        remotegpu migrate "$@"
        if [ -n "${REMOTEGPU_ADMIN_USERNAME:-}" ] && [ -n "${REMOTEGPU_ADMIN_PASSWORD:-}" ]; then
            remotegpu create-admin "$REMOTEGPU_ADMIN_USERNAME" ${REMOTEGPU_ADMIN_EMAIL:+--email "$REMOTEGPU_ADMIN_EMAIL"}
        fi ;;
    sh|bash) exec "$cmd" "$@" ;;
    *) exec remotegpu "$cmd" "$@" ;;
esac
