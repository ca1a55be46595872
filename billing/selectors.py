"""Every read from billing goes through here. Tenant reads take the organization first.

Spend in a period is always derived from the ledger's usage entries (the book of record); the
hot path mirrors it in counters (billing.holds) and seeds them from here when they are cold.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from accounts.models import Organization
from billing.holds.snapshot import OrgBillingSnapshot
from billing.holds.store import UsageRecord, decode_lines
from billing.models import (
    AlertSent,
    BillingAccount,
    LedgerEntry,
    Plan,
    StripeDispute,
    UsageOutboxBatch,
)
from billing.periods import EPOCH, MONTHLY, TOTAL, period_bounds, period_start

__all__ = [
    "BalanceMismatch",
    "alerts_active",
    "billing_account_get",
    "billing_check",
    "daily_spend",
    "disputes_open",
    "disputes_open_count",
    "key_spend_by_period",
    "ledger_credits",
    "ledger_list",
    "ledger_references_existing",
    "ledger_sum",
    "plan_default",
    "plan_list",
    "usage_spent",
    "usage_spent_between",
    "usage_billed",
    "usage_outbox_records",
    "usage_spent_total",
]

_USAGE = LedgerEntry.Kind.USAGE
_CREDIT_KINDS = [k for k in LedgerEntry.Kind.values if k != _USAGE]


def plan_list() -> QuerySet[Plan]:
    return Plan.objects.all()


def plan_default() -> Plan | None:
    return Plan.objects.filter(is_default=True).first()


def billing_account_get(*, organization: Organization) -> BillingAccount | None:
    """The account if it exists (billing.services.billing_account_for creates it)."""
    return BillingAccount.objects.select_related("plan").filter(organization=organization).first()


def disputes_open(*, organization: Organization) -> QuerySet[StripeDispute]:
    """The organization's payment disputes still undecided (spending is suspended meanwhile)."""
    return StripeDispute.objects.filter(
        organization=organization, status__in=StripeDispute.OPEN_STATUSES
    ).order_by("-created_at")


def disputes_open_count(*, organization_id: uuid.UUID | str) -> int:
    return StripeDispute.objects.filter(
        organization_id=organization_id, status__in=StripeDispute.OPEN_STATUSES
    ).count()


def ledger_list(*, organization: Organization, limit: int = 100) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(organization=organization).order_by("-occurred_at", "-id")[
        :limit
    ]


def ledger_references_existing(*, references: list[str]) -> set[str]:
    """Which of these references the ledger has (an operator's read, across organizations:
    the reconciliation's question)."""
    return set(
        LedgerEntry.objects.filter(reference__in=references).values_list("reference", flat=True)
    )


@dataclass(frozen=True, slots=True)
class BilledGeneration:
    """A usage entry of the ledger, as observability's reconciliation compares it with the
    request logs (the reference is the generation id)."""

    generation_id: str
    organization_id: uuid.UUID
    key_id: uuid.UUID | None
    cost_nanousd: int
    occurred_at: datetime


def usage_billed(
    *, since: datetime, until: datetime, chunk_size: int = 2000
) -> Iterator[list[BilledGeneration]]:
    """Every usage entry that cost something, of generations started in [since, until),
    across organizations (an operator's read), in chunks of `chunk_size`, oldest first."""
    entries = (
        LedgerEntry.objects.filter(kind=_USAGE, occurred_at__gte=since, occurred_at__lt=until)
        .exclude(amount_nanousd=0)
        .order_by("occurred_at", "id")
        .values_list("reference", "organization_id", "key_id", "amount_nanousd", "occurred_at")
    )
    chunk: list[BilledGeneration] = []
    for reference, organization_id, key_id, amount, occurred_at in entries.iterator(
        chunk_size=chunk_size
    ):
        chunk.append(BilledGeneration(reference, organization_id, key_id, -amount, occurred_at))
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def usage_outbox_records(*, organization_id: uuid.UUID | str) -> list[UsageRecord]:
    """An organization's settled usage still in the outbox table (not moved to the ledger)."""
    needle = str(organization_id).encode()
    records = []
    for payload in UsageOutboxBatch.objects.values_list("payload", flat=True):
        if needle in bytes(payload):
            records.extend(
                r for r in decode_lines(payload) if r.organization_id == str(organization_id)
            )
    return records


def ledger_sum(*, organization: Organization) -> int:
    """The balance as the ledger says it: the sum of every entry."""
    total = LedgerEntry.objects.filter(organization=organization).aggregate(
        total=Sum("amount_nanousd")
    )["total"]
    return int(total or 0)


def _credits_subquery() -> Subquery:
    return Subquery(
        LedgerEntry.objects.filter(
            organization_id=OuterRef("organization_id"), kind__in=_CREDIT_KINDS
        )
        .order_by()
        .values("organization_id")
        .annotate(total=Sum("amount_nanousd"))
        .values("total")
    )


def ledger_credits(*, organization_id: uuid.UUID | str) -> tuple[int, int] | None:
    """(credits, balance) of an organization in one statement: credits are every entry that
    isn't usage (top-ups, grants, refunds, adjustments), so credits - balance is the usage of
    all time without summing every usage row. None if the account doesn't exist yet."""
    row = (
        BillingAccount.objects.filter(organization_id=organization_id)
        .annotate(credits=Coalesce(_credits_subquery(), 0))
        .values_list("credits", "balance_nanousd")
        .first()
    )
    if row is None:
        return None
    return int(row[0]), int(row[1])


def usage_spent_between(
    *,
    organization_id: uuid.UUID | str,
    key_id: uuid.UUID | str | None = None,
    start: datetime,
    end: datetime | None,
) -> int:
    """Usage (a positive amount) of an organization, or one of its keys, started in
    [start, end)."""
    entries = LedgerEntry.objects.filter(organization_id=organization_id, kind=_USAGE)
    if key_id is not None:
        entries = entries.filter(key_id=key_id)
    if start > EPOCH:
        entries = entries.filter(occurred_at__gte=start)
    if end is not None:
        entries = entries.filter(occurred_at__lt=end)
    total = entries.aggregate(total=Sum("amount_nanousd"))["total"]
    return -int(total or 0)


def usage_spent(
    *,
    organization_id: uuid.UUID | str,
    key_id: uuid.UUID | str | None = None,
    period: str = MONTHLY,
    at: datetime,
) -> int:
    """Usage in the spend period (daily, weekly, monthly, total) that contains `at`."""
    start, end = period_bounds(period, at)
    return usage_spent_between(organization_id=organization_id, key_id=key_id, start=start, end=end)


def usage_spent_total(*, organization_id: uuid.UUID | str) -> int:
    """Usage of all time, from the cached balance and the (few) credit entries."""
    row = ledger_credits(organization_id=organization_id)
    if row is None:
        return usage_spent_between(organization_id=organization_id, start=EPOCH, end=None)
    credits, balance = row
    return credits - balance


@dataclass(frozen=True, slots=True)
class BalanceMismatch:
    organization_id: uuid.UUID
    cached_nanousd: int | None  # None: entries but no account
    ledger_nanousd: int


def billing_check(*, organization_ids: list[uuid.UUID] | None = None) -> list[BalanceMismatch]:
    """Every organization whose cached balance differs from the sum of its ledger entries.
    An empty list proves the books agree."""
    sums = (
        LedgerEntry.objects.filter(organization_id=OuterRef("organization_id"))
        .order_by()
        .values("organization_id")
        .annotate(total=Sum("amount_nanousd"))
        .values("total")
    )
    accounts = BillingAccount.objects.annotate(ledger=Coalesce(Subquery(sums), 0))
    entries = LedgerEntry.objects.exclude(
        organization_id__in=BillingAccount.objects.values("organization_id")
    )
    if organization_ids is not None:
        accounts = accounts.filter(organization_id__in=organization_ids)
        entries = entries.filter(organization_id__in=organization_ids)
    mismatches = [
        BalanceMismatch(org_id, int(cached), int(ledger))
        for org_id, cached, ledger in accounts.values_list(
            "organization_id", "balance_nanousd", "ledger"
        )
        if cached != ledger
    ]
    orphans = (
        entries.order_by()
        .values("organization_id")
        .annotate(total=Sum("amount_nanousd"))
        .values_list("organization_id", "total")
    )
    mismatches.extend(BalanceMismatch(org_id, None, int(total)) for org_id, total in orphans)
    return mismatches


def alerts_active(*, organization: Organization, at: datetime) -> list[AlertSent]:
    """What a dashboard banner shows: for each limit, the highest threshold crossed in the
    period that contains `at` (yesterday's daily alert is over and no longer shown)."""
    rows = AlertSent.objects.filter(
        Q(period_start__gte=at - timedelta(days=32)) | Q(period=TOTAL), organization=organization
    ).order_by("scope", "subject", "-threshold")
    best: dict[tuple[str, str], AlertSent] = {}
    for row in rows:
        if row.period_start != period_start(row.period, at):
            continue
        best.setdefault((row.scope, row.subject), row)
    return list(best.values())


def daily_spend(
    *, organization: Organization, days: int = 7, now: datetime | None = None
) -> list[tuple[datetime, int]]:
    """Usage per UTC day over the last `days` days, oldest first, zero days included: the
    billing page's burn rate."""
    from django.db.models.functions import TruncDate
    from django.utils import timezone

    now = now or timezone.now()
    first = period_start("daily", now) - timedelta(days=days - 1)
    rows = (
        LedgerEntry.objects.filter(
            organization_id=organization.id, kind=_USAGE, occurred_at__gte=first
        )
        .annotate(day=TruncDate("occurred_at"))
        .values("day")
        .annotate(total=Sum("amount_nanousd"))
    )
    by_day = {row["day"]: -int(row["total"] or 0) for row in rows}
    out = []
    for i in range(days):
        day = first + timedelta(days=i)
        out.append((day, by_day.get(day.date(), 0)))
    return out


def key_spend_by_period(
    *, organization_id: uuid.UUID | str, periods: set[str], at: datetime
) -> dict[str, dict[str, int]]:
    """{period: {key id: usage in the period containing `at`}}: one query per period."""
    out: dict[str, dict[str, int]] = {}
    for period in periods:
        start, end = period_bounds(period, at)
        entries = LedgerEntry.objects.filter(
            organization_id=organization_id, kind=_USAGE, key_id__isnull=False
        )
        if start > EPOCH:
            entries = entries.filter(occurred_at__gte=start)
        if end is not None:
            entries = entries.filter(occurred_at__lt=end)
        out[period] = {
            str(row["key_id"]): -int(row["total"] or 0)
            for row in entries.values("key_id").annotate(total=Sum("amount_nanousd"))
        }
    return out


async def billing_snapshot(*, organization_id: uuid.UUID | str) -> OrgBillingSnapshot:
    """What the hot path knows of an organization's billing (its plan's caps among it),
    from the process's and the shared cache: no query when warm."""
    from billing.holds import org_snapshots

    return await org_snapshots.aget(organization_id)
