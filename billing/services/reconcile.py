"""Reconciliation: what was served against what was billed, per generation.

The request log is the durable record of what was served (observability writes it through a
PostgreSQL queue, never through Redis alone); the ledger's usage entries carry the generation
id as their reference. A served generation without an entry (its usage record was lost: a
Redis restart without persistence before the flush, a process killed between settling and
writing) is billed here at the cost its log records, through the same idempotent write as
settlement: running it twice, or alongside the regular flush, changes nothing.

Only logs older than BILLING_RECONCILE_SETTLE_SECONDS are compared: younger ones may still be
on their way (outbox, queue, log buffer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from billing.holds.store import UsageRecord
from billing.selectors import ledger_references_existing

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class UsageReconciliation:
    since: datetime
    until: datetime
    checked: int = 0
    missing: list[UsageRecord] = field(default_factory=list)
    billed: int = 0  # entries written now (--fix, the periodic task)
    failed: int = 0  # could not be written (tried again next run)

    @property
    def missing_nanousd(self) -> int:
        return sum(record.cost_nanousd for record in self.missing)


def usage_reconcile(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    fix: bool = False,
) -> UsageReconciliation:
    """Compare the served generations logged in [since, until) with the ledger; with `fix`,
    bill the ones it lacks. Defaults: the last BILLING_RECONCILE_WINDOW_SECONDS, up to
    BILLING_RECONCILE_SETTLE_SECONDS ago."""
    # The request log is observability's; billing reads it through its selectors only.
    from billing.services.ledger import usage_entries_write
    from observability.selectors import generations_served

    now = timezone.now()
    until = until or now - timedelta(seconds=settings.BILLING_RECONCILE_SETTLE_SECONDS)
    since = since or until - timedelta(seconds=settings.BILLING_RECONCILE_WINDOW_SECONDS)
    report = UsageReconciliation(since=since, until=until)
    for chunk in generations_served(since=since, until=until):
        report.checked += len(chunk)
        billed = ledger_references_existing(references=[g.generation_id for g in chunk])
        missing = [
            UsageRecord(
                reference=g.generation_id,
                organization_id=str(g.organization_id),
                key_id=str(g.key_id) if g.key_id else None,
                cost_nanousd=g.cost_nanousd,
                occurred_at=g.received_at,
                description="Usage (reconciled from the request log)",
                metadata={"reconciled": True},
            )
            for g in chunk
            if g.generation_id not in billed
        ]
        report.missing.extend(missing)
        if fix and missing:
            failed = usage_entries_write(records=missing)
            report.failed += len(failed)
            report.billed += len(missing) - len(failed)
    if report.missing:
        logger.warning(
            "%d served generations had no ledger entry (%d nano-USD)%s",
            len(report.missing),
            report.missing_nanousd,
            f"; billed {report.billed}" if fix else "",
        )
    return report
