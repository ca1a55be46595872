"""Batch progress on the organization's live stream (the dashboard's WebSocket group)."""

from __future__ import annotations

import logging
from typing import Any

from channels.layers import get_channel_layer

from config.live import bounded_group_send
from routing.batches.models import Batch
from routing.pricing import nano_to_usd

logger = logging.getLogger(__name__)
MESSAGE_TYPE = "batch.progress"


def org_group(organization_id: Any) -> str:
    # The group the live overview's consumer joins for an organization's members.
    return f"org.{organization_id}"


def progress(batch: Batch) -> dict[str, Any]:
    return {
        "id": batch.id,
        "status": batch.status,
        "total": batch.total,
        "completed": batch.completed,
        "failed": batch.failed,
        "cost": format(nano_to_usd(batch.cost_nanousd), "f"),
        "paused_reason": batch.paused_reason or None,
    }


async def publish(batch_id: str) -> None:
    """Never fails the runner: a lost progress message is repaired by the next one."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        batch = await Batch.objects.aget(pk=batch_id)
        message = {"type": MESSAGE_TYPE, "data": progress(batch)}
        await bounded_group_send(layer, [(org_group(batch.organization_id), message)])
    except Exception:
        logger.warning("batch progress not sent", exc_info=True)
