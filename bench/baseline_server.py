"""The baselines of bench/api.py: what bare aiohttp does without the platform around it.

    python bench/baseline_server.py PORT [POSTGRES_URL]

- ``GET /api/v1/users/me``: a constant JSON document (no middleware, no database).
- ``GET /api/v1/environments?workspace_id=W&limit=50`` (with POSTGRES_URL): the
  environment list's three queries (``SqlEnvironmentRepository.listings``: the page with
  its total, host names and queue positions; its GPUs; its ports), hand-written for
  asyncpg on a pool as large as the platform's, answered as JSON — no authentication,
  no authorization query, no ORM, no validation.
"""

import json
import sys

from aiohttp import web

PAGE = """
SELECT e.id, e.name, e.workspace_id, e.owner_id, e.status, e.desired, e.status_message, e.image, e.gpu_count,
       e.gpu_model, e.with_gpu, e.cpu_cores, e.memory_gib, e.disk_gib, e.host_id, e.env, e.stop_after_minutes,
       e.idle_stop_minutes, e.shared, e.created_at, e.started_at,
       h.name AS host_name, q.position, count(*) OVER () AS total
FROM environments e
LEFT JOIN hosts h ON h.id = e.host_id
LEFT JOIN (
    SELECT id, row_number() OVER (ORDER BY queued_at ASC NULLS LAST, created_at, id) AS position
    FROM environments WHERE status = 'queued'
) q ON q.id = e.id
WHERE e.status != 'deleted' AND e.workspace_id = $1
ORDER BY e.created_at DESC, e.id DESC
LIMIT $2 OFFSET $3
"""
GPUS = """
SELECT ga.environment_id, hg.index, hg.uuid, hg.model, hg.memory_mib
FROM gpu_allocations ga
JOIN host_gpus hg ON hg.uuid = ga.gpu_uuid
JOIN environments e ON e.id = ga.environment_id AND e.host_id = hg.host_id
WHERE ga.environment_id = ANY($1::varchar[])
ORDER BY hg.index
"""
PORTS = """
SELECT environment_id, purpose, port FROM host_ports
WHERE environment_id = ANY($1::varchar[]) ORDER BY host_id, port
"""


async def me(request: web.Request) -> web.Response:
    return web.json_response({"id": "00000000-0000-0000-0000-000000000000", "username": "baseline", "is_active": True})


async def environments(request: web.Request) -> web.Response:
    limit, offset = int(request.query.get("limit", 50)), int(request.query.get("offset", 0))
    async with request.app["pool"].acquire() as conn:
        rows = await conn.fetch(PAGE, request.query["workspace_id"], limit, offset)
        placed = [r["id"] for r in rows if r["host_id"] is not None]
        gpus, ports = {}, {}
        if placed:
            for r in await conn.fetch(GPUS, placed):
                gpus.setdefault(r["environment_id"], []).append(
                    {"index": r["index"], "uuid": r["uuid"], "model": r["model"], "memory_mib": r["memory_mib"]}
                )
            for r in await conn.fetch(PORTS, placed):
                ports.setdefault(r["environment_id"], []).append({"purpose": r["purpose"], "port": r["port"]})
    items = []
    for r in rows:
        item = {k: v for k, v in r.items() if k not in ("total", "position")}
        item["env"] = json.loads(item["env"]) if isinstance(item["env"], str) else item["env"]
        item["queue_position"] = r["position"] if r["status"] == "queued" else None
        item["gpus"], item["ports"] = gpus.get(r["id"], []), ports.get(r["id"], [])
        items.append(item)
    total = rows[0]["total"] if rows else 0
    return web.Response(text=json.dumps({"items": items, "total": total}, default=str), content_type="application/json")


async def open_pool(app: web.Application) -> None:
    import asyncpg

    dsn = app["dsn"].replace("postgresql+asyncpg://", "postgresql://", 1)
    # As many as the platform keeps (adapters/db/engine.py: 20 kept + 20 overflow).
    app["pool"] = await asyncpg.create_pool(dsn, min_size=20, max_size=40)


async def close_pool(app: web.Application) -> None:
    await app["pool"].close()


app = web.Application()
app.router.add_get("/api/v1/users/me", me)
if len(sys.argv) > 2:
    app["dsn"] = sys.argv[2]
    app.router.add_get("/api/v1/environments", environments)
    app.on_startup.append(open_pool)
    app.on_cleanup.append(close_pool)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
