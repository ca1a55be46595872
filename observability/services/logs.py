"""The batch writer: queued generation records -> request logs, attempts and rollups.

Runs in a Celery worker (observability.tasks.flush_request_logs) or, in the embedded default,
in a thread of the server process. One batch is one transaction: log rows, attempt rows and
rollup increments land together or not at all, and the live dashboard hears about them only
after the commit. Replaying a batch changes nothing: generation ids already written are
skipped, so their rollups are not counted twice.
"""

from __future__ import annotations

import logging
import re
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from accounts.models import Organization
from observability.health import health_add
from observability.models import (
    OrganizationLogSettings,
    RequestAttempt,
    RequestLog,
    RequestStatus,
)
from observability.services.rollups import rollups_add

logger = logging.getLogger(__name__)

GENERATION_ID = re.compile(r"^gen-[0-9a-f]{32}$")
# One writer at a time on PostgreSQL (SQLite's IMMEDIATE transactions already serialize):
# makes "already written?" exact under concurrent flushes, without relying on conflicts.
_WRITER_LOCK = zlib.crc32(b"observability.request_logs_write")


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _ms(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def _winner(attempts: list[dict[str, Any]]) -> dict[str, Any] | None:
    for attempt in reversed(attempts):
        if attempt.get("outcome") == "ok":
            return attempt
    return attempts[-1] if attempts else None


def _timings(record: dict[str, Any]) -> dict[str, float | None]:
    received = float(record["received_at"])
    total_ms = max((float(record["finished_at"]) - received) * 1000, 0.0)
    attempts = record.get("attempts") or []
    first_start = attempts[0].get("started_at") if attempts else None
    gateway_ms = max((float(first_start) - received) * 1000, 0.0) if first_start else None
    winner = _winner(attempts)
    ttft_ms = generation_ms = None
    if winner is not None and winner.get("outcome") == "ok":
        duration = float(winner.get("duration_ms") or 0)
        ttft_ms = winner.get("ttft_ms")
        if ttft_ms is None and not record.get("streamed"):
            ttft_ms = duration  # a whole answer arrives at once
        if record.get("streamed") and ttft_ms is not None:
            if winner.get("started_at"):
                offset = (float(winner["started_at"]) - received) * 1000
            else:  # before the gateway reported start times: the attempts ran one by one
                offset = (gateway_ms or 0) + sum(
                    float(a.get("duration_ms") or 0) for a in attempts if a is not winner
                )
            generation_ms = total_ms - offset - float(ttft_ms)
        else:
            generation_ms = duration
    completion = int(record.get("completion_tokens") or 0)
    tps = None
    if completion and generation_ms and generation_ms > 1:
        tps = round(completion / (generation_ms / 1000), 2)
    return {
        "total_ms": round(total_ms, 3),
        "gateway_ms": _ms(gateway_ms),
        "ttft_ms": _ms(ttft_ms),
        "tokens_per_second": tps,
    }


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _status(error: str | None) -> str:
    return RequestStatus.OK if not error else str(error)[:40]


def _build_log(record: dict[str, Any], body_limit: int) -> RequestLog:
    error = record.get("error")
    timings = _timings(record)
    log = RequestLog(
        generation_id=record["generation_id"],
        organization_id=_uuid(record["organization_id"]),
        key_id=_uuid(record.get("key_id")),
        requested_model=str(record.get("requested_model") or record.get("model") or "")[:120],
        model=str(record.get("model") or "")[:120],
        provider=str(record.get("provider") or "")[:64],
        endpoint_id=record.get("endpoint_id") or None,
        status=_status(error),
        error_kind="" if not error else str(error)[:40],
        streamed=bool(record.get("streamed")),
        prompt_tokens=max(int(record.get("prompt_tokens") or 0), 0),
        completion_tokens=max(int(record.get("completion_tokens") or 0), 0),
        cached_tokens=max(int(record.get("cached_tokens") or 0), 0),
        reasoning_tokens=max(int(record.get("reasoning_tokens") or 0), 0),
        cost_nanousd=int(record.get("cost_nanousd") or 0),
        received_at=_at(record["received_at"]),
        finished_at=_at(record["finished_at"]),
        attempt_count=len(record.get("attempts") or ()) or 1,
        **timings,
    )
    if body_limit:
        for name in ("prompt_body", "response_body"):
            body = record.get(name)
            if body is not None:
                setattr(log, name, body.encode()[:body_limit].decode(errors="ignore"))
    return log


def _build_attempts(log: RequestLog, record: dict[str, Any]) -> list[RequestAttempt]:
    received = float(record["received_at"])
    rows = []
    for index, attempt in enumerate(record.get("attempts") or ()):
        started = attempt.get("started_at")
        rows.append(
            RequestAttempt(
                log=log,
                index=index,
                provider=str(attempt.get("provider") or "")[:64],
                model=str(attempt.get("model") or "")[:120],
                outcome=str(attempt.get("outcome") or "")[:40],
                http_status=attempt.get("status") or None,
                message=str(attempt.get("message") or "")[:300],
                offset_ms=_ms(max((float(started) - received) * 1000, 0.0)) if started else None,
                duration_ms=float(attempt.get("duration_ms") or 0),
                ttft_ms=_ms(attempt.get("ttft_ms")),
                hedged=bool(attempt.get("hedged")),
            )
        )
    return rows


def _valid(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("generation_id"), str)
        and GENERATION_ID.match(record["generation_id"]) is not None
        and _uuid(record.get("organization_id")) is not None
        and record.get("received_at") is not None
        and record.get("finished_at") is not None
    )


@transaction.atomic
def request_logs_write(*, records: list[dict[str, Any]]) -> list[RequestLog]:
    """Write one batch of queued records. Returns the log rows it created (records already
    written, of unknown organizations, or unreadable are skipped)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_WRITER_LOCK])
    by_id: dict[str, dict[str, Any]] = {}
    for record in records:
        if _valid(record):
            by_id.setdefault(record["generation_id"], record)
        else:
            logger.error("skipping an unreadable generation record: %.200r", record)
    if not by_id:
        return []
    written = set(
        RequestLog.objects.filter(generation_id__in=list(by_id)).values_list(
            "generation_id", flat=True
        )
    )
    fresh = [record for gid, record in by_id.items() if gid not in written]
    if not fresh:
        return []
    org_ids = {str(record["organization_id"]) for record in fresh}
    # An organization deleted since the request was answered takes its logs with it.
    known = {
        str(pk) for pk in Organization.objects.filter(id__in=org_ids).values_list("id", flat=True)
    }
    fresh = [record for record in fresh if str(record["organization_id"]) in known]
    if not fresh:
        return []
    limits: dict[str, int] = {}
    if any(record.get("prompt_body") or record.get("response_body") for record in fresh):
        limits = {
            str(row.organization_id): row.max_body_bytes
            for row in OrganizationLogSettings.objects.filter(
                organization_id__in=known, store_bodies=True
            )
        }
    logs = [_build_log(r, limits.get(str(r["organization_id"]), 0)) for r in fresh]
    RequestLog.objects.bulk_create(logs)
    if any(log.pk is None for log in logs):  # a backend that can't return ids from a bulk insert
        ids = dict(
            RequestLog.objects.filter(
                generation_id__in=[log.generation_id for log in logs]
            ).values_list("generation_id", "id")
        )
        for log in logs:
            log.pk = ids[log.generation_id]
    attempts = [
        attempt
        for log, record in zip(logs, fresh, strict=True)
        for attempt in _build_attempts(log, record)
    ]
    RequestAttempt.objects.bulk_create(attempts, batch_size=500)
    rollups_add(logs=logs)
    health_add(logs=logs, attempts=attempts)
    if settings.OBSERVABILITY_LIVE_UPDATES:
        from observability import live

        transaction.on_commit(lambda: live.publish(logs=logs))
    return logs
