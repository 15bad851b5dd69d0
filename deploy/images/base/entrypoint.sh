#!/bin/bash
# remotegpu-entrypoint: PID 1 of a RemoteGPU environment.
#
# Starts sshd and JupyterLab, restarts either if it dies, and on SIGTERM/SIGINT
# stops both within ~1.5 s so `docker stop` is fast. Configuration (all optional):
#   REMOTEGPU_SSH_PORT            sshd port                       (22)
#   REMOTEGPU_AUTHORIZED_KEYS     public keys appended to /root/.ssh/authorized_keys
#   REMOTEGPU_JUPYTER_ENABLED     0 disables JupyterLab           (1)
#   REMOTEGPU_JUPYTER_IP          bind address                    (0.0.0.0)
#   REMOTEGPU_JUPYTER_PORT        port                            (8888)
#   REMOTEGPU_JUPYTER_BASE_URL    ServerApp.base_url              (/)
#   REMOTEGPU_JUPYTER_TOKEN       token; unset lets Jupyter generate one
#   REMOTEGPU_JUPYTER_SOCKET      also listen on this Unix socket, mode 0600; empty: none
#                                 (/run/remotegpu/jupyter.sock; the platform's proxy uses it
#                                 on its own machine, see jupyter_unix_socket.py)
set -u

SSH_PORT="${REMOTEGPU_SSH_PORT:-22}"
JUPYTER_ENABLED="${REMOTEGPU_JUPYTER_ENABLED:-1}"
JUPYTER_IP="${REMOTEGPU_JUPYTER_IP:-0.0.0.0}"
JUPYTER_PORT="${REMOTEGPU_JUPYTER_PORT:-8888}"
JUPYTER_BASE_URL="${REMOTEGPU_JUPYTER_BASE_URL:-/}"
export REMOTEGPU_JUPYTER_SOCKET="${REMOTEGPU_JUPYTER_SOCKET-/run/remotegpu/jupyter.sock}"
WORKSPACE=/root/workspace

sshd_pid=""
jupyter_pid=""
stopping=0

log() { echo "remotegpu-entrypoint: $*" >&2; }

prepare_sshd() {
    mkdir -p /run/sshd /root/.ssh
    chmod 0755 /run/sshd
    chmod 0700 /root/.ssh
    touch /root/.ssh/authorized_keys
    chmod 0600 /root/.ssh/authorized_keys
    if [ -n "${REMOTEGPU_AUTHORIZED_KEYS:-}" ]; then
        printf '%s\n' "$REMOTEGPU_AUTHORIZED_KEYS" >>/root/.ssh/authorized_keys
    fi
    # Host keys are made per container (never baked into the image). One ed25519 key
    # (a few ms; `ssh-keygen -A` spent ~0.5 s on its RSA key), the only type sshd_config
    # names: the platform's agent replaces it with the environment's own ed25519 key.
    if [ ! -s /etc/ssh/ssh_host_ed25519_key ]; then
        ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key >/dev/null
    fi
    export_environment_to_ssh_sessions
}

# SSH sessions do not inherit the container's environment; pam_env reads
# /etc/environment, so GPU variables (CUDA_VISIBLE_DEVICES, ...) reach them too.
# Secrets (the Jupyter token) and per-process variables stay out.
export_environment_to_ssh_sessions() {
    local name value
    : >/etc/environment
    while IFS='=' read -r -d '' name value; do
        case "$name" in
            REMOTEGPU_JUPYTER_TOKEN|JUPYTER_TOKEN|REMOTEGPU_JUPYTER_SOCKET|REMOTEGPU_AUTHORIZED_KEYS|HOME|HOSTNAME|PWD|SHLVL|TERM|_) continue ;;
        esac
        case "$value" in *$'\n'*|*'"'*) continue ;; esac
        printf '%s="%s"\n' "$name" "$value" >>/etc/environment
    done < <(env -0)
}

start_sshd() {
    /usr/sbin/sshd -D -e -p "$SSH_PORT" &
    sshd_pid=$!
}

start_jupyter() {
    [ "$JUPYTER_ENABLED" = "0" ] && return
    (
        cd "$WORKSPACE" || exit 1
        # jupyter_server reads JUPYTER_TOKEN itself: the token stays off the command line.
        if [ -n "${REMOTEGPU_JUPYTER_TOKEN:-}" ]; then export JUPYTER_TOKEN="$REMOTEGPU_JUPYTER_TOKEN"; fi
        unset REMOTEGPU_JUPYTER_TOKEN
        # jupyter-lab itself, not `jupyter lab` (which would start a second Python to exec it).
        exec /opt/jupyter/bin/jupyter-lab \
            --allow-root --no-browser \
            --ip="$JUPYTER_IP" --port="$JUPYTER_PORT" \
            --ServerApp.base_url="$JUPYTER_BASE_URL" \
            --ServerApp.root_dir="$WORKSPACE" \
            --ServerApp.allow_remote_access=True \
            --ServerApp.port_retries=0 \
            --ServerApp.jpserver_extensions="{'jupyter_unix_socket': True}"
    ) &
    jupyter_pid=$!
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

shutdown() {
    stopping=1
    log "stopping"
    [ -n "$jupyter_pid" ] && kill -TERM "$jupyter_pid" 2>/dev/null
    [ -n "$sshd_pid" ] && kill -TERM "$sshd_pid" 2>/dev/null
    for _ in $(seq 15); do
        alive "$jupyter_pid" || alive "$sshd_pid" || exit 0
        sleep 0.1
    done
    kill -KILL "$jupyter_pid" "$sshd_pid" 2>/dev/null
    exit 0
}
trap shutdown TERM INT

# JupyterLab first: it takes longest to come up (~0.4 s of CPU) and needs only the
# workspace; sshd's preparation then runs while it starts.
mkdir -p "$WORKSPACE"
start_jupyter
prepare_sshd
start_sshd
log "sshd on port $SSH_PORT; jupyter on $JUPYTER_IP:$JUPYTER_PORT$JUPYTER_BASE_URL (enabled=$JUPYTER_ENABLED)"

# A service that dies (a user may kill it from a terminal) is restarted, not fatal.
while [ "$stopping" = 0 ]; do
    wait -n 2>/dev/null || true
    [ "$stopping" = 0 ] || break
    if ! alive "$sshd_pid"; then log "sshd exited; restarting"; sleep 1; start_sshd; fi
    if [ "$JUPYTER_ENABLED" != "0" ] && ! alive "$jupyter_pid"; then
        log "jupyter exited; restarting"; sleep 1; start_jupyter
    fi
done
