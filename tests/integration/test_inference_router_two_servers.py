"""Two server processes route one inference service (PostgreSQL + Redis + Docker): a
request held at zero replicas by the process that does not scale gets its cold start
from the one that does; requests in flight through one process count in the other's
view (statistics, the autoscaler's load, least-outstanding routing); nothing left."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import pytest
from redis import Redis

from tests.integration.test_environment_crash_recovery import wait_until
from tests.integration.test_inference_services_docker import IMAGE, SERVER, replicas
from tests.support.app_hosts import LoopbackResolver
from tests.support.components import docker_with_image, postgres_url, redis_url, remove_scope
from tests.support.live_server import live_server
from tests.support.postgres import reset_schema


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    docker = docker_with_image(IMAGE)
    db, url = postgres_url(), redis_url()
    reset_schema(db)
    namespace = f"t2s-{uuid.uuid4().hex[:8]}"
    scope = f"svc2{int(time.time())}"
    common = dict(REMOTEGPU_DATABASE_URL=db, REMOTEGPU_REDIS_URL=url, REMOTEGPU_REDIS_NAMESPACE=namespace)
    redis = Redis.from_url(url)
    try:
        with live_server(tmp_path_factory.mktemp("a"), REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS="2xNVIDIA L4 24GB",
                         REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_DOCKER_SCOPE=scope, REMOTEGPU_AGENT_NAME=f"svc-{scope}",
                         **common) as a, \
                live_server(tmp_path_factory.mktemp("b"), REMOTEGPU_EMBEDDED_AGENT="false", **common) as b:
            yield a, b, docker, scope, redis, namespace
    finally:
        for c in docker.containers.list(all=True, filters={"label": f"remotegpu.job_scope={scope}"}):
            c.remove(force=True)
        for n in docker.networks.list(filters={"label": f"remotegpu.job_scope={scope}"}):
            n.remove()
        remove_scope(docker, scope)
        keys = list(redis.scan_iter(match=f"{namespace}:*"))
        if keys:
            redis.delete(*keys)
        redis.close()
        reset_schema(db)


def test_two_servers_share_the_routers_state(two):
    a, b, docker, scope, redis, namespace = two
    token = a.signup("owner")
    _, spaces = a.request("GET", "/api/v1/workspaces", token=token)
    ws = next(w["id"] for w in spaces["items"] if w["is_personal"])
    code, svc = b.request("POST", "/api/v1/inference-services", {
        "workspace_id": ws, "name": "echo", "image": IMAGE, "command": ["python3", "-c", SERVER], "port": 8000,
        "health_path": "/", "min_replicas": 0, "max_replicas": 2, "target_concurrency": 1, "public": True,
        "scale_down_delay_s": 600, "scale_to_zero_after_s": 600,
    }, token=token)
    assert code == 201, svc
    sid = svc["id"]

    # exactly one process scales: the lease names it
    holder = wait_until(lambda: redis.get(f"{namespace}:serve:leader"), 30, "a scaling leader").decode()
    pids = {a.process.pid: a, b.process.pid: b}
    leader = next(s for pid, s in pids.items() if f":{pid}:" in holder)
    follower = b if leader is a else a

    def url(server) -> str:
        return f"http://{sid}--serve.localhost:{server.url.rsplit(':', 1)[1]}/"

    def stats(server) -> dict:
        code, body = server.request("GET", f"/api/v1/inference-services/{sid}", token=token)
        assert code == 200, body
        return body

    async def get(http, server, path="", total=150) -> tuple[int, str]:
        async with http.get(url(server) + path, timeout=aiohttp.ClientTimeout(total=total)) as r:
            return r.status, await r.text()

    async def scenario():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=LoopbackResolver(), limit=0)) as http:
            # 1. a request held by the follower at zero replicas: the leader starts one, no error
            status, body = await get(http, follower)
            assert status == 200 and body.endswith(" v1"), body
            assert stats(follower)["stats"]["cold_starts"] == 1  # statistics stay per process
            # 2. requests in flight through the follower are seen by the leader: its figures
            #    and its autoscaler (2 in flight at a target of 1 → a second replica)
            slow = [asyncio.create_task(get(http, follower, "slow?t=6")) for _ in range(2)]
            await asyncio.to_thread(wait_until, lambda: stats(leader)["stats"]["in_flight"] == 2, 5,
                                    "the leader sees the follower's requests in flight", 0.1)
            assert all(s == 200 for s, _ in await asyncio.gather(*slow))
            await asyncio.to_thread(wait_until, lambda: stats(leader)["desired_replicas"] == 2, 5, "a second replica wanted")
            for server in (leader, follower):
                await asyncio.to_thread(wait_until, lambda s=server: stats(s)["stats"]["ready_replicas"] == 2, 90,
                                        "both replicas ready in both processes", 0.2)
            # 3. least outstanding across processes: a request in flight through one process
            #    sends the next one, through the other process, to the other replica
            for first, second in ((leader, follower), (follower, leader)):
                one = asyncio.create_task(get(http, first, "slow?t=2"))
                await asyncio.to_thread(wait_until, lambda s=second: stats(s)["stats"]["in_flight"] == 1, 5,
                                        "the request in flight seen by the other process", 0.05)
                other = await get(http, second, "slow?t=0.1")
                done = await one
                assert done[0] == other[0] == 200
                assert done[1].split()[0] != other[1].split()[0], (done, other)

    asyncio.run(scenario())
    assert len(replicas(docker, scope, sid)) == 2
    code, _ = follower.request("DELETE", f"/api/v1/inference-services/{sid}", token=token)
    assert code == 204
    wait_until(lambda: not replicas(docker, scope, sid, running_only=False), 60, "replica containers removed", 0.5)
