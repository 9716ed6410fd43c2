"""The floor: the least a Python gateway must do. Parse the JSON body, forward it with one
shared aiohttp ClientSession, hand the answer back (a stream chunk by chunk).

    python bench/passthrough.py PORT UPSTREAM_ORIGIN      (e.g. 8001 http://127.0.0.1:8000)
"""

import json
import sys
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
ORIGIN = web.AppKey("origin", str)


async def forward(request: web.Request) -> web.StreamResponse:
    body = json.loads(await request.read())
    async with request.app[SESSION].post(request.app[ORIGIN] + request.path_qs, json=body,
                            headers={"Authorization": "Bearer sk-bench"}) as answer:
        if not body.get("stream"):
            return web.Response(body=await answer.read(), status=answer.status,
                                content_type=answer.content_type)
        response = web.StreamResponse(status=answer.status,
                                      headers={"Content-Type": answer.content_type})
        await response.prepare(request)
        async for chunk in answer.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def session(app: web.Application) -> AsyncIterator[None]:
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
    yield
    await app[SESSION].close()


app = web.Application()
app[ORIGIN] = sys.argv[2].rstrip("/")
app.router.add_post("/{path:.*}", forward)
app.cleanup_ctx.append(session)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
