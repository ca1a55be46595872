"""Connection housekeeping for database calls made from the async API path.

The /v1 handler sends no request_started/finished signals (see routing/asgi.py), whose receiver
would drop broken or over-age connections; callers on that path do it here instead. Connections
inside an atomic block (a test's transaction, say) are left alone.
"""

from __future__ import annotations

from collections.abc import Callable

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
