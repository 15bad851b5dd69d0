"""A TCP relay whose listening end lives in another process's network namespace.

What an environment's owner can build inside it (root there: stop its sshd, listen on
its port 22, forward to wherever), without depending on what that container may reach:
the listening socket is made inside the container's network namespace (``setns`` in a
short-lived thread; a socket stays in the namespace it was made in), the connections
onward are made from this process's own namespace. Network isolation between tenants
therefore cannot make a relay test pass for the wrong reason. Needs root and the
host's PID namespace (``/proc/<pid>/ns/net``).
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading

CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def listen_in_netns_of(pid: int, port: int) -> socket.socket:
    """A listening TCP socket on 0.0.0.0:``port`` in the network namespace of ``pid``."""
    made: dict[str, object] = {}

    def make() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        theirs = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            _setns(theirs)
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("0.0.0.0", port))
                sock.listen(16)
                made["socket"] = sock
            finally:
                _setns(own)
        except OSError as exc:
            made["error"] = exc
        finally:
            os.close(own)
            os.close(theirs)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if "error" in made:
        raise made["error"]  # type: ignore[misc]
    return made["socket"]  # type: ignore[return-value]


class NetnsRelay:
    """Accepts on ``listener`` and pipes every connection to ``target`` both ways;
    ``connections`` counts the ones relayed. ``close()`` ends it all."""

    def __init__(self, listener: socket.socket, target: tuple[str, int]) -> None:
        self._listener = listener
        self._target = target
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                incoming, _ = self._listener.accept()
            except OSError:
                return
            try:
                outgoing = socket.create_connection(self._target, timeout=10)
                outgoing.settimeout(None)
            except OSError:
                incoming.close()
                continue
            with self._lock:
                self.connections += 1
                self._open += [incoming, outgoing]
            for a, b in ((incoming, outgoing), (outgoing, incoming)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for sock in self._open:
                sock.close()
        self._thread.join(timeout=5)
