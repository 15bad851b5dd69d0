"""Who gets which registry scope (application/images/registry_access.py), on the in-memory
unit of work and image store, with the real JWT signer: hosts' credentials (forged,
expired, of a deleted host), platform repositories, a workspace's repositories only for
hosts running that workspace's work, push only for a job's target."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from remotegpu.adapters.images.memory_store import InMemoryImageStore
from remotegpu.adapters.images.registry_token import JwtRegistryTokenSigner, libtrust_key_id, make_key_and_certificate
from remotegpu.adapters.memory.store import InMemoryStore
from remotegpu.adapters.memory.uow import InMemoryUnitOfWork
from remotegpu.application.images.registry_access import RegistryAccess, parse_scopes, repository_of
from remotegpu.domain.environments.models import Environment, EnvStatus
from remotegpu.domain.fleet.models import Host
from remotegpu.domain.images.models import ImageJob, JobKind, JobStatus
from remotegpu.domain.shared.errors import Unauthenticated

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
REG = "registry.lab:5000"


class Clock:
    def __init__(self) -> None:
        self.at = NOW

    def now(self) -> datetime:
        return self.at


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture
def world():
    store, images, clock = InMemoryStore(), InMemoryImageStore(), Clock()
    key, _cert = make_key_and_certificate()
    access = RegistryAccess(
        uow=lambda: InMemoryUnitOfWork(store), store=images, clock=clock, key=b"k",
        signer=JwtRegistryTokenSigner(key, issuer="remotegpu", service="svc"), registry=REG, token_ttl_seconds=120,
    )
    return access, store, images, clock


async def add_host(store, host_id: str) -> None:
    async with InMemoryUnitOfWork(store) as uow:
        await uow.hosts.add(Host(host_id, host_id, agent_token_hash=f"hash-{host_id}", created_at=NOW))
        await uow.commit()


async def add_env(store, env_id: str, host_id: str, workspace: str, status: EnvStatus = EnvStatus.RUNNING) -> None:
    async with InMemoryUnitOfWork(store) as uow:
        await uow.environments.add(Environment(env_id, env_id, workspace, "u", "img", 0, None, 1, 1, NOW, NOW,
                                               status=status, host_id=host_id))
        await uow.commit()


async def granted(access, host_id: str, *scopes: str) -> list[dict]:
    auth = access.host_credential(host_id)
    grant = await access.token(auth.username, auth.password, "svc", list(scopes))
    assert claims(grant.token)["exp"] - claims(grant.token)["iat"] == 120
    return claims(grant.token)["access"]


async def test_platform_repositories_pull_only_and_workspaces_only_where_their_work_runs(world):
    access, store, images, clock = world
    await add_host(store, "h1")
    await add_host(store, "h2")
    await add_env(store, "e1", "h1", "w1")
    await add_env(store, "e2", "h2", "w2", EnvStatus.DELETED)  # gone: opens nothing
    assert await granted(access, "h1", "repository:remotegpu/platform/base:pull,push") == [
        {"type": "repository", "name": "remotegpu/platform/base", "actions": ["pull"]}]
    assert await granted(access, "h1", "repository:remotegpu/ws-w1/app:pull", "repository:remotegpu/ws-w2/app:pull") == [
        {"type": "repository", "name": "remotegpu/ws-w1/app", "actions": ["pull"]}]
    assert await granted(access, "h2", "repository:remotegpu/ws-w2/app:pull repository:remotegpu/ws-w1/app:pull") == []
    assert await granted(access, "h2", "repository:other/ws-w1/app:pull", "registry:catalog:*") == []


async def test_a_job_pushes_its_target_and_reads_its_workspace(world):
    access, store, images, clock = world
    await add_host(store, "h1")
    job = ImageJob("j1", JobKind.SAVE, "i1", "w3", "u", NOW, f"{REG}/remotegpu/ws-w3/saved:v1", host_id="h1",
                   status=JobStatus.RUNNING)
    await images.add_job(job)
    assert await granted(access, "h1", "repository:remotegpu/ws-w3/saved:pull,push", "repository:remotegpu/ws-w3/other:push,pull",
                         "repository:remotegpu/bases/abc:pull,push") == [
        {"type": "repository", "name": "remotegpu/ws-w3/saved", "actions": ["pull", "push"]},
        {"type": "repository", "name": "remotegpu/ws-w3/other", "actions": ["pull"]},
        {"type": "repository", "name": "remotegpu/bases/abc", "actions": ["pull", "push"]},
    ]
    job.status = JobStatus.SUCCEEDED
    await images.update_job(job)
    assert await granted(access, "h1", "repository:remotegpu/ws-w3/saved:pull,push", "repository:remotegpu/bases/abc:push") == []


async def test_credentials_forged_expired_or_of_a_deleted_host_are_refused(world):
    access, store, images, clock = world
    await add_host(store, "h1")
    auth = access.host_credential("h1")
    for user, password in (("h1", "v1.99999999999.beef"), ("h2", auth.password), ("h1", ""), ("", auth.password)):
        with pytest.raises(Unauthenticated):
            await access.token(user, password, "svc", ["repository:remotegpu/platform/base:pull"])
    with pytest.raises(Unauthenticated):  # another service's tokens are not issued here
        await access.token("h1", auth.password, "elsewhere", [])
    clock.at = NOW + timedelta(seconds=access.credential_ttl_seconds + 120)
    with pytest.raises(Unauthenticated, match="expired"):
        await access.token("h1", auth.password, "svc", [])
    clock.at = NOW
    async with InMemoryUnitOfWork(store) as uow:
        host = await uow.hosts.get("h1")
        host.agent_token_hash = None  # its token revoked
        await uow.hosts.update(host)
        await uow.commit()
    with pytest.raises(Unauthenticated):
        await access.token("h1", auth.password, "svc", [])


def test_key_id_and_scope_parsing():
    key, _cert = make_key_and_certificate()
    signer = JwtRegistryTokenSigner(key, issuer="i", service="s")
    kid = signer.kid
    assert len(kid.split(":")) == 12 and all(len(g) == 4 for g in kid.split(":"))  # 240 bits, base32, groups of 4
    assert json.loads(base64.urlsafe_b64decode(signer.sign("x", [], 60).split(".")[0] + "==")) == {
        "typ": "JWT", "alg": "ES256", "kid": kid}
    from cryptography.hazmat.primitives import serialization

    assert libtrust_key_id(serialization.load_pem_private_key(key, None).public_key()) == kid
    assert parse_scopes(["repository:a/b:pull,push", "repository(plugin):c:pull", "junk", "registry:catalog:*"]) == [
        parse_scopes(["repository:a/b:pull,push"])[0], parse_scopes(["repository(plugin):c:pull"])[0],
        parse_scopes(["registry:catalog:*"])[0]]
    assert repository_of(f"{REG}/ns/ws-1/app:v1", REG) == "ns/ws-1/app"
    assert repository_of(f"{REG}/ns/app@sha256:ab", REG) == "ns/app"
    assert repository_of("elsewhere/ns/app:v1", REG) is None
