"""Ticket attachments through the object store port (local files here; the port's contract
suite covers S3), on the in-memory store and SQLite: upload with a ticket and with a reply,
type and size limits, downloads authorized like the ticket (404 to others, internal notes'
files to staff only), and retention deleting a closed ticket's files with it."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timezone

import aiohttp
import pytest

from remotegpu.adapters.db.migrate import upgrade
from remotegpu.application.shared.clock import FrozenClock
from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from tests.conftest import make_settings, signup

TICKETS = "/api/v1/tickets"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture(params=["memory", "sqlite"])
async def world(request, aiohttp_client, tmp_path):
    clock = FrozenClock(datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc))
    settings = make_settings(tmp_path, support_attachment_max_bytes=4096, support_retention_days=30)
    container = build_container(settings, persistence="memory" if request.param == "memory" else "sql")
    if request.param == "sqlite":
        await asyncio.to_thread(upgrade, settings.effective_database_url)
    container.ticket_service.add_kwargs(clock=clock)
    client = await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.DummyCookieJar())
    admin = await signup(client, admin_container=container)
    return client, container, admin, clock


async def _upload(client, account, tid, data: bytes, filename="shot.png", content_type="image/png", **extra):
    params = {"filename": filename, "content_type": content_type, **extra}
    return await client.post(f"{TICKETS}/{tid}/attachments", params=params, data=data, headers={**account.headers, **OCTET})


async def test_attachments_upload_limits_download_and_who_sees_them(world):
    client, container, admin, clock = world
    alice, bob = await signup(client), await signup(client)
    r = await client.post(TICKETS, json={"subject": "Crash", "description": "see the screenshot"}, headers=alice.headers)
    tid = (await r.json())["id"]

    r = await _upload(client, alice, tid, PNG, filename="../../etc/screen shot.png")
    assert r.status == 201, await r.text()
    shot = await r.json()
    assert shot["filename"] == "screen shot.png" and shot["size"] == len(PNG) and shot["internal"] is False
    assert shot["sha256"] == hashlib.sha256(PNG).hexdigest() and shot["comment_id"] is None
    r = await client.get(f"{TICKETS}/{tid}/attachments/{shot['id']}", headers=alice.headers)
    assert r.status == 200 and await r.read() == PNG
    assert r.headers["Content-Type"] == "image/png" and r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Disposition"].startswith('attachment; filename="screen shot.png"')

    # Others: the ticket does not exist for them, nor its files.
    assert (await client.get(f"{TICKETS}/{tid}/attachments/{shot['id']}", headers=bob.headers)).status == 404
    r = await _upload(client, bob, tid, PNG)
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    assert (await client.get(f"{TICKETS}/{tid}/attachments/nope", headers=alice.headers)).status == 404

    # Limits: the type, the size (declared or streamed), an empty file, the body's media type.
    r = await _upload(client, alice, tid, b"MZ...", filename="tool.exe", content_type="application/x-msdownload")
    assert r.status == 422 and (await r.json())["error"]["code"] == "attachment_type"
    r = await _upload(client, alice, tid, b"x" * 5000, filename="big.log", content_type="text/plain")
    assert r.status == 422 and (await r.json())["error"]["code"] == "attachment_too_large"

    async def chunked():
        for _ in range(5):
            yield b"y" * 1000

    r = await client.post(f"{TICKETS}/{tid}/attachments", params={"filename": "s.log", "content_type": "text/plain"},
                          data=chunked(), headers={**alice.headers, **OCTET})
    assert r.status == 422 and (await r.json())["error"]["code"] == "attachment_too_large"
    r = await _upload(client, alice, tid, b"", filename="empty.txt", content_type="text/plain")
    assert r.status == 422 and (await r.json())["error"]["code"] == "attachment_empty"
    r = await client.post(f"{TICKETS}/{tid}/attachments", params={"filename": "a.txt", "content_type": "text/plain"},
                          data=b"hello", headers={**alice.headers, "Content-Type": "text/plain"})
    assert r.status == 422 and (await r.json())["error"]["code"] == "unsupported_media_type"
    assert [o.key.rsplit("/", 1)[-1] for o in await container.object_store().list(f"support/tickets/{tid}/")] == [shot["id"]]

    clock.advance(minutes=5)
    # Staff: a file on an internal note is internal; staff attach to their replies, not to the ticket.
    r = await _upload(client, admin, tid, b"trace", filename="dmesg.txt", content_type="text/plain")
    assert r.status == 403
    note = await (await client.post(f"{TICKETS}/{tid}/comments", json={"body": "see dmesg", "internal": True},
                                    headers=admin.headers)).json()
    r = await _upload(client, admin, tid, b"Xid 79", filename="dmesg.txt", content_type="text/plain", comment_id=note["id"])
    assert r.status == 201 and (await r.json())["internal"] is True
    secret = (await r.json())["id"]
    r = await _upload(client, alice, tid, b"hi", filename="x.txt", content_type="text/plain", comment_id=note["id"])
    assert r.status == 404  # not her comment (and she cannot see it)
    mine = await (await client.get(f"{TICKETS}/{tid}", headers=alice.headers)).json()
    assert [a["id"] for a in mine["attachments"]] == [shot["id"]]
    assert (await client.get(f"{TICKETS}/{tid}/attachments/{secret}", headers=alice.headers)).status == 404
    staff = await (await client.get(f"{TICKETS}/{tid}", headers=admin.headers)).json()
    assert [a["filename"] for a in staff["attachments"]] == ["screen shot.png", "dmesg.txt"]
    r = await client.get(f"{TICKETS}/{tid}/attachments/{secret}", headers=admin.headers)
    assert r.status == 200 and await r.read() == b"Xid 79"

    # A reply with a file (the requester).
    reply = await (await client.post(f"{TICKETS}/{tid}/comments", json={"body": "log attached"}, headers=alice.headers)).json()
    r = await _upload(client, alice, tid, b'{"ok": false}', filename="state.json", content_type="application/json",
                      comment_id=reply["id"])
    assert r.status == 201 and (await r.json())["comment_id"] == reply["id"]

    # Closed: no more files; retention (30 days after closing) deletes the ticket with its files.
    assert (await client.post(f"{TICKETS}/{tid}/solve", headers=alice.headers)).status == 200
    clock.advance(days=5)
    assert (await container.ticket_service().sweep())["closed"] == 1
    r = await _upload(client, alice, tid, PNG)
    assert r.status == 409 and (await r.json())["error"]["code"] == "ticket_closed"
    clock.advance(days=29)
    assert (await container.ticket_service().sweep())["deleted"] == 0
    assert len(await container.object_store().list(f"support/tickets/{tid}/")) == 3
    clock.advance(days=2)
    assert (await container.ticket_service().sweep())["deleted"] == 1
    assert (await client.get(f"{TICKETS}/{tid}", headers=alice.headers)).status == 404
    assert (await client.get(f"{TICKETS}/{tid}/attachments/{shot['id']}", headers=alice.headers)).status == 404
    assert await container.object_store().list(f"support/tickets/{tid}/") == []
