"""Hourly rollups, kept by additive upserts in the writer's transaction.

One INSERT ... ON CONFLICT DO UPDATE SET col = col + excluded.col per batch (the same syntax on
PostgreSQL and SQLite), so concurrent writers can't lose each other's increments.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection

from observability.models import (
    LATENCY_BUCKET_FIELDS,
    LATENCY_BUCKETS_MS,
    NO_KEY,
    RequestLog,
    RequestStatus,
    UsageRollup,
)

GRAIN = ("organization_id", "hour", "model", "provider", "key_id")
COUNTERS = (
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
    *LATENCY_BUCKET_FIELDS,
)
_ROWS_PER_STATEMENT = 200


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def latency_bucket(total_ms: float) -> str:
    return LATENCY_BUCKET_FIELDS[bisect.bisect_left(LATENCY_BUCKETS_MS, total_ms)]


def is_rate_limited(status: str) -> bool:
    return status in RequestStatus.RATE_LIMITED


def is_error(status: str) -> bool:
    """A failure that counts against uptime: not ok, not a client leaving, not a rate limit."""
    return status not in (RequestStatus.OK, RequestStatus.CLIENT_DISCONNECTED) and not (
        is_rate_limited(status)
    )


def log_increments(log: RequestLog) -> dict[str, Any]:
    """What one generation adds to its rollup row."""
    counts: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
    counts["requests"] = 1
    counts["errors"] = int(is_error(log.status))
    counts["rate_limited"] = int(is_rate_limited(log.status))
    counts["prompt_tokens"] = log.prompt_tokens
    counts["completion_tokens"] = log.completion_tokens
    counts["cached_tokens"] = log.cached_tokens
    counts["reasoning_tokens"] = log.reasoning_tokens
    counts["cost_nanousd"] = log.cost_nanousd
    counts["latency_ms_sum"] = log.total_ms
    if log.ttft_ms is not None:
        counts["ttft_ms_sum"] = log.ttft_ms
        counts["ttft_count"] = 1
    counts[latency_bucket(log.total_ms)] = 1
    return counts


def grain_of(log: RequestLog) -> tuple:
    return (log.organization_id, hour_of(log.received_at), log.model, log.provider, log.key_id)


def aggregate(logs: Iterable[RequestLog]) -> dict[tuple, dict[str, Any]]:
    rows: dict[tuple, dict[str, Any]] = {}
    for log in logs:
        grain = grain_of(log)
        increments = log_increments(log)
        row = rows.get(grain)
        if row is None:
            rows[grain] = increments
        else:
            for name, value in increments.items():
                row[name] += value
    return rows


def rollups_add(*, logs: Iterable[RequestLog]) -> int:
    """Add the logs to their hourly rollup rows. Call inside the transaction that wrote them."""
    rows = aggregate(logs)
    if not rows:
        return 0
    meta = UsageRollup._meta
    fields = [meta.get_field(name) for name in (*GRAIN, *COUNTERS)]
    table = connection.ops.quote_name(meta.db_table)
    columns = [connection.ops.quote_name(f.column) for f in fields]
    conflict = ", ".join(connection.ops.quote_name(meta.get_field(n).column) for n in GRAIN)
    updates = ", ".join(f"{col} = {table}.{col} + excluded.{col}" for col in columns[len(GRAIN) :])
    placeholder = "(" + ", ".join(["%s"] * len(fields)) + ")"
    items = list(rows.items())
    with connection.cursor() as cursor:
        for start in range(0, len(items), _ROWS_PER_STATEMENT):
            chunk = items[start : start + _ROWS_PER_STATEMENT]
            params: list[Any] = []
            for (org_id, hour, model, provider, key_id), counts in chunk:
                values = [org_id, hour, model, provider, key_id or NO_KEY]
                values.extend(counts[name] for name in COUNTERS)
                params.extend(
                    field.get_db_prep_value(value, connection, prepared=False)
                    for field, value in zip(fields, values, strict=True)
                )
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 (names from _meta)
                f"VALUES {', '.join([placeholder] * len(chunk))} "
                f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}",
                params,
            )
    return len(rows)
