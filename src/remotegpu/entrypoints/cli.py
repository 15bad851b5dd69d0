"""The ``remotegpu`` command: serve, worker, migrate, create-admin, openapi, agent."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import signal
import subprocess
import sys

from remotegpu.entrypoints.config import load_settings_or_exit
from remotegpu.entrypoints.logging_setup import configure_logging

log = logging.getLogger("remotegpu.cli")


def _migrate(settings) -> None:
    from remotegpu.adapters.db.migrate import upgrade

    from remotegpu.entrypoints.data_dir import secure_data_dir, sqlite_file_of

    # Before the first connection: SQLite would create the file world-readable.
    secure_data_dir(settings.data_dir, create=True, sqlite_file=sqlite_file_of(settings.effective_database_url))
    upgrade(settings.effective_database_url)


def cmd_migrate(args) -> int:
    settings = load_settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    _migrate(settings)
    print(f"database is up to date ({settings.effective_database_url.split('://')[0]})")
    return 0


def cmd_serve(args) -> int:
    from aiohttp import web

    from remotegpu.entrypoints.containers import build_container
    from remotegpu.entrypoints.http.app import create_app

    overrides = {k: v for k, v in (("http_host", args.host), ("http_port", args.port)) if v is not None}
    settings = load_settings_or_exit(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    if settings.embedded_agent:  # `auto` means Docker: no silent fallback to local processes
        from remotegpu.adapters.runtime.select import runtime_problem

        if (problem := runtime_problem(settings.runtime)) is not None:
            print(f"remotegpu serve: {problem} (or REMOTEGPU_EMBEDDED_AGENT=false for a server without a host)",
                  file=sys.stderr)
            return 2
    if settings.database_url is None:
        _migrate(settings)  # embedded SQLite: keep the file's schema current by itself
    app = create_app(build_container(settings), bootstrap_admin=True)
    app.on_startup.append(_freeze_startup_heap)
    print(f"RemoteGPU serving on http://{settings.http_host}:{settings.http_port}", flush=True)
    web.run_app(app, host=settings.http_host, port=settings.http_port, access_log=None, print=None)
    return 0


async def _freeze_startup_heap(_app) -> None:
    """Move what start-up built (modules, tables, the app) out of the garbage collector's
    reach (``gc.freeze``): a full collection no longer walks ~10^6 objects that live for
    ever, which cost an agent's metric batch more than its parsing and storing together."""
    import gc

    gc.collect()
    gc.freeze()


def cmd_worker(args) -> int:
    """Run Dramatiq workers, and enqueue the periodic housekeeping (one scheduler wins a Redis lock)."""
    settings = load_settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    if not settings.redis_url:
        print("remotegpu worker: set REMOTEGPU_REDIS_URL (embedded mode runs background work in the server)", file=sys.stderr)
        return 2
    child = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "remotegpu.entrypoints.worker", "--processes", str(args.processes),
         "--threads", str(args.threads), "--queues", "remotegpu"]
    )

    def _on_sigterm(signum, frame) -> None:
        # SIGTERM's default would end this process at once and leave Dramatiq's
        # processes running without a parent: end the loop so `finally` stops them.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        asyncio.run(_schedule_periodic(settings, child))
    except KeyboardInterrupt:
        pass
    finally:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return child.returncode or 0


async def _schedule_periodic(settings, child: subprocess.Popen) -> None:
    from redis.asyncio import Redis

    from remotegpu.adapters.tasks.dramatiq_queue import DramatiqTaskQueue, make_broker
    from remotegpu.entrypoints.worker import OWN_CADENCE, TASK_NAMES

    redis = Redis.from_url(settings.redis_url)
    queue = DramatiqTaskQueue(make_broker(settings.redis_url, settings.redis_namespace))
    interval = settings.maintenance_interval_seconds
    # Each cadence has its own Redis key: whichever scheduler sets it first enqueues that round.
    cadences = [("maintenance", interval * 1000, [n for n in TASK_NAMES if n not in OWN_CADENCE])]
    cadences += [(name, int(getattr(settings, field) * 1000), [name]) for name, field in OWN_CADENCE.items()]
    try:
        while child.poll() is None:
            for key, ms, names in cadences:
                if await redis.set(f"{settings.redis_namespace}:scheduler:{key}", os.getpid(), nx=True, px=max(1000, int(ms))):
                    for name in names:
                        await queue.enqueue(name)
            await asyncio.sleep(min(interval, 1, *(ms / 1000 for _, ms, _ in cadences)))
    finally:
        await redis.aclose()


def cmd_create_admin(args) -> int:
    from remotegpu.entrypoints.containers import build_container, close_container

    settings = load_settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    password = args.password or os.environ.get("REMOTEGPU_ADMIN_PASSWORD") or getpass.getpass("password: ")

    async def run() -> None:
        container = build_container(settings)
        try:
            user = await container.admin_service().create_admin(args.username, args.email or f"{args.username}@localhost.localdomain", password)
            print(f"admin '{user.username}' is ready")
        finally:
            await close_container(container)

    from remotegpu.domain.shared.errors import DomainError

    try:
        asyncio.run(run())
    except DomainError as exc:
        print(f"remotegpu create-admin: {exc.message}", file=sys.stderr)
        return 2
    return 0


def cmd_openapi(args) -> int:
    from remotegpu.entrypoints.http.handlers import api
    from remotegpu.entrypoints.http.openapi import build_spec

    print(json.dumps(build_spec(api.routes), indent=2))
    return 0


def cmd_push_base_image(args) -> int:
    """Push the base image (REMOTEGPU_BASE_IMAGE, from this machine's Docker) to the
    configured registry as <registry>/<namespace>/platform/base:<tag> and enter it in the
    catalog as a preloaded platform image: hosts without it pull it from there. Point
    REMOTEGPU_BASE_IMAGE at the printed reference to make it the default everywhere."""
    from remotegpu.entrypoints.containers import build_container, close_container

    settings = load_settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    if not settings.registry_url:
        print("REMOTEGPU_REGISTRY_URL is not set", file=sys.stderr)
        return 2
    import docker

    from remotegpu.adapters.runtime.docker_images import BEARER, push
    from remotegpu.entrypoints.containers import _image_registry

    registry = _image_registry(settings)
    base = settings.base_image
    tag = base.rsplit(":", 1)[-1] if ":" in base.rsplit("/", 1)[-1] else "latest"
    repository = f"{settings.registry_namespace}/platform/base"
    target = registry.reference(repository, tag)
    client = docker.from_env(timeout=600)
    image = client.images.get(base)
    image.tag(target)
    if registry.signer is not None:  # token auth: the platform signs its own push token
        auth: tuple[str, str, str] | None = (registry.address, BEARER, registry.sign(f"repository:{repository}:pull,push", 3600))
    else:
        pair = registry.push_auth()
        auth = None if pair is None else (pair.registry, pair.username, pair.password)
    digest = push(client, target, auth, lambda line: print(line, file=sys.stderr), lambda: False)

    async def enter() -> None:
        container = build_container(settings)
        try:
            entry = await container.image_service().seed(
                target, name="base", tag=tag, size_bytes=int(image.attrs.get("Size", 0)), digest=digest,
                metadata={"os": "Debian 12", "python": "3.11", "frameworks": "JupyterLab"},
            )
            print(entry.reference)
        finally:
            await close_container(container)

    asyncio.run(enter())
    return 0


def cmd_registry_keygen(args) -> int:
    """Write a new token-signing key (for REMOTEGPU_REGISTRY_TOKEN_KEY) and its certificate
    (the registry's `auth: token: rootcertbundle`) into a directory."""
    from pathlib import Path

    from remotegpu.adapters.images.registry_token import JwtRegistryTokenSigner, make_key_and_certificate

    folder = Path(args.directory)
    folder.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = folder / "registry-token.key", folder / "registry-token.crt"
    if key_path.exists() and not args.force:
        print(f"{key_path} exists (--force to replace it)", file=sys.stderr)
        return 2
    key, cert = make_key_and_certificate()
    key_path.touch(mode=0o600)
    key_path.write_bytes(key)
    cert_path.write_bytes(cert)
    kid = JwtRegistryTokenSigner(key, issuer="-", service="-").kid
    print(f"REMOTEGPU_REGISTRY_TOKEN_KEY={key_path}\nrootcertbundle: {cert_path}\nkey id: {kid}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="remotegpu", description="RemoteGPU: a self-hosted GPU cloud")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the API server (embedded mode: everything in one process)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("worker", help="run Dramatiq background workers (needs REMOTEGPU_REDIS_URL)")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--threads", type=int, default=4)
    p.set_defaults(fn=cmd_worker)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(fn=cmd_migrate)
    p = sub.add_parser("create-admin", help="create (or promote) a platform administrator")
    p.add_argument("username")
    p.add_argument("--email")
    p.add_argument("--password", help="default: REMOTEGPU_ADMIN_PASSWORD or prompt")
    p.set_defaults(fn=cmd_create_admin)
    sub.add_parser("openapi", help="print the OpenAPI document").set_defaults(fn=cmd_openapi)
    from remotegpu.entrypoints.agent import add_agent_arguments, cmd_agent  # stdlib-only module

    p = sub.add_parser("agent", help="run the host agent on a GPU machine (registers with --token, then heartbeats)")
    add_agent_arguments(p)
    p.set_defaults(fn=cmd_agent)
    from remotegpu.entrypoints.storage_cli import add_commands as add_storage_commands

    add_storage_commands(sub)  # dataset / model
    sub.add_parser("push-base-image", help="push the base image to REMOTEGPU_REGISTRY_URL and add it to the catalog").set_defaults(
        fn=cmd_push_base_image)
    p = sub.add_parser("registry-keygen", help="a token-signing key and certificate for the registry's token auth")
    p.add_argument("directory")
    p.add_argument("--force", action="store_true")
    p.set_defaults(fn=cmd_registry_keygen)
    from remotegpu.entrypoints.images_cli import add_images_arguments, cmd_images  # stdlib-only module

    p = sub.add_parser("images", help="the image catalog over the API: ls, save, build, logs, cancel, rm")
    add_images_arguments(p)
    p.set_defaults(fn=cmd_images)
    from remotegpu.entrypoints.billing_cli import add_billing_arguments, cmd_billing  # stdlib-only module

    p = sub.add_parser("billing", help="wallets, usage and bills over the API: balance, ledger, usage, bills, bill, topup, …")
    add_billing_arguments(p)
    p.set_defaults(fn=cmd_billing)
    from remotegpu.entrypoints.ssh_sessions_cli import add_ssh_sessions_arguments, cmd_ssh_sessions  # stdlib-only module

    p = sub.add_parser("ssh-sessions", help="the SSH gateway's audit record and session recordings (admins): ls, recording")
    add_ssh_sessions_arguments(p)
    p.set_defaults(fn=cmd_ssh_sessions)
    from remotegpu.entrypoints.job_cli import add_job_arguments, cmd_job

    p = sub.add_parser("job", help="training jobs: run (submit, follow the log, exit with its code), list, logs, cancel")
    add_job_arguments(p)
    p.set_defaults(fn=cmd_job)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
