"""The gateway's Celery tasks (found by autodiscovery): batch runs and their sweep, and the
purge of stored responses past their retention."""

from __future__ import annotations

from celery import shared_task

from routing import services
from routing.batches.tasks import batch_run, batch_sweep

__all__ = ["batch_run", "batch_sweep", "purge_stored_responses"]


@shared_task(ignore_result=True)
def purge_stored_responses() -> int:
    """Stored responses (/v1/responses) past RESPONSES_RETENTION_DAYS go, in small batches."""
    return services.stored_responses_purge()
