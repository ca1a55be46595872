"""This process's usage outbox: settled generations on their way to PostgreSQL.

Settlement appends the generation's usage record here (a deque append, no I/O) and a
background thread writes what gathered a few milliseconds later, in one statement however many
requests settled meanwhile (group commit):

- with Redis (several processes), as one row of billing's outbox table (UsageOutboxBatch): a
  single small insert per batch, so the web process spends next to nothing on it; the flush
  (Celery beat, billing.holds.usage_flush) moves those rows into ledger entries, and the spend
  counters' seed counts rows not moved yet;
- in the embedded default (one process, no worker that sees it), straight into the ledger.

Either way the usage is in PostgreSQL before Redis could lose it. The ledger write is
idempotent on the generation id, so the same record arriving twice (from here and from the
Redis queue, or a batch replayed after a failure) changes nothing. Written out at shutdown
(atexit, the ASGI lifespan); what a crashed process held for those milliseconds is still in the
Redis queue (billing.holds.redis_store) and in the request log, from which the reconciliation
(billing.services.reconcile) bills it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import close_old_connections

if TYPE_CHECKING:
    from billing.holds.store import UsageRecord

logger = logging.getLogger(__name__)

# After a failed write (the database is down), wait this long before trying again.
RETRY_SECONDS = 1.0


class UsageOutbox:
    def __init__(self, *, auto_flush: bool = True, to_ledger: bool = False) -> None:
        self._lock = threading.Lock()
        self._to_ledger = to_ledger
        self._queue: deque[UsageRecord] = deque()
        self._batches: dict[str, list[UsageRecord]] = {}
        self._auto_flush = auto_flush
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the request path --------------------------------------------------------------------

    def append(self, record: UsageRecord) -> None:
        with self._lock:
            self._queue.append(record)
        if self._auto_flush and settings.BILLING_USAGE_FLUSH_SECONDS > 0:
            if not self._wake.is_set():
                self._wake.set()
            if self._thread is None or not self._thread.is_alive():
                self._start()

    # -- the background writer ---------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="billing-usage-outbox", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            # Let a batch gather: one write for every request that settles meanwhile.
            time.sleep(max(settings.BILLING_USAGE_FLUSH_SECONDS, 0.0))
            self._wake.clear()
            try:
                _, failed = self.flush()
            except Exception:
                logger.exception("usage outbox flush failed")
                failed = True
            finally:
                close_old_connections()
            if failed:
                time.sleep(RETRY_SECONDS)
                self._wake.set()

    def flush(self) -> tuple[set[str], bool]:
        """Write everything queued now. Returns the references handled and whether some could
        not be written (they stay queued)."""
        from billing.services.ledger import usage_entries_write, usage_outbox_write

        handled: set[str] = set()
        while True:
            batch, records = self.take(limit=settings.BILLING_USAGE_FLUSH_BATCH)
            if batch is None:
                return handled, False
            if self._to_ledger:
                failed = usage_entries_write(records=records)
            else:
                try:
                    usage_outbox_write(records=records)
                except Exception:
                    logger.exception("could not write %d usage records", len(records))
                    failed = records
                else:
                    failed = []
            self.done(batch, requeue=failed)
            not_written = {record.reference for record in failed}
            handled.update(r.reference for r in records if r.reference not in not_written)
            if failed:
                return handled, True

    # -- batches (the in-process hold store's usage queue is this outbox) -------------------

    def take(self, *, limit: int) -> tuple[str | None, list[UsageRecord]]:
        with self._lock:
            records = []
            while self._queue and len(records) < limit:
                records.append(self._queue.popleft())
            if not records:
                return None, []
            batch = uuid.uuid4().hex
            self._batches[batch] = records
            return batch, records

    def done(self, batch: str, *, requeue: Sequence[UsageRecord] = ()) -> None:
        with self._lock:
            self._batches.pop(batch, None)
            self._queue.extendleft(reversed(list(requeue)))

    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + sum(len(b) for b in self._batches.values())

    def pending_records(self) -> list[UsageRecord]:
        """What this process settled and the ledger may not have yet (being written
        included): the spend counters' seed adds it."""
        with self._lock:
            return [*self._queue, *(r for batch in self._batches.values() for r in batch)]
