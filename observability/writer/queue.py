"""The durable queue between the request path's buffer and the batch writer.

With REDIS_URL: a Redis stream, read through a consumer group. A batch is acknowledged (and
deleted) only after its rows are committed, so a worker killed mid-batch loses nothing: its
entries stay pending and another reader claims them once they have been idle long enough.
Without Redis (the embedded default): a database table, one row per pushed batch, deleted in
the same transaction that writes the logs. Either way a batch can be delivered twice; the
writer makes that harmless (generation ids are unique).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

import redis
from django.conf import settings
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


class RedisStreamLogQueue:
    name = "redis"
    FIELD = "e"

    def __init__(self, url: str, stream: str, group: str = "writers") -> None:
        self.url = url
        self.stream = stream
        self.group = group
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self._client: redis.Redis | None = None
        self._group_ready = False

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(
                self.url, socket_timeout=5.0, socket_connect_timeout=2.0, client_name="llmapi-obs"
            )
        return self._client

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    def push(self, payloads: list[bytes]) -> None:
        if not payloads:
            return
        pipe = self.client.pipeline(transaction=False)
        for payload in payloads:
            pipe.xadd(self.stream, {self.FIELD: payload})
        pipe.execute()

    def _take(self, limit: int) -> list[tuple[bytes, dict]]:
        self._ensure_group()
        claim_ms = int(settings.OBSERVABILITY_QUEUE_CLAIM_SECONDS * 1000)
        # Entries a reader took and never acknowledged (it died, or its batch failed).
        _, entries, *_ = self.client.xautoclaim(
            self.stream, self.group, self.consumer, claim_ms, start_id="0-0", count=limit
        )
        entries = [entry for entry in entries if entry and entry[1]]
        if entries:
            return entries
        answer = self.client.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=limit)
        return answer[0][1] if answer else []

    def process(self, handler: Handler, *, limit: int, min_age: float = 0.0) -> int:
        try:
            entries = self._take(limit)
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            self._group_ready = False  # the stream was deleted under us: start again
            entries = self._take(limit)
        if not entries:
            return 0
        ids = [entry_id for entry_id, _ in entries]
        records = []
        for entry_id, fields in entries:
            try:
                records.append(decode(fields[self.FIELD.encode()]))
            except (KeyError, ValueError):
                logger.error("dropping an unreadable log entry %s", entry_id)
        with transaction.atomic():
            handler(records)
        # After the commit: a crash before this line redelivers the batch, which is harmless.
        pipe = self.client.pipeline(transaction=False)
        pipe.xack(self.stream, self.group, *ids)
        pipe.xdel(self.stream, *ids)
        pipe.execute()
        return len(records) or len(ids)

    def pending(self) -> int:
        return int(self.client.xlen(self.stream))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


_queues: dict[tuple[str, str], LogQueue] = {}
_queues_lock = threading.Lock()


def get_log_queue() -> LogQueue:
    """Redis stream when REDIS_URL is set, else the database table."""
    url = settings.REDIS_URL
    stream = settings.OBSERVABILITY_STREAM
    key = (url, stream) if url else ("", "")
    queue = _queues.get(key)
    if queue is None:
        with _queues_lock:
            queue = _queues.get(key)
            if queue is None:
                queue = RedisStreamLogQueue(url, stream) if url else DatabaseLogQueue()
                _queues[key] = queue
    return queue


def forget_log_queue(url: str, stream: str) -> LogQueue | None:
    """Drop a cached queue (tests use a stream each); the caller closes it."""
    with _queues_lock:
        return _queues.pop((url, stream), None)
