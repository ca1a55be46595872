"""Live pushes through the channel layer that never hold anything up.

A channel layer that is down (Redis stopped, or not answering) must not stall the request-log
flush, a batch runner or a request: each send gives up after OBSERVABILITY_LIVE_SEND_TIMEOUT
seconds, and after a failure this process skips sends for OBSERVABILITY_LIVE_DOWN_SECONDS. A
live page that missed messages gets the current figures again when it reconnects.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from django.conf import settings


class ChannelLayerDown(Exception):
    pass


_layer_down_until = 0.0  # monotonic


async def bounded_group_send(layer, messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Send each (group, message) within the timeout; raises ChannelLayerDown (or the layer's
    own error) when it can't."""
    global _layer_down_until
    if time.monotonic() < _layer_down_until:
        raise ChannelLayerDown("the channel layer failed moments ago")

    async def send_all() -> None:
        for group, message in messages:
            await layer.group_send(group, message)

    try:
        await asyncio.wait_for(send_all(), timeout=settings.OBSERVABILITY_LIVE_SEND_TIMEOUT)
    except Exception as exc:
        _layer_down_until = time.monotonic() + settings.OBSERVABILITY_LIVE_DOWN_SECONDS
        if isinstance(exc, TimeoutError):
            raise ChannelLayerDown("the channel layer did not answer in time") from exc
        raise
