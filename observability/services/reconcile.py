"""The request logs against the ledger: a generation billed without a request log (its
process died in the moment between settling it and pushing its log: the log buffer is in
memory for OBSERVABILITY_BUFFER_FLUSH_SECONDS, its usage went to PostgreSQL and to Redis) gets
a log row from its ledger entry: its cost, key and start, status "log_lost" (its model,
provider and tokens went with the process). Billed usage and logged usage then agree, as
billing's reconciliation (the other way round) makes them agree for served generations the
ledger missed.

Only entries older than BILLING_RECONCILE_SETTLE_SECONDS are compared, as there: younger ones
may have their log on its way.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from observability.models import RequestLog
from observability.services.logs import request_logs_write

logger = logging.getLogger(__name__)

LOG_LOST = "log_lost"


def request_logs_reconcile(*, since: datetime | None = None, until: datetime | None = None) -> int:
    """Write a log row for every generation billed in [since, until) that has none. Returns
    how many were written. Defaults: billing's reconciliation window."""
    from billing.selectors import usage_billed
    from observability.services import request_logs_flush

    # What is queued durably (a worker was behind) is written with its details first.
    request_logs_flush()
    now = timezone.now()
    until = until or now - timedelta(seconds=settings.BILLING_RECONCILE_SETTLE_SECONDS)
    since = since or until - timedelta(seconds=settings.BILLING_RECONCILE_WINDOW_SECONDS)
    written = 0
    for chunk in usage_billed(since=since, until=until):
        logged = set(
            RequestLog.objects.filter(
                generation_id__in=[g.generation_id for g in chunk]
            ).values_list("generation_id", flat=True)
        )
        missing = [
            {
                "v": 1,
                "generation_id": g.generation_id,
                "organization_id": str(g.organization_id),
                "key_id": str(g.key_id) if g.key_id else None,
                "cost_nanousd": g.cost_nanousd,
                "error": LOG_LOST,
                "attempts": [],
                "received_at": g.occurred_at.timestamp(),
                "finished_at": g.occurred_at.timestamp(),
            }
            for g in chunk
            if g.generation_id not in logged
        ]
        if missing:
            written += len(request_logs_write(records=missing))
    if written:
        logger.warning("%d billed generations had no request log; written from the ledger", written)
    return written
