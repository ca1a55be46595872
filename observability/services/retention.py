"""Retention: request logs (and their attempts) older than LOG_RETENTION_DAYS go, in small
batches, each its own short transaction, so no long lock ever blocks the writer or the
explorer. Rollups are kept: every 30-day figure is read from them."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from observability.models import RequestAttempt, RequestLog


def request_logs_purge(
    *,
    now: datetime | None = None,
    days: int | None = None,
    batch_size: int | None = None,
    max_batches: int | None = None,
) -> int:
    """Delete logs received before now - days, oldest first. Returns how many went."""
    days = settings.LOG_RETENTION_DAYS if days is None else days
    batch_size = batch_size or settings.LOG_PURGE_BATCH
    cutoff = (now or timezone.now()) - timedelta(days=days)
    purged = 0
    for _ in range(max_batches or settings.LOG_PURGE_MAX_BATCHES):
        ids = list(
            RequestLog.objects.filter(received_at__lt=cutoff)
            .order_by("received_at")
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            break
        with transaction.atomic():
            RequestAttempt.objects.filter(log_id__in=ids)._raw_delete(RequestAttempt.objects.db)
            RequestLog.objects.filter(id__in=ids)._raw_delete(RequestLog.objects.db)
        purged += len(ids)
    return purged
