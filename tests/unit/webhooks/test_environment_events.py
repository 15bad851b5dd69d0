"""Environment lifecycle → webhook events: noted on save, published only after commit."""

from __future__ import annotations

from remotegpu.adapters.memory.store import InMemoryStore
from remotegpu.adapters.memory.uow import InMemoryUnitOfWork
from remotegpu.application.webhooks.environment_events import EnvironmentEventsUnitOfWork
from remotegpu.domain.environments.models import EnvironmentEvent, EnvStatus
from tests.contract.test_fleet_environment_repositories import make_env
from tests.contract.test_repositories import at


def _setup():
    store = InMemoryStore()
    published: list[tuple[str, str, dict]] = []

    async def publish(workspace_id: str, event_type: str, data: dict) -> int:
        published.append((workspace_id, event_type, data))
        return 1

    return (lambda: EnvironmentEventsUnitOfWork(InMemoryUnitOfWork(store), publish)), published


async def test_transitions_are_published_after_commit_and_rollbacks_never():
    uow_factory, published = _setup()
    env = make_env(1)
    env.pending_events.append(EnvironmentEvent("e1", env.id, at(1), None, EnvStatus.QUEUED, "created"))
    async with uow_factory() as uow:
        await uow.environments.add(env)
        assert published == []  # not before the commit
        await uow.commit()
    assert [(p[0], p[1]) for p in published] == [(env.workspace_id, "environment.created")]
    assert published[0][2]["environment_id"] == env.id and published[0][2]["previous_status"] is None

    async with uow_factory() as uow:
        env = await uow.environments.get(env.id)
        env.transition(EnvStatus.STARTING, "placed", at(2))
        env.transition(EnvStatus.RUNNING, "up", at(3))
        await uow.environments.update(env)
        # left without commit: rolled back, never announced
    assert len(published) == 1

    async with uow_factory() as uow:
        env = await uow.environments.get(env.id)
        env.transition(EnvStatus.STARTING, "placed", at(2))  # not a webhook event
        env.transition(EnvStatus.RUNNING, "up", at(3))
        await uow.environments.update(env)
        await uow.commit()
    assert [p[1] for p in published] == ["environment.created", "environment.running"]
    assert published[1][2]["previous_status"] == "starting" and published[1][2]["reason"] == "up"


async def test_a_failing_publisher_does_not_fail_the_use_case():
    store = InMemoryStore()

    async def broken(*args) -> int:
        raise RuntimeError("store down")

    env = make_env(2)
    env.pending_events.append(EnvironmentEvent("e2", env.id, at(1), None, EnvStatus.QUEUED, "created"))
    async with EnvironmentEventsUnitOfWork(InMemoryUnitOfWork(store), broken) as uow:
        await uow.environments.add(env)
        await uow.commit()  # no exception: the environment is saved
    async with InMemoryUnitOfWork(store) as uow:
        assert await uow.environments.get(env.id) is not None
