"""The live dashboard's feed: after a batch of logs commits, every organization in it gets one
group message on `org.<id>` with its fresh 30-day figures (read from the rollups) and what the
batch added (per model and per key for today, and the new requests themselves).

The public model pages get one message per batch on the `platform` group: what the batch added
to the platform's totals (counts only, worked out from the batch itself, so a busy writer runs
no query for them); each page adds it to the totals it was given on joining.

Where the message is sent from matters for the in-memory channel layer of the embedded
default: its queues belong to the server's event loop, so the writer thread hands the sends to
that loop (use_loop). Through channels_redis any process and loop can send.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from datetime import UTC
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from config.live import ChannelLayerDown, bounded_group_send
from observability.models import RequestLog

logger = logging.getLogger(__name__)

MESSAGE_TYPE = "overview.update"
PLATFORM_GROUP = "platform"
PLATFORM_MESSAGE_TYPE = "platform.update"
# What the public totals add up; uptime is worked out from requests, errors and rate limits.
PLATFORM_COUNTS = ("requests", "errors", "rate_limited", "prompt_tokens", "completion_tokens")
RECENT_PER_MESSAGE = 20
_target = threading.local()


def group_for(organization_id: Any) -> str:
    return f"org.{organization_id}"


def use_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Sends made by this thread go to `loop` (the server's), when it is running."""
    _target.loop = loop


def log_summary(log: RequestLog) -> dict[str, Any]:
    from observability.selectors import usd

    return {
        "id": log.generation_id,
        "received_at": log.received_at.astimezone(UTC).isoformat(),
        "model": log.model,
        "provider": log.provider,
        "key_id": str(log.key_id) if log.key_id else None,
        "status": log.status,
        "streamed": log.streamed,
        "prompt_tokens": log.prompt_tokens,
        "completion_tokens": log.completion_tokens,
        "cost_usd": usd(log.cost_nanousd),
        "total_ms": round(log.total_ms),
        "ttft_ms": round(log.ttft_ms) if log.ttft_ms is not None else None,
        "attempts": log.attempt_count,
    }


def _delta(logs: list[RequestLog]) -> dict[str, Any]:
    by: dict[str, dict[str, dict[str, Any]]] = {"by_model": {}, "by_key": {}}
    for log in logs:
        day = log.received_at.astimezone(UTC).date().isoformat()
        for dimension, name in (("by_model", log.model), ("by_key", str(log.key_id))):
            item = by[dimension].setdefault(
                f"{day}|{name}",
                {
                    "day": day,
                    "name": name,
                    "requests": 0,
                    "tokens": 0,
                    "cost_nanousd": 0,
                    "latency_ms_sum": 0.0,
                },
            )
            item["requests"] += 1
            item["tokens"] += log.prompt_tokens + log.completion_tokens
            item["cost_nanousd"] += log.cost_nanousd
            item["latency_ms_sum"] += log.total_ms
    return {dimension: list(items.values()) for dimension, items in by.items()}


def platform_delta(logs: list[RequestLog]) -> dict[str, int]:
    from observability.services.rollups import log_increments

    delta = dict.fromkeys(PLATFORM_COUNTS, 0)
    for log in logs:
        increments = log_increments(log)
        for name in PLATFORM_COUNTS:
            delta[name] += int(increments[name])
    return delta


def messages_for(logs: list[RequestLog]) -> list[tuple[str, dict[str, Any]]]:
    from observability.selectors import overview_figures

    by_org: dict[str, list[RequestLog]] = defaultdict(list)
    for log in logs:
        by_org[str(log.organization_id)].append(log)
    messages = []
    for organization_id, org_logs in by_org.items():
        recent = sorted(org_logs, key=lambda log: (log.received_at, log.id), reverse=True)
        data = {
            "figures": overview_figures(organization_id=organization_id),
            "delta": _delta(org_logs),
            "recent": [log_summary(log) for log in recent[:RECENT_PER_MESSAGE]],
        }
        messages.append((group_for(organization_id), {"type": MESSAGE_TYPE, "data": data}))
    if logs:
        platform = {"type": PLATFORM_MESSAGE_TYPE, "data": {"delta": platform_delta(logs)}}
        messages.append((PLATFORM_GROUP, platform))
    return messages


async def _send_all(messages: list[tuple[str, dict[str, Any]]]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    await bounded_group_send(layer, messages)


def _report(future) -> None:
    if future.cancelled() or future.exception() is None:
        return
    error = future.exception()
    if isinstance(error, ChannelLayerDown):
        logger.warning("live update not sent: %s", error)
    else:
        logger.warning("live update not sent", exc_info=error)


def send(messages: list[tuple[str, dict[str, Any]]]) -> None:
    if not messages:
        return
    loop = getattr(_target, "loop", None)
    if loop is not None and loop.is_running() and not loop.is_closed():
        asyncio.run_coroutine_threadsafe(_send_all(messages), loop).add_done_callback(_report)
        return
    async_to_sync(_send_all)(messages)


def publish(*, logs: list[RequestLog]) -> None:
    """Called on commit of a written batch. A failure here never undoes the batch."""
    try:
        send(messages_for(logs))
    except Exception:
        logger.warning("live update failed", exc_info=True)
