"""First start-up: make sure someone can administer the platform."""

from __future__ import annotations

import logging
import secrets
import sys

from remotegpu.entrypoints.containers import Container

log = logging.getLogger("remotegpu.bootstrap")


async def ensure_first_admin(container: Container) -> None:
    """Create the first admin once: from REMOTEGPU_ADMIN_* or with a generated password.

    The generated password is printed once to stdout (never logged) and never again:
    on later starts users already exist and nothing happens.
    """
    settings = container.settings()
    admin = container.admin_service()
    if settings.admin_username and settings.admin_password:
        if not await admin.has_users():
            email = settings.admin_email or f"{settings.admin_username}@localhost.localdomain"
            await admin.create_admin(settings.admin_username, email, settings.admin_password)
            log.info("created first admin from configuration", extra={"username": settings.admin_username})
        return
    if await admin.has_users():
        return
    password = secrets.token_urlsafe(12)
    await admin.create_admin("admin", "admin@localhost.localdomain", password)
    print(
        f"\n  RemoteGPU first start: created admin user 'admin' with password: {password}\n"
        "  (shown once; set REMOTEGPU_ADMIN_USERNAME/REMOTEGPU_ADMIN_PASSWORD to choose your own)\n",
        file=sys.stdout,
        flush=True,
    )


async def seed_base_image(container: Container) -> None:
    """The base image (REMOTEGPU_BASE_IMAGE) is in the catalog from the start, as a
    platform image marked preload (idempotent; another replica may seed it at once)."""
    import logging

    settings = container.settings()
    try:
        await container.image_service().seed(
            settings.base_image, name="base", tag=settings.base_image.rsplit(":", 1)[-1] if ":" in settings.base_image.rsplit("/", 1)[-1] else "latest",
            metadata={"os": "Debian 12", "python": "3.11", "frameworks": "JupyterLab"},
        )
    except Exception as exc:  # noqa: BLE001 - the catalog must not stop the server from starting
        logging.getLogger(__name__).warning("could not seed the base image into the catalog: %s", exc)
    if settings.desktop_image:  # the remote desktop variant (README "Remote desktop"); not preloaded
        try:
            await container.image_service().seed(
                settings.desktop_image, name="desktop",
                tag=settings.desktop_image.rsplit(":", 1)[-1] if ":" in settings.desktop_image.rsplit("/", 1)[-1] else "latest",
                description="Remote desktop: the base image with Xvfb, XFCE, a VNC server and xterm, opened in the browser",
                metadata={"os": "Debian 12", "desktop": "XFCE", "frameworks": "JupyterLab"}, preload=False,
            )
        except Exception as exc:  # noqa: BLE001
            logging.getLogger(__name__).warning("could not seed the desktop image into the catalog: %s", exc)
