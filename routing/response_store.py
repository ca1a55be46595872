"""Stored responses are written behind the answer, in batches: a response with `store` costs
its request no database round trip, and under load one INSERT carries many responses.

A read of a response this process answered a moment ago (GET, DELETE, input_items,
`previous_response_id`) first waits for its write. Another process may not see it for the
few milliseconds the write takes. A write that fails is logged, never the request's failure:
the answer is already served and billed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from functools import partial
from typing import Any

from config.db import run_db
from routing import services

logger = logging.getLogger(__name__)

# How long a read waits for a write of this process still in flight.
WAIT_SECONDS = 5.0


class ResponseWriter:
    def __init__(self) -> None:
        self._queue: list[dict[str, Any]] = []
        self._pending: dict[str, asyncio.Future] = {}
        self._task: asyncio.Task | None = None

    def add(self, row: dict[str, Any]) -> None:
        """Queue one response (services.stored_responses_create's row) for writing."""
        self._pending[row["response_id"]] = asyncio.get_running_loop().create_future()
        self._queue.append(row)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        await asyncio.sleep(0)  # answers finishing in this turn of the loop join the batch
        while self._queue:
            rows, self._queue = self._queue, []
            try:
                await run_db(partial(services.stored_responses_create, rows=rows))
            except Exception:
                logger.exception("could not store %d responses", len(rows))
            finally:
                for row in rows:
                    done = self._pending.pop(row["response_id"], None)
                    if done is not None and not done.done():
                        done.set_result(None)

    async def written(self, response_id: str) -> None:
        """Returns once this process's write of `response_id` (if any) is over."""
        pending = self._pending.get(response_id)
        if pending is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pending), WAIT_SECONDS)

    def drain(self, timeout: float = WAIT_SECONDS) -> bool:
        """From another thread (tests, shutdown): wait until nothing is queued or in flight."""
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._pending


response_writer = ResponseWriter()
