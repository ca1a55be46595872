"""The request path's side of the log writer.

The events sink (called synchronously inside the event loop when a generation ends) only
encodes the event and appends it to this process's buffer: no I/O. A background thread moves
the buffer to the durable queue (observability.writer.queue) every
OBSERVABILITY_BUFFER_FLUSH_SECONDS (~200 ms), so an answered request sits in memory at most that
long; the buffer is also pushed at shutdown (atexit and the ASGI lifespan hook). The queue is a
database table, also with Redis: a Redis restart must not lose what was served. After a push,
either this process writes the queue into log rows itself (the embedded default: its channel
layer lives in this process, so the live dashboard has to be fed from here), or it asks a
Celery worker to (OBSERVABILITY_WRITE_IN_PROCESS off, the Redis setup).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque

from django.conf import settings
from django.db import close_old_connections

from observability import live
from observability.writer.queue import get_log_queue
from observability.writer.records import encode
from routing.events import GenerationEvent

logger = logging.getLogger(__name__)

# Who keeps bodies is read again this often (also while no traffic wakes the thread).
BODY_ORGS_REFRESH_SECONDS = 30.0


class LogBuffer:
    def __init__(self) -> None:
        self._items: deque[bytes] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._push_lock = threading.Lock()
        self._cycle_lock = threading.RLock()  # tests may hold it around a teardown
        # The server's event loop, where the live consumers of the embedded default live.
        self.loop: asyncio.AbstractEventLoop | None = None
        self._body_orgs: dict[str, int] = {}
        self._body_orgs_at = 0.0

    # -- the request path --------------------------------------------------------------------

    def sink(self, event: GenerationEvent) -> None:
        self._items.append(encode(event, body_limit=self._body_orgs.get(event.organization_id, 0)))
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            pass
        self._wake.set()
        if self._thread is None or not self._thread.is_alive():
            self._start()

    def __len__(self) -> int:
        return len(self._items)

    def keeps_bodies(self, organization_id: str) -> bool:
        """The gateway's question (routing.events.keeps_bodies): a dict lookup, no I/O. The
        answer follows the organization's log settings within BODY_ORGS_REFRESH_SECONDS."""
        if self._thread is None:
            self._start()  # its first cycle reads the settings
        return organization_id in self._body_orgs

    # -- the background thread ---------------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="observability-log-buffer", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        self._safely(self.refresh_body_orgs)
        while True:
            if not self._wake.wait(timeout=BODY_ORGS_REFRESH_SECONDS):
                self._safely(self.refresh_body_orgs)
                continue
            time.sleep(settings.OBSERVABILITY_BUFFER_FLUSH_SECONDS)  # let a batch gather
            self._wake.clear()
            try:
                with self._cycle_lock:
                    self._cycle()
            except Exception:  # the records stay buffered or queued: try again shortly
                logger.exception("request log flush failed")
                time.sleep(1.0)
                self._wake.set()
            finally:
                close_old_connections()

    def _safely(self, action) -> None:
        try:
            with self._cycle_lock:
                action()
        except Exception:
            logger.warning("could not read which organizations keep bodies", exc_info=True)
        finally:
            close_old_connections()

    @contextlib.contextmanager
    def paused(self):
        """Hold the background thread off (for tests that drive the writer themselves)."""
        with self._cycle_lock:
            yield

    def discard(self) -> int:
        """Drop what is buffered (a test whose database is gone). Returns how many."""
        with self._push_lock:
            dropped = len(self._items)
            self._items.clear()
        return dropped

    def _cycle(self) -> None:
        live.use_loop(self.loop)
        if self.push():
            self.after_push()
        if time.monotonic() - self._body_orgs_at >= BODY_ORGS_REFRESH_SECONDS:
            self._safely(self.refresh_body_orgs)  # a failure here is not a failed flush

    def after_push(self) -> None:
        from observability.services import request_logs_flush

        if settings.OBSERVABILITY_WRITE_IN_PROCESS:
            request_logs_flush()
        else:
            from observability.tasks import flush_request_logs
            from outbox.services import task_send

            # The records are queued: if the broker is down, beat's run writes them.
            task_send(task=flush_request_logs, keep=False)

    def push(self) -> int:
        """Move everything buffered to the durable queue. Returns how many records moved."""
        moved = 0
        with self._push_lock:
            batch_size = settings.OBSERVABILITY_FLUSH_BATCH
            while self._items:
                batch = []
                while self._items and len(batch) < batch_size:
                    batch.append(self._items.popleft())
                try:
                    get_log_queue().push(batch)
                except Exception:
                    self._items.extendleft(reversed(batch))
                    raise
                moved += len(batch)
        return moved

    def refresh_body_orgs(self) -> None:
        """Read which organizations keep bodies, and their caps (the background thread does
        this every BODY_ORGS_REFRESH_SECONDS)."""
        from observability.selectors import log_settings_body_orgs

        self._body_orgs_at = time.monotonic()  # a failed read is tried again next period
        self._body_orgs = log_settings_body_orgs()

    # -- shutdown ----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Push what is buffered (and write it, in the embedded default) before the process
        ends. Never raises: at exit the database may already be gone."""
        if not self._items:
            return
        started = time.monotonic()
        try:
            count = self.push()
            if settings.OBSERVABILITY_WRITE_IN_PROCESS:
                from observability.services import request_logs_flush

                live.use_loop(None)
                request_logs_flush()
            logger.info(
                "pushed %d buffered request logs at shutdown in %.3f s",
                count,
                time.monotonic() - started,
            )
        except Exception:
            logger.warning("could not push buffered request logs at shutdown", exc_info=True)
        finally:
            close_old_connections()


log_buffer = LogBuffer()
