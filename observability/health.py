"""Endpoint health from real traffic, counted per upstream attempt (a fallback's failed first
attempt counts against its endpoint).

- Uptime over 5 minutes, 30 minutes, 1 day and 30 days: successes / (successes + errors).
  Rate-limit answers count in neither; nor do attempts cancelled (a hedge that lost, a caller
  who left) or refused for the caller's own request (bad request, context too long, filtered).
- Time to first token p50/p90/p95/p99 and throughput p50 over the last day, from fixed
  histograms (models.TTFT_BOUNDS_MS, TPS_BOUNDS): a percentile is the upper bound of the
  bucket it falls in.

Minute rows are kept up to date by the log writer in the same transaction as the logs.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q, Sum
from django.utils import timezone

from observability.models import (
    TPS_BOUNDS,
    TTFT_BOUNDS_MS,
    EndpointHealthMinute,
    RequestAttempt,
    RequestLog,
)

WINDOWS = {"5m": timedelta(minutes=5), "30m": timedelta(minutes=30), "1d": timedelta(days=1)}
WINDOWS["30d"] = timedelta(days=30)
NOT_COUNTED = {"cancelled", "bad_request", "context_length_exceeded", "content_filtered"}
RATE_LIMITED = {"rate_limited", "upstream_rate_limited"}


def _bucket(bounds: tuple, value: float) -> int:
    return bisect.bisect_left(bounds, value)


def _empty(bounds: tuple) -> list[int]:
    return [0] * (len(bounds) + 1)


def health_add(*, logs: list[RequestLog], attempts: list[RequestAttempt]) -> int:
    """Count the attempts of freshly written logs into their endpoints' minute rows. Called
    inside the writer's transaction (one writer at a time: a read-modify-write is safe)."""
    by_log = {log.pk: log for log in logs}
    rows: dict[tuple, dict[str, Any]] = {}
    for attempt in attempts:
        outcome = attempt.outcome
        if outcome in NOT_COUNTED:
            continue
        log = by_log[attempt.log_id]
        at = log.received_at + timedelta(milliseconds=attempt.offset_ms or 0)
        key = (attempt.provider, attempt.model, at.replace(second=0, microsecond=0))
        row = rows.setdefault(
            key,
            {
                "ok": 0,
                "errors": 0,
                "rate_limited": 0,
                "ttft": _empty(TTFT_BOUNDS_MS),
                "tps": _empty(TPS_BOUNDS),
            },
        )
        if outcome == "ok":
            row["ok"] += 1
            # The attempt's own first-token time, or the answer's (the winner's) when the
            # gateway reported none per attempt.
            ttft = attempt.ttft_ms if attempt.ttft_ms is not None else log.ttft_ms
            if ttft is not None:
                row["ttft"][_bucket(TTFT_BOUNDS_MS, ttft)] += 1
            if log.tokens_per_second:
                row["tps"][_bucket(TPS_BOUNDS, log.tokens_per_second)] += 1
        elif outcome in RATE_LIMITED:
            row["rate_limited"] += 1
        else:
            row["errors"] += 1
    if not rows:
        return 0
    match = Q()
    for provider, model, minute in rows:
        match |= Q(provider=provider, model=model, minute=minute)
    existing = {
        (r.provider, r.model, r.minute): r
        for r in EndpointHealthMinute.objects.select_for_update().filter(match)
    }
    new, changed = [], []
    for key, counts in rows.items():
        row = existing.get(key)
        if row is None:
            provider, model, minute = key
            new.append(
                EndpointHealthMinute(provider=provider, model=model, minute=minute, **counts)
            )
            continue
        row.ok += counts["ok"]
        row.errors += counts["errors"]
        row.rate_limited += counts["rate_limited"]
        row.ttft = [
            a + b for a, b in zip(row.ttft or _empty(TTFT_BOUNDS_MS), counts["ttft"], strict=True)
        ]
        row.tps = [a + b for a, b in zip(row.tps or _empty(TPS_BOUNDS), counts["tps"], strict=True)]
        changed.append(row)
    EndpointHealthMinute.objects.bulk_create(new)
    EndpointHealthMinute.objects.bulk_update(
        changed, ["ok", "errors", "rate_limited", "ttft", "tps"]
    )
    return len(rows)


def percentile(counts: list[int], bounds: tuple, q: float) -> float | None:
    """The upper bound of the bucket holding the q-th quantile (the last: its lower bound)."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        seen += count
        if seen >= rank and count:
            return float(bounds[i] if i < len(bounds) else bounds[-1])
    return float(bounds[-1])


def _uptime(ok: int, errors: int) -> float | None:
    if not ok + errors:
        return None
    return round(100 * ok / (ok + errors), 2)


def endpoint_health(*, now: datetime | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """{(provider, model): {"uptime": {"5m", "30m", "1d", "30d"}, "ttft_ms": {p50, p90, p95, p99},
    "throughput_p50", "requests_1d"}} for every endpoint seen in the last 30 days."""
    now = now or timezone.now()
    rows = EndpointHealthMinute.objects.filter(minute__gt=now - WINDOWS["30d"], minute__lte=now)
    sums: dict[str, Any] = {}
    for name, span in WINDOWS.items():
        since = now - span
        sums[f"ok_{name}"] = Sum("ok", filter=Q(minute__gt=since))
        sums[f"err_{name}"] = Sum("errors", filter=Q(minute__gt=since))
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows.values("provider", "model").annotate(**sums):
        out[(row["provider"], row["model"])] = {
            "uptime": {
                name: _uptime(row[f"ok_{name}"] or 0, row[f"err_{name}"] or 0) for name in WINDOWS
            },
            "requests_1d": (row["ok_1d"] or 0) + (row["err_1d"] or 0),
        }
    ttft: dict[tuple, list[int]] = defaultdict(lambda: _empty(TTFT_BOUNDS_MS))
    tps: dict[tuple, list[int]] = defaultdict(lambda: _empty(TPS_BOUNDS))
    for row in rows.filter(minute__gt=now - WINDOWS["1d"]).values_list(
        "provider", "model", "ttft", "tps"
    ):
        key = (row[0], row[1])
        ttft[key] = [
            a + b for a, b in zip(ttft[key], row[2] or _empty(TTFT_BOUNDS_MS), strict=True)
        ]
        tps[key] = [a + b for a, b in zip(tps[key], row[3] or _empty(TPS_BOUNDS), strict=True)]
    for key, figures in out.items():
        figures["ttft_ms"] = {
            name: percentile(ttft[key], TTFT_BOUNDS_MS, q)
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99))
        }
        figures["throughput_p50"] = percentile(tps[key], TPS_BOUNDS, 0.5)
    return out


def endpoint_health_share(*, now: datetime | None = None) -> int:
    """Hand the measured figures to the router (every process), keyed as it keys endpoints."""
    from routing.services import endpoint_health_publish

    figures = {
        f"{model}@{provider}": {
            "ttft_ms_p50": f["ttft_ms"]["p50"],
            # What the router sizes a stream's first-token limit from.
            "ttft_ms_p95": f["ttft_ms"]["p95"],
            "throughput_p50": f["throughput_p50"],
            "uptime_30m": f["uptime"]["30m"],
        }
        for (provider, model), f in endpoint_health(now=now).items()
    }
    endpoint_health_publish(figures=figures)
    return len(figures)
