#!/bin/bash
# remotegpu-desktop: PID 1 of a RemoteGPU desktop environment. Starts the desktop in the
# background, then becomes the base image's entrypoint (sshd, JupyterLab).
#
#   Xvfb :1 (REMOTEGPU_DESKTOP_GEOMETRY, 1280x800, 24-bit)
#   XFCE (xfce4-session under its own D-Bus session) and one xterm
#   x11vnc on REMOTEGPU_VNC_PORT (5900), the container's own interface only, with the
#   password REMOTEGPU_VNC_PASSWORD (given by the platform, per environment); without a
#   password no VNC server starts. The platform publishes the port on its host's private
#   address only (like JupyterLab's) and reaches it through guacd.
# REMOTEGPU_DESKTOP=0 starts no desktop (the image then behaves like remotegpu/base).
set -u
log() { echo "remotegpu-desktop: $*" >&2; }
GEOMETRY="${REMOTEGPU_DESKTOP_GEOMETRY:-1280x800}"
VNC_PORT="${REMOTEGPU_VNC_PORT:-5900}"
export DISPLAY=:1

start_desktop() {
    rm -f /tmp/.X1-lock /tmp/.X11-unix/X1
    mkdir -p /tmp/.X11-unix && chmod 1777 /tmp/.X11-unix
    Xvfb :1 -screen 0 "${GEOMETRY}x24" -nolisten tcp +extension RANDR >/tmp/remotegpu-xvfb.log 2>&1 &
    for _ in $(seq 50); do [ -e /tmp/.X11-unix/X1 ] && break; sleep 0.1; done
    (cd /root && HOME=/root dbus-launch --exit-with-session startxfce4 >/tmp/remotegpu-xfce.log 2>&1 &)
    (cd /root/workspace 2>/dev/null || cd /root; HOME=/root xterm -geometry 100x30+40+60 -fa 'DejaVu Sans Mono' -fs 11 \
        -title terminal >/tmp/remotegpu-xterm.log 2>&1 &)
    if [ -n "${REMOTEGPU_VNC_PASSWORD:-}" ]; then
        mkdir -p /root/.vnc
        x11vnc -storepasswd "$REMOTEGPU_VNC_PASSWORD" /root/.vnc/passwd >/dev/null 2>&1
        chmod 0600 /root/.vnc/passwd
        # -forever -shared: several viewers and reconnects; -noxdamage: Xvfb has no damage events worth trusting.
        x11vnc -display :1 -rfbport "$VNC_PORT" -rfbauth /root/.vnc/passwd -forever -shared -noxdamage \
            -quiet -bg -o /tmp/remotegpu-x11vnc.log >/dev/null 2>&1
        log "desktop on :1 ($GEOMETRY), VNC on port $VNC_PORT"
    else
        log "no REMOTEGPU_VNC_PASSWORD: desktop on :1 without a VNC server"
    fi
}

if [ "${REMOTEGPU_DESKTOP:-1}" != 0 ]; then
    start_desktop
fi
# The desktop's password stays out of SSH sessions' environment.
unset REMOTEGPU_VNC_PASSWORD
exec /usr/local/bin/remotegpu-entrypoint "$@"
