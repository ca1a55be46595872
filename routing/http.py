"""One shared async HTTP client per event loop, for every upstream call.

httpx's API on aiohttp's transport: httpx's own pool degrades under concurrency (DESIGN.md has
the numbers), aiohttp's holds. Pooled keep-alive connections; per-attempt timeouts are given per
request.
"""

from __future__ import annotations

import asyncio
import weakref

import httpx
from httpx_aiohttp import AiohttpTransport

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)

LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=30)


def get_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            transport=AiohttpTransport(limits=LIMITS),
            limits=LIMITS,
            follow_redirects=False,
            trust_env=False,
        )
        _clients[loop] = client
    return client


async def close_client() -> None:
    loop = asyncio.get_running_loop()
    client = _clients.pop(loop, None)
    if client is not None:
        await client.aclose()
