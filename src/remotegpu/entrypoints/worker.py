"""Dramatiq worker module: ``remotegpu worker`` runs ``dramatiq remotegpu.entrypoints.worker``.

Each worker process builds its own container lazily, on the event loop that
Dramatiq's AsyncIO middleware owns, so engines and clients live on that loop.
"""

from __future__ import annotations

import dramatiq
from dramatiq.asyncio import get_event_loop_thread

from remotegpu.adapters.tasks.dramatiq_queue import QUEUE_NAME, make_broker
from remotegpu.entrypoints.config import load_settings_or_exit
from remotegpu.entrypoints.containers import Container, build_container, close_container

TASK_NAMES = ("identity.purge_expired_refresh_tokens", "identity.purge_old_audit_events",
              "notifications.deliver", "notifications.send_due", "storage.collect",
              "monitoring.evaluate_alerts", "monitoring.compact", "support.sweep", "workloads.purge_job_logs")
#: Tasks the scheduler enqueues on their own cadence (a Settings field, in seconds), not hourly.
OWN_CADENCE = {"support.sweep": "support_sweep_interval_seconds"}

_settings = load_settings_or_exit()
if not _settings.redis_url:
    raise SystemExit("remotegpu worker: REMOTEGPU_REDIS_URL is required (embedded mode runs tasks in-process)")
_container: Container | None = None


class _CloseContainerOnShutdown(dramatiq.Middleware):
    """Dispose the worker's engine and clients when the worker stops. Without it the
    process never exits: aiosqlite keeps one non-daemon thread per open connection,
    and interpreter shutdown waits for it forever (a stopped worker stayed behind)."""

    def before_worker_shutdown(self, broker, worker) -> None:  # runs before AsyncIO stops its loop
        global _container
        loop_thread = get_event_loop_thread()
        if _container is not None and loop_thread is not None:
            loop_thread.run_coroutine(close_container(_container))
        _container = None


_broker = make_broker(_settings.redis_url, _settings.redis_namespace)
_broker.add_middleware(_CloseContainerOnShutdown())
dramatiq.set_broker(_broker)


def container() -> Container:
    global _container  # one per worker process, created on its event loop
    if _container is None:
        _container = build_container(_settings)
    return _container


def _make_actor(name: str):
    async def run(**kwargs) -> None:
        await container().task_handlers()[name](**kwargs)

    run.__name__ = name.replace(".", "_")
    return dramatiq.actor(run, actor_name=name, queue_name=QUEUE_NAME, max_retries=3)


ACTORS = {name: _make_actor(name) for name in TASK_NAMES}
