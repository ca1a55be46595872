"""Connection housekeeping for database calls made from the async API path.

The /v1 handler sends no request_started/finished signals (see routing/asgi.py), whose receiver
would drop broken or over-age connections; callers on that path do it here instead. Connections
inside an atomic block (a test's transaction, say) are left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, connections

from config.cooldown import Cooldown

logger = logging.getLogger(__name__)

try:
    from psycopg import OperationalError as _PsycopgOperationalError
    from psycopg_pool import PoolTimeout
except ImportError:  # pragma: no cover - psycopg is a dependency; SQLite doesn't need it
    _PsycopgOperationalError = PoolTimeout = None

# After the database could not be reached, the request path doesn't ask it again for a moment:
# one request waits for the pool's timeout, the others get their 503 at once.
unreachable = Cooldown(setting="DATABASE_COOLDOWN_SECONDS")


def _is_unreachable(exc: Exception) -> bool:
    """A connection that could not be had (refused, timed out, the pool's wait ran out),
    as opposed to one query's error (a lock timeout, a deadlock), which says nothing of the
    next one."""
    if isinstance(exc, InterfaceError):
        return True
    cause = exc.__cause__
    if PoolTimeout is not None and isinstance(cause, PoolTimeout):
        return True
    return _PsycopgOperationalError is not None and type(cause) is _PsycopgOperationalError


def tidy_connections() -> None:
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def _fresh[T](fn: Callable[[], T]) -> T:
    tidy_connections()
    return fn()


async def run_db[T](fn: Callable[[], T]) -> T:
    """Run `fn` (which queries) in the ORM's thread, on a healthy connection. Raises
    OperationalError at once while the database is known to be unreachable."""
    if unreachable.active:
        raise OperationalError("the database could not be reached a moment ago")
    try:
        return await sync_to_async(_fresh)(fn)
    except (OperationalError, InterfaceError) as exc:
        if _is_unreachable(exc):
            if not unreachable.active:
                logger.warning("database unreachable: %s", exc)
            unreachable.trip()
        raise


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
