"""The transport-level faults: stall, connection reset, an answer cut off mid-body, an answer
that goes silent mid-body (`stall_mid`: the connection stays open, nothing more comes).

The HTTP-level ones (429, 500, 503) are plain error answers, shaped by each wire module.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from aiohttp import web

STALL_SECONDS = 300.0

SHUTDOWN_KEY: web.AppKey[asyncio.Event] = web.AppKey("sim_shutdown", asyncio.Event)


def abort(request: web.Request, *, reset: bool = True) -> None:
    """Drop the connection. With `reset`, SO_LINGER 0 makes the kernel send an RST instead of
    a FIN, so the client sees "connection reset by peer", as when a provider's proxy dies."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()  # flushes what was written, then FIN


async def stall(request: web.Request) -> web.StreamResponse:
    """Accept the request and say nothing until the client gives up (its disconnect cancels
    this handler), the simulator shuts down, or STALL_SECONDS pass."""
    await stay_silent(request)
    return web.Response(status=504)  # never reaches the client: the connection is gone


async def stay_silent(request: web.Request) -> None:
    """Keep the connection open and send nothing more, until the client gives up, the
    simulator shuts down, or STALL_SECONDS pass; then drop it."""
    shutdown = request.app[SHUTDOWN_KEY]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(shutdown.wait(), STALL_SECONDS)
    abort(request)


async def cut_body(
    request: web.Request, body: bytes, *, content_type: str, status: int = 200
) -> web.StreamResponse:
    """A non-streamed answer whose connection drops halfway through its declared length."""
    response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
    response.content_length = len(body)
    with contextlib.suppress(ConnectionError):
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
    abort(request, reset=False)
    return response


async def stall_body(
    request: web.Request, body: bytes, *, content_type: str, status: int = 200
) -> web.StreamResponse:
    """A non-streamed answer that goes silent halfway through its declared length."""
    response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
    response.content_length = len(body)
    with contextlib.suppress(ConnectionError):
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
    await stay_silent(request)
    return response
