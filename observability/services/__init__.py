"""Every write to observability goes through here."""

from __future__ import annotations

from django.conf import settings

from observability.services.log_settings import log_settings_update
from observability.services.logs import request_logs_write
from observability.services.reconcile import request_logs_reconcile
from observability.services.retention import request_logs_purge
from observability.services.rollups import rollups_add

__all__ = [
    "log_settings_update",
    "request_logs_flush",
    "request_logs_purge",
    "request_logs_reconcile",
    "request_logs_write",
    "rollups_add",
]


def request_logs_flush(*, max_batches: int | None = None, min_age: float = 0.0) -> int:
    """Drain the durable queue into log rows, batch by batch (each its own transaction).
    `min_age` leaves entries younger than that many seconds to the process that queued them.
    Returns how many queued records were handled."""
    from observability.writer.queue import get_log_queue

    queue = get_log_queue()
    handled = 0
    for _ in range(max_batches or settings.OBSERVABILITY_FLUSH_MAX_BATCHES):
        count = queue.process(
            lambda records: request_logs_write(records=records),
            limit=settings.OBSERVABILITY_FLUSH_BATCH,
            min_age=min_age,
        )
        if not count:
            break
        handled += count
    return handled
