"""The per-process layer of the project's two-level caches (API keys, routing policies,
billing snapshots): entries live for a short TTL in this process's memory, in front of the
shared Django cache, so a warm hot path does no I/O at all."""

from __future__ import annotations

import threading
import time
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, caches


class LocalTTLCache:
    def __init__(self, max_entries: int = 50_000) -> None:
        self._data: dict[str, tuple[float, Any]] = {}
        self._max_entries = max_entries

    def get(self, key: str, default: Any = None) -> Any:
        hit = self._data.get(key)
        if hit is None:
            return default
        expires, value = hit
        if expires < time.monotonic():
            self._data.pop(key, None)
            return default
        return value

    def put(self, key: str, value: Any, ttl: float) -> None:
        if len(self._data) > self._max_entries:  # bound memory against a flood of new keys
            self._data.clear()
        self._data[key] = (time.monotonic() + ttl, value)

    def pop(self, key: str) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def __contains__(self, key: str) -> bool:
        return key in self._data


class _ProcessCache:
    """The default Django cache as one object per process, for the hot path's shared reads.

    `django.core.cache.cache` is context-local: under ASGI each request's context gets a cache
    object of its own, which with the Redis backend means a new client, connection pool and
    connection for the first shared read of every request that misses its local copy.
    Through this object the process keeps one client (thread-safe) and its pooled connections.
    """

    _instance: BaseCache | None = None
    _lock = threading.Lock()

    def _get(self) -> BaseCache:
        instance = self._instance
        if instance is None:
            with self._lock:
                instance = type(self)._instance
                if instance is None:
                    instance = type(self)._instance = caches.create_connection(DEFAULT_CACHE_ALIAS)
        return instance

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


process_cache = _ProcessCache()
