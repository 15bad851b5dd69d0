"""A Jupyter server extension: listen on a Unix socket as well as on the TCP port.

RemoteGPU's proxy reaches the JupyterLab of an environment on its own machine through
this socket (as ``/proc/<container pid>/root/<path>``), which skips TCP, the Docker
bridge and its netfilter rules: a 1 MiB download takes about a fifth less time than
over the container's IP. The socket (``REMOTEGPU_JUPYTER_SOCKET``, mode 0600) can be
reached from inside the container and by root on the host only. Jupyter's own
``--sock`` would replace the TCP port, which the proxies of remote hosts still need.
"""

import os
import socket

from tornado.netutil import bind_unix_socket

#: Send buffer of each connection on the socket (the kernel caps it at net.core.wmem_max).
#: A Unix stream socket's in-flight data is bounded by the sender's buffer alone, 208 KiB
#: by default: a 1 MiB answer would stop five times for the proxy to catch up.
SEND_BUFFER = 4 * 1024 * 1024


def _jupyter_server_extension_points():
    return [{"module": "jupyter_unix_socket"}]


def _load_jupyter_server_extension(serverapp):
    path = os.environ.get("REMOTEGPU_JUPYTER_SOCKET", "")
    if not path:
        return

    def listen():  # runs once the loop starts, after the HTTP server was made
        server = serverapp.http_server
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            server.add_socket(bind_unix_socket(path, mode=0o600))  # replaces a stale socket file
            serverapp.log.info("RemoteGPU: also listening on %s", path)
        except (OSError, ValueError) as exc:  # the TCP port still serves
            serverapp.log.warning("RemoteGPU: cannot listen on %s: %s", path, exc)
            return
        handle_stream = server.handle_stream

        def widened(stream, address):
            if stream.socket.family == socket.AF_UNIX:
                try:
                    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
                except OSError:
                    pass
            return handle_stream(stream, address)

        server.handle_stream = widened

    serverapp.io_loop.add_callback(listen)
