"""The baseline for bench/api.py: bare aiohttp answering a small JSON document, no middleware, no DB."""

import sys

from aiohttp import web


async def me(request: web.Request) -> web.Response:
    return web.json_response({"id": "00000000-0000-0000-0000-000000000000", "username": "baseline", "is_active": True})


app = web.Application()
app.router.add_get("/api/v1/users/me", me)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
