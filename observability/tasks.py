"""Observability's background work. Each task calls a service and is idempotent."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from observability.services import request_logs_flush, request_logs_purge, request_logs_reconcile


@shared_task(ignore_result=True)
def flush_request_logs() -> int:
    """Queued generation records -> request logs, attempts and rollups, in batches.

    Beat runs it every few seconds and the web processes ask for it after each push. In the
    embedded default the web process writes its own records (its in-memory channel layer can
    only be reached from there), so this run takes only what was left behind (a process that
    died between pushing and writing)."""
    min_age = (
        settings.OBSERVABILITY_QUEUE_STALE_SECONDS if settings.OBSERVABILITY_WRITE_IN_PROCESS else 0
    )
    return request_logs_flush(min_age=min_age)


@shared_task(ignore_result=True)
def reconcile_request_logs() -> int:
    """Generations billed without a request log (their process died holding it) get one."""
    return request_logs_reconcile()


@shared_task(ignore_result=True)
def purge_request_logs() -> int:
    """Logs past the retention period go, a small batch at a time."""
    return request_logs_purge()


@shared_task(ignore_result=True)
def share_endpoint_health() -> int:
    """Measured endpoint health to the router of every process."""
    from observability.health import endpoint_health_share

    return endpoint_health_share()
