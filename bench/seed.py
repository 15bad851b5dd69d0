"""Seed a migrated database with a fleet of realistic size, straight through SQL, for bench/api.py.

1,000 users, 200 workspaces of 5 members each, 100 hosts x 8 GPUs, 2,000 environments
(every GPU held, about 10 % queued, some stopped and deleted) with their allocations,
ports and events. The bench user owns the first workspace, which holds 50 of the
environments (placed ones with GPUs and ports, queued ones with queue positions).

Rows are built from the domain's dataclasses with the repositories' own column
mappings, and inserted in bulk (one executemany per table): seconds, not minutes.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import insert, text

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.repositories.environments import _env_values
from remotegpu.adapters.db.repositories.fleet import _gpu_rows, _host_values
from remotegpu.adapters.db.tables import (
    environment_events,
    environments,
    gpu_allocations,
    host_gpus,
    host_ports,
    hosts,
    users,
    workspace_members,
    workspaces,
)
from remotegpu.adapters.security.passwords import Argon2PasswordHasher
from remotegpu.domain.environments.models import Desired, Environment, EnvStatus
from remotegpu.domain.fleet.models import Host, HostStatus, parse_fake_gpus
from remotegpu.domain.identity.models import User
from remotegpu.domain.workspaces.models import Role

USERS, WORKSPACES, MEMBERS_PER_WORKSPACE, HOSTS, GPUS_PER_HOST, ENVIRONMENTS, BENCH_ENVIRONMENTS = 1000, 200, 5, 100, 8, 2000, 50
BENCH_USER, BENCH_PASSWORD = "bench", "bench-password-123"
MODELS = ("NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3")


@dataclass(frozen=True)
class Seeded:
    username: str
    password: str
    workspace_id: str  # the bench user's, with BENCH_ENVIRONMENTS environments
    environment_id: str  # a running one of them, with GPUs, ports and events


def _id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


async def seed(url: str) -> Seeded:
    rng = random.Random(12)
    now = datetime.now(timezone.utc)
    # The fast argon2 profile, as the bench server uses (REMOTEGPU_PASSWORD_HASH_PROFILE=fast).
    password_hash = await Argon2PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, workers=1).hash(BENCH_PASSWORD)

    user_rows = [
        vars(User(id=_id(rng), username=BENCH_USER if n == 0 else f"user{n:04d}", email=f"user{n:04d}@example.com",
                  password_hash=password_hash if n == 0 else "!", created_at=now - timedelta(days=400 - n / 10)))
        for n in range(USERS)
    ]
    user_ids = [u["id"] for u in user_rows]
    ws_rows, member_rows = [], []
    for n in range(WORKSPACES):
        ws_id = _id(rng)
        owner = user_ids[(n * MEMBERS_PER_WORKSPACE) % USERS]
        ws_rows.append(dict(id=ws_id, name=f"team {n}", slug=f"team-{n}", is_personal=False, created_by=owner,
                            created_at=now - timedelta(days=300 - n)))
        members = {owner} | set(rng.sample(user_ids, MEMBERS_PER_WORKSPACE - 1))
        if n in (1, 2):
            members.add(user_ids[0])  # the bench user sees three workspaces
        for user_id in members:
            role = Role.OWNER if user_id == owner else rng.choice([Role.VIEWER, Role.MEMBER, Role.ADMIN])
            member_rows.append(dict(workspace_id=ws_id, user_id=user_id, role=role.value, created_at=now - timedelta(days=200)))

    fleet = []
    for n in range(HOSTS):
        gpus = parse_fake_gpus(f"{GPUS_PER_HOST}x{MODELS[n % 2]}", seed=f"bench-host-{n}")
        fleet.append(Host(
            id=_id(rng), name=f"gpu-{n:03d}", status=HostStatus.READY, cpu_cores=128, memory_gib=1024, disk_gib=8000,
            address=f"10.1.{n // 250}.{n % 250 + 1}", private_address=f"10.2.{n // 250}.{n % 250 + 1}", gpus=gpus,
            last_heartbeat_at=now, created_at=now - timedelta(days=100), runtime="memory", runtime_healthy=True,
            fake_gpus=True,
        ))
    free = [(h, g) for h in fleet for g in h.gpus]
    rng.shuffle(free)

    env_rows, alloc_rows, port_rows, event_rows = [], [], [], []
    next_port = {h.id: h.port_range[0] for h in fleet}
    bench_env = None
    for n in range(ENVIRONMENTS):
        in_bench = n < BENCH_ENVIRONMENTS
        ws = ws_rows[0 if in_bench else 1 + n % (WORKSPACES - 1)]
        created = now - timedelta(minutes=ENVIRONMENTS - n)
        roll = rng.random()
        status = (EnvStatus.QUEUED if roll < 0.1 else EnvStatus.STOPPED if roll < 0.25
                  else EnvStatus.DELETED if roll < 0.3 and not in_bench else EnvStatus.RUNNING)
        env = Environment(
            id=_id(rng), name=f"env-{n}", workspace_id=ws["id"], owner_id=ws["created_by"], image="remotegpu/base:latest",
            gpu_count=1, gpu_model=MODELS[n % 2], cpu_cores=4, memory_gib=16, created_at=created, updated_at=created,
            status=status, desired=Desired.RUNNING if status in (EnvStatus.QUEUED, EnvStatus.RUNNING) else Desired(status.value),
            queued_at=created, env={"PROJECT": f"p{n}"}, jupyter_token=f"token-{n}",
            status_message="created: waiting for capacity" if status is EnvStatus.QUEUED else "",
        )
        if status is EnvStatus.RUNNING:
            if free:  # every GPU is held: a queued one cannot be placed during the bench
                host, gpu = free.pop()
                alloc_rows.append(dict(environment_id=env.id, host_id=host.id, gpu_uuid=gpu.uuid))
                env.gpu_model = gpu.model
            else:
                host, env.gpu_count, env.gpu_model = rng.choice(fleet), 0, None
            env.host_id, env.started_at = host.id, created + timedelta(seconds=20)
            for purpose in ("ssh", "jupyter"):
                port_rows.append(dict(environment_id=env.id, host_id=host.id, port=next_port[host.id], purpose=purpose))
                next_port[host.id] += 1
            if in_bench and bench_env is None and env.gpu_count:
                bench_env = env
        elif status is not EnvStatus.QUEUED:
            env.host_id = rng.choice(fleet).id  # its disk lives there
        env_rows.append(_env_values(env))
        steps = [(None, EnvStatus.QUEUED, "created"), (EnvStatus.QUEUED, EnvStatus.STARTING, "placed on a host"),
                 (EnvStatus.STARTING, EnvStatus.RUNNING, "container running")]
        if status is EnvStatus.QUEUED:
            steps = steps[:1]
        elif status is not EnvStatus.RUNNING:
            steps.append((EnvStatus.RUNNING, status, f"{status.value} by user"))
        for seq, (before, after, reason) in enumerate(steps, start=1):
            event_rows.append(dict(id=_id(rng), environment_id=env.id, seq=seq, at=created + timedelta(seconds=seq),
                                   from_status=before.value if before else None, to_status=after.value, reason=reason))

    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for table, rows in (
                (users, user_rows), (workspaces, ws_rows), (workspace_members, member_rows),
                (hosts, [_host_values(h) for h in fleet]), (host_gpus, [r for h in fleet for r in _gpu_rows(h.id, h.gpus)]),
                (environments, env_rows), (environment_events, event_rows), (gpu_allocations, alloc_rows),
                (host_ports, port_rows),
            ):
                for start in range(0, len(rows), 500):
                    await conn.execute(insert(table), rows[start : start + 500])
        # Planner statistics, as a database in use has them (autovacuum, or SQLite's
        # ANALYZE): without them PostgreSQL plans the list's queue join as a nested loop.
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()
    assert bench_env is not None
    return Seeded(BENCH_USER, BENCH_PASSWORD, ws_rows[0]["id"], bench_env.id)


def counts() -> dict[str, int]:
    return {"users": USERS, "workspaces": WORKSPACES, "hosts": HOSTS, "gpus": HOSTS * GPUS_PER_HOST,
            "environments": ENVIRONMENTS, "in the bench workspace": BENCH_ENVIRONMENTS}



