"""The SSH gateway's session recordings: the asciicast v2 file (``CastRecorder``), where
it is kept and who may read it (``GatewayAccess``). The recording of real sessions
through real OpenSSH is in tests/integration/test_ssh_gateway.py."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import pytest

from remotegpu.adapters.access.ssh_sessions import InMemorySshSessionLog
from remotegpu.adapters.storage.local_store import LocalObjectStore
from remotegpu.application.environments import ssh_gateway as gw
from remotegpu.application.environments.ssh_gateway import CastRecorder, GatewayAccess, SshSession
from remotegpu.application.shared.clock import SystemClock
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import NotFound


def _events(cast: bytes) -> tuple[dict, list]:
    lines = cast.decode().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def test_a_cast_is_asciicast_v2_with_output_and_resizes_in_order():
    rec = CastRecorder(120, 40, "xterm-256color", 1000.0)
    rec.output(b"$ echo hi\r\n", 1000.5)
    rec.resize(100, 30, 1001.0)
    rec.output(b"hi\r\n", 1000.9)  # a clock that steps back never makes time run backwards
    header, events = _events(rec.cast())
    assert header == {"version": 2, "width": 120, "height": 40, "timestamp": 1000, "env": {"TERM": "xterm-256color"}}
    assert events == [[0.5, "o", "$ echo hi\r\n"], [1.0, "r", "100x30"], [1.0, "o", "hi\r\n"]]


def test_multibyte_characters_split_across_packets_are_whole_and_a_cut_tail_is_kept():
    rec = CastRecorder(80, 24, "", 0.0)
    data = "héllo 世界".encode()
    rec.output(data[:2], 1.0)  # "h" and half of "é"
    rec.output(data[2:-1], 2.0)  # the rest but the last byte of "界"
    header, events = _events(rec.cast())
    assert header["env"] == {"TERM": "xterm"}
    assert "".join(text for _, _, text in events) == "héllo 世\ufffd"  # the cut character is not lost silently


def test_a_recording_stops_at_its_size_limit_and_says_so(monkeypatch):
    monkeypatch.setattr(gw, "MAX_RECORDING_BYTES", 2000)
    rec = CastRecorder(80, 24, "xterm", 0.0)
    for i in range(100):
        rec.output(b"x" * 50, float(i))
    assert rec.truncated
    cast = rec.cast()
    assert len(cast) < 2200
    assert "the recording stops here" in _events(cast)[1][-1][2]


def _session(workspace_id: str = "ws-1") -> SshSession:
    return SshSession(id="s-1", user_id="u-1", username="alice", environment_id="e-1", workspace_id=workspace_id,
                      environment_name="env", kind="session", client_address="127.0.0.1", key_fingerprint="SHA256:x",
                      started_at=datetime.now(timezone.utc))


def _user(admin: bool) -> User:
    return User(id="admin" if admin else "u-1", username="root" if admin else "alice", email="a@example.com",
                password_hash="", created_at=datetime.now(timezone.utc), is_admin=admin)


def test_recordings_are_kept_in_object_storage_named_by_the_audit_record_and_read_by_admins_only(tmp_path):
    async def scenario() -> None:
        log = InMemorySshSessionLog()
        access = GatewayAccess(uow=None, entry=None, log=log, clock=SystemClock(),  # type: ignore[arg-type]
                               recordings=LocalObjectStore(tmp_path), record_sessions=True)
        assert access.record_sessions
        session = _session()
        await log.add(session)
        rec = CastRecorder(80, 24, "xterm", 0.0)
        rec.output(b"recorded\r\n", 0.25)
        await access.save_recording(session, rec.cast())
        await access.closed(session, "revoked")
        stored = await log.get(session.id)
        assert stored is not None and stored.recording == "ssh-recordings/ws-1/s-1.cast" and stored.end_reason == "revoked"
        got, chunks = await access.recording(_user(admin=True), session.id)
        assert got.id == session.id and b"".join([c async for c in chunks]) == rec.cast()
        with pytest.raises(NotFound):  # not even the session's own user: 404, like another tenant's
            await access.recording(_user(admin=False), session.id)
        with pytest.raises(NotFound):
            await access.recording(_user(admin=True), "no-such-session")
        unrecorded = SshSession(**{**_session().__dict__, "id": "s-2"})
        await log.add(unrecorded)
        await access.closed(unrecorded, "closed")
        with pytest.raises(NotFound):
            await access.recording(_user(admin=True), "s-2")

    asyncio.run(scenario())


def test_recording_is_off_by_default_and_needs_a_store(tmp_path):
    log = InMemorySshSessionLog()
    assert not GatewayAccess(uow=None, entry=None, log=log, clock=SystemClock()).record_sessions  # type: ignore[arg-type]
    assert not GatewayAccess(uow=None, entry=None, log=log, clock=SystemClock(),  # type: ignore[arg-type]
                             recordings=LocalObjectStore(tmp_path)).record_sessions
    assert not GatewayAccess(uow=None, entry=None, log=log, clock=SystemClock(),  # type: ignore[arg-type]
                             record_sessions=True).record_sessions
