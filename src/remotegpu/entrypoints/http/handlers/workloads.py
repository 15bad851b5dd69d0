"""Training jobs: ``/api/v1/training-jobs`` — create, list, get, cancel, logs (kept and live).

Logs: ``GET …/logs`` lists the nodes that have one; ``GET …/logs/{node}`` answers its
bytes (``text/plain``; ``?download=true`` as an attachment; ``?offset=`` to resume);
``GET …/logs/stream`` is a ``text/event-stream`` of every node's new output
(``event: log``, data ``{"node", "offset", "data"}``) and of the job's status
(``event: status``), ending with ``event: end`` once the job has ended and every
node's log has been sent.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from aiohttp import web
from pydantic import ValidationError

from remotegpu.application.workloads.service import CreateJob
from remotegpu.domain.workloads.models import TrainingJob
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.liveness import AdmissionCheck
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.common import Page
from remotegpu.entrypoints.http.schemas.environments import DataMountOut
from remotegpu.entrypoints.http.schemas.workloads import (
    JobLogOut,
    JobLogQuery,
    JobLogsOut,
    JobLogStreamQuery,
    JobNodeOut,
    JobOutputErrorIn,
    JobOutputOut,
    JobOutputReceivedOut,
    NodeExitOut,
    TrainingJobIn,
    TrainingJobListQuery,
    TrainingJobOut,
)
from remotegpu.domain.shared.errors import InvalidInput

TAGS = ["training-jobs"]
ONE = "/api/v1/training-jobs/{job_id}"
STREAM_POLL_SECONDS = 0.5
STREAM_MAX_SECONDS = 60 * 60
STREAM_CHUNK = 64 * 1024


def mounts_out(mounts: list[dict]) -> list[DataMountOut]:
    return [DataMountOut(kind=m["kind"], repository_id=m["repository_id"], name=m["name"], version=m["ref"],
                         path=f"/{m['kind']}s/{m['name']}") for m in mounts]


def job_out(j: TrainingJob) -> TrainingJobOut:
    return TrainingJobOut(
        id=j.id, workspace_id=j.workspace_id, owner_id=j.owner_id, name=j.name, image=j.image, command=j.command,
        env=j.env, gpus_per_node=j.gpus_per_node, gpu_model=j.gpu_model, nodes=j.nodes, cpu_cores=j.cpu_cores,
        memory_gib=j.memory_gib, time_limit_minutes=j.time_limit_minutes, max_retries=j.max_retries, priority=j.priority,
        status=j.status, status_message=j.status_message, attempt=j.attempt, exit_code=j.exit_code,
        node_states=[JobNodeOut(rank=n.rank, host_id=n.host_id, gpu_uuids=n.gpu_uuids, state=n.state, exit_code=n.exit_code,
                                message=n.message) for n in j.node_states],
        exit_codes=[NodeExitOut(**e) for e in j.exit_codes], history=j.history, mounts=mounts_out(j.data_mounts),
        output=None if j.output is None else JobOutputOut(**j.output.to_dict()),
        created_at=j.created_at,
        queued_at=j.queued_at, started_at=j.started_at, finished_at=j.finished_at,
    )


@api.post("/api/v1/agent/job-outputs/{node_id}", response=JobOutputReceivedOut, auth=False, tags=["agent"],
          errors=[401, 404, 422])
async def agent_job_output(call: Call) -> JobOutputReceivedOut:
    """A succeeded job's output from node 0's agent (Bearer: agent token): the output
    directory as a tar archive (``application/x-tar``, Docker's archive format), or
    ``{"error": …}`` (JSON) when the agent has none; it becomes the next version of the
    job's declared model. 404 unless that node's output is being collected on this host."""
    from remotegpu.entrypoints.http.handlers.agent import _agent_token

    token, node = _agent_token(call), call.path("node_id")
    receiver = call.container.job_output_receiver()
    await receiver.expects(token, node)  # 401/404 before any byte is read
    if call.request.content_type == "application/json":
        try:
            error = JobOutputErrorIn.model_validate(await call.request.json()).error
        except (ValueError, ValidationError):
            raise InvalidInput("send {\"error\": \"…\"} or a tar archive", details={"field": "error"}) from None
        job = await receiver.receive(token, node, None, error)
    else:
        with tempfile.TemporaryDirectory(prefix="rgpu-output-") as workdir:
            archive = Path(workdir) / "output.tar"
            with open(archive, "wb") as out:
                async for chunk in call.request.content.iter_chunked(1024 * 1024):
                    await asyncio.to_thread(out.write, chunk)
            job = await receiver.receive(token, node, archive)
    assert job.output is not None
    return JobOutputReceivedOut(job_id=job.id, output=JobOutputOut(**job.output.to_dict()))


def _node(key: str) -> tuple[int, int]:
    a, n = key.split(".")
    return int(a[1:]), int(n[1:])


@api.post("/api/v1/training-jobs", body=TrainingJobIn, response=TrainingJobOut, status=201, tags=TAGS, errors=[401, 403, 404, 409, 422])
async def create_training_job(call: Call) -> TrainingJobOut:
    """Create a training job: every node placed at once (starting) or the whole gang queued
    with the reason (e.g. "needs 2 nodes × 4 A100; largest free: 1 node")."""
    job = await call.container.training_job_service().create(call.user, CreateJob(**call.body.model_dump()))
    return job_out(job)


@api.get("/api/v1/training-jobs", query=TrainingJobListQuery, response=Page[TrainingJobOut], tags=TAGS, errors=[401, 404, 422])
async def list_training_jobs(call: Call) -> Page[TrainingJobOut]:
    """A workspace's training jobs, newest first."""
    q: TrainingJobListQuery = call.query
    jobs, total = await call.container.training_job_service().list(call.user, q.workspace_id, limit=q.limit, offset=q.offset)
    return Page[TrainingJobOut](items=[job_out(j) for j in jobs], total=total)


@api.get(ONE, response=TrainingJobOut, tags=TAGS, errors=[401, 404])
async def get_training_job(call: Call) -> TrainingJobOut:
    """One training job: status, nodes, exit codes per node and attempt, history."""
    return job_out(await call.container.training_job_service().get(call.user, call.path("job_id")))


@api.post(ONE + "/cancel", response=TrainingJobOut, tags=TAGS, errors=[401, 403, 404, 409])
async def cancel_training_job(call: Call) -> TrainingJobOut:
    """Cancel: the GPUs are free at once, the agents stop every node."""
    return job_out(await call.container.training_job_service().cancel(call.user, call.path("job_id")))


@api.get(ONE + "/logs", response=JobLogsOut, tags=TAGS, errors=[401, 404])
async def list_training_job_logs(call: Call) -> JobLogsOut:
    """The nodes (of every attempt) that have a log, with its size."""
    _, nodes = await call.container.training_job_service().log_nodes(call.user, call.path("job_id"))
    items = [JobLogOut(node=k, attempt=_node(k)[0], rank=_node(k)[1], bytes=size) for k, size in nodes]
    return JobLogsOut(items=items, total=len(items))


@api.get(ONE + "/logs/stream", query=JobLogStreamQuery, tags=TAGS, errors=[401, 404])
async def stream_training_job_logs(call: Call) -> web.StreamResponse:
    """text/event-stream of every node's output as it arrives, and of the job's status."""
    service = call.container.training_job_service()
    job_id = call.path("job_id")
    job = await service.get(call.user, job_id)  # 404 before the stream starts
    offsets = _offsets(call.query.offsets)
    check = AdmissionCheck(call.request)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no",
    })
    await response.prepare(call.request)
    last_status = None
    deadline = time.monotonic() + STREAM_MAX_SECONDS
    recheck_at = time.monotonic() + check.interval
    try:
        while time.monotonic() < deadline:
            if call.request.transport is None or call.request.transport.is_closing():
                break
            if time.monotonic() >= recheck_at:
                if not await check.holds():
                    break
                recheck_at = time.monotonic() + check.interval
            job, nodes = await service.log_nodes(call.user, job_id)
            state = (job.status, job.status_message, job.output.state if job.output else None)
            if state != last_status:  # (the output's progress too: the page shows its version)
                last_status = state
                await _event(response, "status", job_out(job).model_dump(mode="json"))
            sent = False
            for key, size in nodes:
                while offsets.get(key, 0) < size:
                    start = offsets.get(key, 0)
                    data = await service.read_log(call.user, job_id, key, start, STREAM_CHUNK)
                    if not data:
                        break
                    offsets[key] = start + len(data)
                    await _event(response, "log", {"node": key, "offset": start, "data": data.decode("utf-8", "replace")})
                    sent = True
            if job.status.terminal and not sent:
                # Ended, and nothing new this round: the agents ship the last bytes before
                # removing a node, so wait until no node is still kept on a host.
                if not job.node_states and await _settled(service, call, job_id, nodes):
                    await _event(response, "end", {"status": job.status.value, "exit_code": job.exit_code})
                    break
            await asyncio.sleep(STREAM_POLL_SECONDS)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


async def _settled(service, call: Call, job_id: str, nodes: list[tuple[str, int]]) -> bool:
    """True once the log sizes stopped moving for a moment (the last chunks arrived)."""
    await asyncio.sleep(STREAM_POLL_SECONDS)
    _, again = await service.log_nodes(call.user, job_id)
    return again == nodes


async def _event(response: web.StreamResponse, name: str, payload: dict) -> None:
    await response.write(f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode())


def _offsets(raw: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in (raw or "").split(","):
        if not part.strip():
            continue
        key, _, value = part.partition("=")
        try:
            _node(key.strip())
            out[key.strip()] = max(0, int(value))
        except (ValueError, IndexError):
            raise InvalidInput("offsets: node=offset,... (e.g. a0.n0=1024)", details={"field": "offsets"}) from None
    return out


@api.get(ONE + "/logs/{node}", query=JobLogQuery, tags=TAGS, errors=[401, 404, 422])
async def get_training_job_log(call: Call) -> web.Response:
    """One node's log as text (kept after the job ends); ``download=true``: as a file."""
    q: JobLogQuery = call.query
    job_id, node = call.path("job_id"), call.path("node")
    data = await call.container.training_job_service().read_log(call.user, job_id, node, q.offset, q.limit)
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if q.download:
        headers["Content-Disposition"] = f'attachment; filename="job-{job_id}-{node}.log"'
    return web.Response(body=data, content_type="text/plain", charset="utf-8", headers=headers)
