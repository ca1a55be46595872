"""Celery tasks for batches: each takes ids and is safe to run twice."""

from __future__ import annotations

import asyncio

from celery import shared_task
from django.db import close_old_connections

from routing.batches import services
from routing.batches.runner import run_batch
from routing.http import close_client


async def _run(batch_id: str) -> str:
    try:
        return await run_batch(batch_id)
    finally:
        await close_client()  # the pooled upstream client belongs to this event loop


@shared_task(ignore_result=True, acks_late=True)
def batch_run(batch_id: str) -> str:
    try:
        return asyncio.run(_run(batch_id))
    finally:
        close_old_connections()


@shared_task(ignore_result=True)
def batch_sweep() -> int:
    """Expire batches past their window; restart batches nobody runs (a worker died, or a
    paused batch whose credit may have been topped up)."""
    services.batches_expire()
    ids = services.batches_to_resume()
    for batch_id in ids:
        batch_run.delay(batch_id)
    return len(ids)
