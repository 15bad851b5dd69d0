"""Training jobs and inference services: the same behaviour over memory, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from remotegpu.domain.workloads.autoscaler import AutoscalePolicy
from remotegpu.domain.workloads.models import JobNode, JobStatus, TrainingJob
from remotegpu.domain.workloads.services import InferenceService, Replica, ServiceStatus

pytestmark = pytest.mark.asyncio
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def job(i: int, ws: str = "ws-1", status: JobStatus = JobStatus.QUEUED) -> TrainingJob:
    return TrainingJob(
        id=f"00000000-0000-0000-0000-00000000000{i}", workspace_id=ws, owner_id="u", name=f"j{i}", image="img",
        command=["python", "t.py"], created_at=T0 + timedelta(seconds=i), env={"A": "1"}, gpus_per_node=2, gpu_model="A100",
        nodes=2, status=status, queued_at=T0 + timedelta(seconds=10 - i), time_limit_minutes=5, max_retries=1, priority=3,
    )


async def test_training_jobs_round_trip_list_and_queue_order(uow_factory):
    async with uow_factory() as uow:
        for i in range(1, 4):
            await uow.training_jobs.add(job(i, ws="ws-2" if i == 3 else "ws-1"))
        await uow.commit()
    async with uow_factory() as uow:
        j = await uow.training_jobs.get(job(1).id)
        j.node_states = [JobNode(rank=0, host_id="h1", gpu_uuids=["g1", "g2"], gpu_indices=[0, 1], address="10.0.0.1")]
        j.transition(JobStatus.STARTING, "placed", T0 + timedelta(minutes=1))
        j.exit_codes.append({"attempt": 0, "rank": 1, "host_id": "h2", "exit_code": 3, "state": "exited", "message": "x"})
        await uow.training_jobs.update(j)
        await uow.commit()
    async with uow_factory() as uow:
        again = await uow.training_jobs.get(job(1).id)
        assert again.status is JobStatus.STARTING and again.node_states[0].gpu_uuids == ["g1", "g2"]
        assert again.exit_codes[0]["exit_code"] == 3 and again.history[-1]["to"] == "starting"
        assert again.env == {"A": "1"} and again.command == ["python", "t.py"] and again.queued_at.tzinfo is not None
        page, total = await uow.training_jobs.list(workspace_ids=["ws-1"], limit=10, offset=0)
        assert total == 2 and [x.name for x in page] == ["j2", "j1"]  # newest first
        queued = await uow.training_jobs.list_by_status([JobStatus.QUEUED])
        assert [x.name for x in queued] == ["j3", "j2"]  # oldest queued first
        assert await uow.training_jobs.get("00000000-0000-0000-0000-000000000099") is None


async def test_inference_services_round_trip(uow_factory):
    s = InferenceService(id="00000000-0000-0000-0000-0000000000a1", workspace_id="ws", owner_id="u", name="s", image="img",
                         command=[], port=8000, created_at=T0,
                         autoscale=AutoscalePolicy(max_replicas=3, target_concurrency=2.5))
    async with uow_factory() as uow:
        await uow.inference_services.add(s)
        await uow.commit()
    async with uow_factory() as uow:
        got = await uow.inference_services.get(s.id)
        got.replicas.append(Replica(id=got.new_replica_id(), generation=0, host_id="h", host_port=20001, address="127.0.0.1"))
        got.token_hashes = ["abc"]
        await uow.inference_services.update(got)
        await uow.commit()
    async with uow_factory() as uow:
        got = await uow.inference_services.get(s.id)
        assert got.replicas[0].host_port == 20001 and got.next_replica == 1 and got.autoscale.target_concurrency == 2.5 \
            and got.autoscale.max_replicas == 3
        assert [x.id for x in await uow.inference_services.list_active()] == [s.id]
        got.status = ServiceStatus.DELETED
        await uow.inference_services.update(got)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.inference_services.list_active() == []
        assert (await uow.inference_services.list(workspace_ids=["ws"], limit=5, offset=0))[1] == 0
