"""Connection housekeeping for database calls made from the async API path.

The /v1 handler sends no request_started/finished signals (see routing/asgi.py), whose receiver
would drop broken or over-age connections; callers on that path do it here instead. Connections
inside an atomic block (a test's transaction, say) are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.db import connections


def tidy_connections() -> None:
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def _fresh[T](fn: Callable[[], T]) -> T:
    tidy_connections()
    return fn()


async def run_db[T](fn: Callable[[], T]) -> T:
    """Run `fn` (which queries) in the ORM's thread, on a healthy connection."""
    return await sync_to_async(_fresh)(fn)


# Threads for slow database work of one request (a big file, a batch's items), so it never
# holds the ORM thread that every other /v1 query waits for. Bounded: each holds a connection.
_apart = ThreadPoolExecutor(max_workers=4, thread_name_prefix="db-apart")


def _closing[T](fn: Callable[[], T]) -> T:
    try:
        return fn()
    finally:
        connections.close_all()  # this thread's own connection, never kept


async def run_db_apart[T](fn: Callable[[], T]) -> T:
    """Run `fn` (slow, and querying) on a thread and a database connection of its own, closed
    afterwards: other requests' `run_db` calls go on meanwhile. `fn` sees only committed data
    (a fresh connection), and is atomic on its own if it needs to be."""
    return await sync_to_async(_closing, thread_sensitive=False, executor=_apart)(fn)
