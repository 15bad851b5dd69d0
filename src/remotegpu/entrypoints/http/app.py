"""aiohttp application factory."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import AsyncIterator

from aiohttp import web

from remotegpu.entrypoints import bootstrap
from remotegpu.entrypoints.containers import Container, close_container
from remotegpu.entrypoints.embedded_agent import embedded_agent_ctx, sweeper_ctx
from remotegpu.application.environments.app_access import AppCredentials
from remotegpu.entrypoints.config import ConfigError
from remotegpu.entrypoints.http import apps, console, proxy, serve, session, system
from remotegpu.entrypoints.http.errors import error_middleware
from remotegpu.entrypoints.http.handlers import api, events
from remotegpu.entrypoints.http.keys import APP_URL, CONTAINER
from remotegpu.entrypoints.http.middleware import HttpMetrics, auth_middleware, make_request_middleware
from remotegpu.entrypoints.http.openapi import build_spec
from remotegpu.entrypoints.webhooks_runner import webhooks_ctx
from remotegpu.entrypoints.support_runner import support_ctx
from remotegpu.entrypoints.billing_runner import billing_ctx
from remotegpu.entrypoints.monitoring_runner import monitoring_ctx
from remotegpu.entrypoints.ssh_gateway_runner import ssh_gateway_ctx

log = logging.getLogger("remotegpu.app")
MAX_BODY_BYTES = 1024 * 1024


def create_app(container: Container, *, run_background: bool = True, bootstrap_admin: bool = False) -> web.Application:
    metrics = HttpMetrics()
    settings = container.settings()
    try:
        apps_config = apps.apps_config(settings)
    except apps.AppsDomainError as exc:
        raise ConfigError(str(exc)) from None
    if warning := apps.same_site_warning(apps_config):
        log.warning(warning)
    # App hosts are answered by apps_middleware, ahead of the platform's authentication:
    # no console cookie or Bearer token is ever looked at there.
    app = web.Application(
        middlewares=[make_request_middleware(metrics), error_middleware, apps.make_apps_middleware(lambda a: a[apps.APPS_KEY]),
                     auth_middleware, session.session_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    app[CONTAINER] = container
    app[system.METRICS_KEY] = metrics
    session.install(app, container.config.secret_key(), settings.public_url)
    api.install(app)
    events.install(app)
    jupyter = proxy.install(app)
    app[apps.APPS_KEY] = apps.Apps(app, apps_config, AppCredentials(container.config.secret_key()), jupyter)
    app[APP_URL] = apps_config.app_url
    serve.install(app, container)  # inference services' router ({id}--serve.{apps domain})
    system.install(app, lambda: build_spec(api.routes))
    console.install(app, console.DEFAULT_DIST)

    async def container_ctx(app: web.Application) -> AsyncIterator[None]:
        if container.settings().smtp_host:
            log.info("email notifications: on, through %s:%s", container.settings().smtp_host, container.settings().smtp_port)
        else:
            log.info("email notifications: off (REMOTEGPU_SMTP_HOST is not set); in-app notifications only")
        if bootstrap_admin:
            await bootstrap.ensure_first_admin(container)
            await bootstrap.seed_base_image(container)
        # Redis-backed cache and change feed hear other processes through a listener each.
        listeners = [asyncio.create_task(c.listen()) for c in (container.user_cache(), container.change_feed()) if hasattr(c, "listen")]
        yield
        for listener in listeners:
            listener.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        await close_container(container)

    app.cleanup_ctx.append(container_ctx)
    if run_background:
        app.cleanup_ctx.append(sweeper_ctx(container))
        app.cleanup_ctx.append(webhooks_ctx(container))
        if container.config.queue() == "inline":  # with Redis, `remotegpu worker` runs them (support.sweep)
            app.cleanup_ctx.append(support_ctx(container))
        app.cleanup_ctx.append(billing_ctx(container))
        app.cleanup_ctx.append(monitoring_ctx(container))
        if container.settings().embedded_agent:
            app.cleanup_ctx.append(embedded_agent_ctx(container))
        app.cleanup_ctx.append(serve.serve_ctx(container))
        if container.settings().ssh_gateway_port:
            app.cleanup_ctx.append(ssh_gateway_ctx(container))
    if run_background and container.config.queue() == "inline":
        app.cleanup_ctx.append(_maintenance_loop(container))
    return app


def _maintenance_loop(container: Container):
    """Embedded mode: the periodic housekeeping a Dramatiq worker does in production."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        interval = container.settings().maintenance_interval_seconds

        async def loop() -> None:
            queue = container.task_queue()
            while True:
                # Jitter so that several embedded servers do not all sweep at once.
                await asyncio.sleep(interval * (0.9 + secrets.randbelow(200) / 1000))
                for task in container.task_handlers():
                    await queue.enqueue(task)

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return ctx
