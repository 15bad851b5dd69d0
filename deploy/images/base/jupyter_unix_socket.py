"""A Jupyter server extension: listen on a Unix socket as well as on the TCP port.

RemoteGPU's proxy reaches the JupyterLab of an environment on its own machine through
this socket (as ``/proc/<container pid>/root/<path>``), which skips TCP, the Docker
bridge and its netfilter rules: a 1 MiB download takes about a fifth less time than
over the container's IP. The socket (``REMOTEGPU_JUPYTER_SOCKET``, mode 0600) can be
reached from inside the container and by root on the host only. Jupyter's own
``--sock`` would replace the TCP port, which the proxies of remote hosts still need.
"""

import os

from tornado.netutil import bind_unix_socket


def _jupyter_server_extension_points():
    return [{"module": "jupyter_unix_socket"}]


def _load_jupyter_server_extension(serverapp):
    path = os.environ.get("REMOTEGPU_JUPYTER_SOCKET", "")
    if not path:
        return

    def listen():  # runs once the loop starts, after the HTTP server was made
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            serverapp.http_server.add_socket(bind_unix_socket(path, mode=0o600))  # replaces a stale socket file
            serverapp.log.info("RemoteGPU: also listening on %s", path)
        except (OSError, ValueError) as exc:  # the TCP port still serves
            serverapp.log.warning("RemoteGPU: cannot listen on %s: %s", path, exc)

    serverapp.io_loop.add_callback(listen)
