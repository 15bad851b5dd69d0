"""A small informer: list, then watch from the list's resourceVersion, keep a cache.

One thread per resource kind. A watch that ends (server timeout, dropped connection) is
resumed from the last resourceVersion seen; ``410 Gone`` (the version was compacted away)
or an ERROR event makes it list again (a resync). Readers take the cache under a
condition variable and can wait for a predicate over it: level-triggered waits driven by
watch events, never polling loops.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)


class Informer:
    def __init__(self, list_fn: Callable[..., Any], *, namespace: str | None, label_selector: str, name: str,
                 watch_seconds: int = 240, bookmarks: bool = True) -> None:
        """``namespace`` None: a cluster-scoped kind (``list_fn`` takes no namespace).
        ``watch_seconds``: how long one watch request lasts before it is resumed."""
        self._watch_seconds = watch_seconds
        self._bookmarks = bookmarks
        self._list_fn = list_fn
        self._args: tuple[str, ...] = () if namespace is None else (namespace,)
        self._selector = label_selector
        self.name = name
        self._objects: dict[str, Any] = {}
        self._cond = threading.Condition()
        self._synced = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch = None
        self.relists = 0  # how many times it listed (1 + resyncs after 410 Gone)
        self.last_error = ""

    # -- lifecycle ----------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
            self._thread.start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._synced or self._stop.is_set(), timeout):
                raise TimeoutError(f"{self.name}: the first list did not finish within {timeout:.0f}s: {self.last_error}")

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        with self._cond:
            self._cond.notify_all()

    # -- reading ------------------------------------------------------------------

    def get(self, name: str) -> Any | None:
        with self._cond:
            return self._objects.get(name)

    def items(self) -> list[Any]:
        with self._cond:
            return list(self._objects.values())

    def wait_for(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Wait until ``predicate()`` (called under the cache's lock, with ``get``/``items``
        usable) is truthy; return its last value (falsy on timeout)."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def observe(self, obj: Any) -> None:
        """Put an object the caller just wrote into the cache when it is newer than what
        the watch delivered so far (read-your-writes without waiting for the event)."""
        self._apply("MODIFIED", obj)

    # -- the loop -----------------------------------------------------------------

    def _apply(self, kind: str, obj: Any) -> None:
        name = obj.metadata.name
        with self._cond:
            current = self._objects.get(name)
            if kind == "DELETED":
                if current is not None and current.metadata.uid == obj.metadata.uid:
                    del self._objects[name]
            elif current is None or current.metadata.uid != obj.metadata.uid or \
                    _rv(obj) >= _rv(current):
                self._objects[name] = obj
            self._cond.notify_all()

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listed = self._list_fn(*self._args, label_selector=self._selector, _request_timeout=30)
                    self.relists += 1
                    with self._cond:
                        self._objects = {o.metadata.name: o for o in listed.items}
                        self._synced = True
                        self._cond.notify_all()
                    version = listed.metadata.resource_version
                self._watch = watch.Watch()
                for event in self._watch.stream(self._list_fn, *self._args, label_selector=self._selector,
                                                resource_version=version, timeout_seconds=self._watch_seconds,
                                                allow_watch_bookmarks=self._bookmarks,
                                                _request_timeout=self._watch_seconds + 20):
                    if self._stop.is_set():
                        return
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":  # e.g. 410 Gone delivered as a Status object: list again
                        code = obj.get("code") if isinstance(obj, dict) else getattr(obj, "code", None)
                        log.info("%s: watch error %s, resyncing", self.name, code)
                        version = None
                        break
                    version = obj.metadata.resource_version or version
                    if kind == "BOOKMARK":
                        continue
                    self._apply(kind, obj)
            except ApiException as exc:
                if exc.status == 410:
                    log.info("%s: resourceVersion %s is gone (410), resyncing", self.name, version)
                    version = None
                    continue
                self.last_error = f"{exc.status} {exc.reason}"
                version = None
                self._stop.wait(1.0)
            except Exception as exc:  # noqa: BLE001 - connection dropped: resume from the last version
                if self._stop.is_set():
                    return
                self.last_error = repr(exc)[:300]
                log.debug("%s: watch broke: %r", self.name, exc)
                self._stop.wait(0.5)
                # Resume from ``version``; a version too old answers 410 and we list again.


def _rv(obj: Any) -> int:
    try:
        return int(obj.metadata.resource_version or 0)
    except ValueError:
        return 0


def wait_seconds(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
