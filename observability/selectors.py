"""Every read from observability goes through here. Tenant reads take the organization first.

The overview's 30-day figures and charts come from the hourly rollups, never from the logs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import Organization
from accounts.selectors import api_key_list
from observability.models import (
    LATENCY_BUCKET_FIELDS,
    LATENCY_BUCKETS_MS,
    NO_KEY,
    OrganizationLogSettings,
    RequestLog,
    RequestStatus,
    UsageRollup,
)
from observability.services.logs import GENERATION_ID

WINDOW_DAYS = 30
PLAYGROUND_LABEL = "Playground"
NANO = Decimal(1_000_000_000)

_SUMS = (
    "requests",
    "errors",
    "rate_limited",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_nanousd",
    "latency_ms_sum",
    "ttft_ms_sum",
    "ttft_count",
)


def usd(nano: int) -> str:
    """An exact USD amount as a string (money is never a float)."""
    return format((Decimal(nano) / NANO).normalize(), "f")


def usd_display(nano: int) -> str:
    """A short amount for a big figure: cents from a dollar up, else three significant digits,
    never in exponent notation (the exact amount is `usd`)."""
    amount = Decimal(nano) / NANO
    if amount == 0:
        return "$0"
    if amount >= 1:
        return f"${amount:,.2f}"
    places = max(2, -amount.adjusted() + 2)
    text = format(amount.quantize(Decimal(1).scaleb(-places)), "f")
    return "$" + text.rstrip("0").rstrip(".")


def window_start(now: datetime | None = None, days: int = WINDOW_DAYS) -> datetime:
    """Midnight UTC of the first of the last `days` days (today included)."""
    today = (now or timezone.now()).astimezone(UTC).date()
    start = today - timedelta(days=days - 1)
    return datetime(start.year, start.month, start.day, tzinfo=UTC)


def _rollups(organization_id: uuid.UUID | str, now: datetime | None) -> QuerySet[UsageRollup]:
    return UsageRollup.objects.filter(organization_id=organization_id, hour__gte=window_start(now))


def figures_from_sums(sums: dict[str, Any]) -> dict[str, Any]:
    values = {name: sums.get(name) or 0 for name in _SUMS}
    requests = int(values["requests"])
    errors = int(values["errors"])
    rate_limited = int(values["rate_limited"])
    successes = requests - errors - rate_limited
    judged = successes + errors  # rate-limit answers say nothing about uptime
    return {
        "requests": requests,
        "prompt_tokens": int(values["prompt_tokens"]),
        "completion_tokens": int(values["completion_tokens"]),
        "cached_tokens": int(values["cached_tokens"]),
        "reasoning_tokens": int(values["reasoning_tokens"]),
        "errors": errors,
        "rate_limited": rate_limited,
        "uptime": round(successes / judged * 100, 2) if judged else None,
        "error_rate": round((errors + rate_limited) / requests * 100, 2) if requests else None,
        "cost_nanousd": int(values["cost_nanousd"]),
        "cost_usd": usd(int(values["cost_nanousd"])),
        "cost_display": usd_display(int(values["cost_nanousd"])),
        "avg_latency_ms": round(values["latency_ms_sum"] / requests, 1) if requests else None,
        "avg_ttft_ms": (
            round(values["ttft_ms_sum"] / values["ttft_count"], 1) if values["ttft_count"] else None
        ),
    }


def overview_figures(
    *, organization_id: uuid.UUID | str, now: datetime | None = None
) -> dict[str, Any]:
    """The overview's 30-day figures for one organization: one aggregate over its rollups."""
    sums = _rollups(organization_id, now).aggregate(**{name: Sum(name) for name in _SUMS})
    return figures_from_sums(sums)


def key_labels(*, organization: Organization) -> dict[str, str]:
    """Key id -> name. Ids that are no key row of the organization are playground chats."""
    labels = {str(key.id): key.name for key in api_key_list(organization=organization)}
    labels[str(NO_KEY)] = "No key"
    return labels


def key_label(labels: dict[str, str], key_id: uuid.UUID | str | None) -> str:
    if key_id is None:
        return "No key"
    return labels.get(str(key_id), PLAYGROUND_LABEL)


def _days(now: datetime | None) -> list[date]:
    start = window_start(now).date()
    return [start + timedelta(days=i) for i in range(WINDOW_DAYS)]


def overview_series(
    *, organization: Organization, now: datetime | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """Per day of the last 30: requests, tokens, cost and latency, by model and by key."""
    days = _days(now)
    index = {day: i for i, day in enumerate(days)}
    labels = labels if labels is not None else key_labels(organization=organization)
    base = _rollups(organization.id, now).annotate(day=TruncDate("hour", tzinfo=UTC))
    metrics = {
        "requests": Sum("requests"),
        "tokens": Sum(F("prompt_tokens") + F("completion_tokens")),
        "cost_nanousd": Sum("cost_nanousd"),
        "latency_ms_sum": Sum("latency_ms_sum"),
    }
    result: dict[str, Any] = {"days": [day.isoformat() for day in days]}
    for dimension, column in (("by_model", "model"), ("by_key", "key_id")):
        series: dict[str, dict[str, list]] = {}
        for row in base.values("day", column).annotate(**metrics).order_by():
            day = _day(row["day"])
            if day not in index:
                continue
            name = row[column] if column == "model" else str(row[column])
            item = series.setdefault(
                name,
                {
                    "label": name if column == "model" else key_label(labels, name),
                    **{metric: [0] * len(days) for metric in metrics},
                },
            )
            for metric in metrics:
                item[metric][index[day]] += row[metric] or 0
        result[dimension] = series
    return result


def latency_percentile(row: dict[str, int], quantile: float) -> int | None:
    """An upper bound from the histogram: the bucket where the quantile falls."""
    total = sum(row.get(name) or 0 for name in LATENCY_BUCKET_FIELDS)
    if not total:
        return None
    seen = 0
    for name, bound in zip(LATENCY_BUCKET_FIELDS, (*LATENCY_BUCKETS_MS, None), strict=True):
        seen += row.get(name) or 0
        if seen >= quantile * total:
            return bound
    return None


def usage_by_model(
    *, organization: Organization, now: datetime | None = None
) -> list[dict[str, Any]]:
    """30-day totals per model and provider (the overview's table), from the rollups."""
    rows = (
        _rollups(organization.id, now)
        .values("model", "provider")
        .annotate(
            **{name: Sum(name) for name in _SUMS},
            **{name: Sum(name) for name in LATENCY_BUCKET_FIELDS},
        )
        .order_by("-requests", "model", "provider")
    )
    result = []
    for row in rows:
        figures = figures_from_sums(row)
        figures.update(
            model=row["model"],
            provider=row["provider"],
            p50_ms=latency_percentile(row, 0.5),
            p95_ms=latency_percentile(row, 0.95),
        )
        result.append(figures)
    return result


# The usage page ------------------------------------------------------------------------------

USAGE_DIMENSIONS = {"model": "model", "key": "key_id", "provider": "provider"}
# What the usage page and its export count, besides cost.
USAGE_COUNTS = (
    "requests",
    "errors",
    "rate_limited",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
)
_SUM_EXPRESSIONS = {name: Sum(name) for name in _SUMS}


def _day(value: date | datetime) -> date:
    """TruncDate gives a date on PostgreSQL and may give a datetime on SQLite."""
    return value.date() if isinstance(value, datetime) else value


def _usage_figures(sums: dict[str, Any]) -> dict[str, Any]:
    figures = figures_from_sums(sums)
    figures["tokens"] = figures["prompt_tokens"] + figures["completion_tokens"]
    return figures


def usage_breakdown(
    *,
    organization: Organization,
    by: str,
    days: int = WINDOW_DAYS,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The last `days` days' usage per model, key or provider, and per day, from the rollups
    (two aggregate queries, plus the key names when grouping by key)."""
    column = USAGE_DIMENSIONS[by]
    start = window_start(now, days)
    rollups = UsageRollup.objects.filter(organization=organization, hour__gte=start)
    labels = key_labels(organization=organization) if by == "key" else {}
    rows = []
    totals = dict.fromkeys(_SUMS, 0)
    grouped = rollups.values(column).annotate(**_SUM_EXPRESSIONS)
    for row in grouped.order_by("-cost_nanousd", column):
        for name in _SUMS:
            totals[name] += row[name] or 0
        name = str(row[column])
        label = key_label(labels, name) if by == "key" else name
        rows.append({"name": name, "label": label, **_usage_figures(row)})
    total = _usage_figures(totals)
    for row in rows:
        row["cost_share"] = (
            round(row["cost_nanousd"] * 100 / total["cost_nanousd"], 1)
            if total["cost_nanousd"]
            else None
        )
    daily = (
        rollups.annotate(day=TruncDate("hour", tzinfo=UTC))
        .values("day")
        .annotate(**_SUM_EXPRESSIONS)
        .order_by()
    )
    by_day = {_day(row["day"]): row for row in daily}
    first = start.date()
    today = first + timedelta(days=days - 1)
    days_list = []
    for back in range(days):
        day = today - timedelta(days=back)
        days_list.append({"day": day, **_usage_figures(by_day.get(day, {}))})
    return {"rows": rows, "total": total, "days": days_list, "since": first, "until": today}


def usage_export_rows(
    *, organization: Organization, days: int = WINDOW_DAYS, now: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """Per day x model x provider x key over the last `days` days, for the CSV export."""
    rollups = UsageRollup.objects.filter(
        organization=organization, hour__gte=window_start(now, days)
    )
    rows = (
        rollups.annotate(day=TruncDate("hour", tzinfo=UTC))
        .values("day", "model", "provider", "key_id")
        .annotate(**_SUM_EXPRESSIONS)
        .order_by("day", "model", "provider", "key_id")
    )
    for row in rows:
        yield {**row, "day": _day(row["day"])}


# The logs explorer ---------------------------------------------------------------------------

STATUS_CHOICES = (
    ("ok", "Succeeded"),
    ("error", "Failed"),
    ("rate_limited", "Rate limited"),
    ("client_disconnected", "Client disconnected"),
)


@dataclass(frozen=True)
class LogFilters:
    since: datetime | None = None
    until: datetime | None = None
    model: str = ""
    provider: str = ""
    key_id: uuid.UUID | None = None
    status: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _filtered(organization: Organization, filters: LogFilters) -> QuerySet[RequestLog]:
    logs = RequestLog.objects.filter(organization=organization)
    if filters.since:
        logs = logs.filter(received_at__gte=filters.since)
    if filters.until:
        logs = logs.filter(received_at__lt=filters.until)
    if filters.model:
        logs = logs.filter(model=filters.model)
    if filters.provider:
        logs = logs.filter(provider=filters.provider)
    if filters.key_id:
        logs = logs.filter(key_id=filters.key_id)
    if filters.status == "error":
        logs = logs.exclude(
            status__in=(
                RequestStatus.OK,
                RequestStatus.CLIENT_DISCONNECTED,
                *RequestStatus.RATE_LIMITED,
            )
        )
    elif filters.status == "rate_limited":
        logs = logs.filter(status__in=RequestStatus.RATE_LIMITED)
    elif filters.status:
        logs = logs.filter(status=filters.status)
    return logs.order_by("-received_at", "-id")


LIST_FIELDS = (
    "id",
    "generation_id",
    "organization_id",
    "key_id",
    "requested_model",
    "model",
    "provider",
    "status",
    "streamed",
    "prompt_tokens",
    "completion_tokens",
    "cost_nanousd",
    "received_at",
    "ttft_ms",
    "total_ms",
    "tokens_per_second",
    "attempt_count",
)


@dataclass(frozen=True)
class LogPage:
    rows: list[RequestLog]
    next_cursor: str | None


def encode_cursor(log: RequestLog) -> str:
    return f"{log.received_at.timestamp():.6f}_{log.id}"


def decode_cursor(cursor: str) -> tuple[datetime, int] | None:
    stamp, _, pk = cursor.partition("_")
    try:
        return datetime.fromtimestamp(float(stamp), tz=UTC), int(pk)
    except (ValueError, OverflowError, OSError):
        return None


def logs_before(logs: QuerySet[RequestLog], after: tuple[datetime, int]) -> QuerySet[RequestLog]:
    """The rows after a keyset cursor, newest first. The plain `received_at <= at` bound is
    redundant with the OR, but it is what lets PostgreSQL seek the (organization, received_at,
    id) index to the cursor instead of scanning past every newer row."""
    at, pk = after
    return logs.filter(received_at__lte=at).filter(
        Q(received_at__lt=at) | Q(received_at=at, id__lt=pk)
    )


def request_log_page(
    *,
    organization: Organization,
    filters: LogFilters,
    cursor: str | None = None,
    limit: int = 50,
) -> LogPage:
    """One page of logs, newest first; keyset pagination on (received_at, id), so a deep page
    costs what the first does. One query."""
    logs = _filtered(organization, filters).only(*LIST_FIELDS)
    after = decode_cursor(cursor) if cursor else None
    if after is not None:
        logs = logs_before(logs, after)
    rows = list(logs[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return LogPage(rows=rows, next_cursor=encode_cursor(rows[-1]) if more and rows else None)


def request_log_export(*, organization: Organization, filters: LogFilters) -> QuerySet[RequestLog]:
    return _filtered(organization, filters).defer("prompt_body", "response_body")


def request_log_find(*, organization_id: uuid.UUID | str, generation_id: str) -> RequestLog | None:
    """One generation of the organization with its attempts, or None (also for a malformed id
    or another organization's generation)."""
    if not isinstance(generation_id, str) or not GENERATION_ID.match(generation_id):
        return None
    return (
        RequestLog.objects.filter(organization_id=organization_id, generation_id=generation_id)
        .prefetch_related("attempts")
        .first()
    )


def log_filter_options(*, organization: Organization, now: datetime | None = None) -> dict:
    """Models and providers seen in the last 30 days (from the rollups: one query)."""
    pairs = list(_rollups(organization.id, now).values_list("model", "provider").distinct())
    return {
        "models": sorted({model for model, _ in pairs}),
        "providers": sorted({provider for _, provider in pairs}),
    }


def log_settings_get(*, organization: Organization) -> OrganizationLogSettings:
    return OrganizationLogSettings.objects.filter(organization=organization).first() or (
        OrganizationLogSettings(organization=organization)
    )


def log_settings_body_orgs() -> dict[str, int]:
    """Organization id -> body byte cap, for every organization that keeps bodies."""
    return {
        str(org_id): cap
        for org_id, cap in OrganizationLogSettings.objects.filter(store_bodies=True).values_list(
            "organization_id", "max_body_bytes"
        )
    }


def platform_figures(*, now: datetime | None = None) -> dict[str, Any]:
    """The public pages' 30-day totals across every organization: one aggregate of rollups."""
    rows = UsageRollup.objects.filter(hour__gte=window_start(now))
    return figures_from_sums(rows.aggregate(**{name: Sum(name) for name in _SUMS}))


@dataclass(frozen=True, slots=True)
class ServedGeneration:
    """A generation a provider answered, as its request log records it: what billing's
    reconciliation compares with the ledger (the ledger's reference is the generation id)."""

    generation_id: str
    organization_id: uuid.UUID
    key_id: uuid.UUID | None
    cost_nanousd: int
    received_at: datetime


def generations_served(
    *, since: datetime, until: datetime, chunk_size: int = 2000
) -> Iterator[list[ServedGeneration]]:
    """Every logged generation received in [since, until) that was answered or costs
    something (a failure nothing billed has no ledger entry), across organizations (an
    operator's read), in chunks of `chunk_size`, oldest first."""
    logs = (
        RequestLog.objects.filter(received_at__gte=since, received_at__lt=until)
        .filter(Q(status=RequestStatus.OK) | Q(cost_nanousd__gt=0))
        .order_by("received_at", "id")
        .values_list("generation_id", "organization_id", "key_id", "cost_nanousd", "received_at")
    )
    chunk: list[ServedGeneration] = []
    for row in logs.iterator(chunk_size=chunk_size):
        chunk.append(ServedGeneration(*row))
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
