"""The durable queue between the request path's buffer and the batch writer.

A PostgreSQL table (SQLite in the embedded default), with or without Redis: one row per pushed
batch, deleted in the same transaction that writes the logs, so a worker killed mid-batch
loses nothing. Not a Redis stream: the request log is the durable record of what was served
(the billing reconciliation bills from it), and a Redis restart without persistence, or a
failover, would lose what it held. One small insert per process every
OBSERVABILITY_BUFFER_FLUSH_SECONDS is all it costs the database. A batch can be delivered
twice; the writer makes that harmless (generation ids are unique).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

from django.db import connection, transaction
from django.utils import timezone

from observability.models import LogQueueItem
from observability.writer.records import decode

logger = logging.getLogger(__name__)

Handler = Callable[[list[dict[str, Any]]], Any]


class LogQueue(Protocol):
    name: str

    def push(self, payloads: list[bytes]) -> None: ...

    def process(self, handler: Handler, *, limit: int, min_age: float = 0.0) -> int:
        """Hand up to `limit` queued records to `handler` inside a transaction and remove
        them once it commits. Returns how many were handled (0: nothing to do)."""
        ...

    def pending(self) -> int: ...


class DatabaseLogQueue:
    name = "database"
    _ROWS_PER_BATCH = 50  # each row holds one pushed batch (up to a few hundred events)

    def push(self, payloads: list[bytes]) -> None:
        if payloads:
            LogQueueItem.objects.create(payload=b"[" + b",".join(payloads) + b"]")

    def process(self, handler: Handler, *, limit: int, min_age: float = 0.0) -> int:
        with transaction.atomic():
            rows = LogQueueItem.objects.order_by("id")
            if min_age:
                rows = rows.filter(created_at__lte=timezone.now() - timedelta(seconds=min_age))
            if connection.features.has_select_for_update_skip_locked:
                rows = rows.select_for_update(skip_locked=True)
            records: list[dict[str, Any]] = []
            taken: list[int] = []
            for item in rows[: self._ROWS_PER_BATCH]:
                taken.append(item.id)
                try:
                    records.extend(decode(item.payload))
                except ValueError:  # can never be written: drop it rather than block the queue
                    logger.error("dropping an unreadable log batch %s", item.id)
                if len(records) >= limit:
                    break
            if not taken:
                return 0
            handler(records)
            LogQueueItem.objects.filter(id__in=taken).delete()
        return len(records) or len(taken)

    def pending(self) -> int:
        return LogQueueItem.objects.count()


_queue = DatabaseLogQueue()


def get_log_queue() -> LogQueue:
    return _queue
