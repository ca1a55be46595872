"""The per-process layer of the project's two-level caches (API keys, routing policies,
billing snapshots): entries live for a short TTL in this process's memory, in front of the
shared Django cache, so a warm hot path does no I/O at all."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from redis.exceptions import RedisError

from config.cooldown import Cooldown

logger = logging.getLogger(__name__)

# What a shared cache that is down or hung raises (redis-py; OSError for a socket it missed).
_ERRORS = (RedisError, OSError)


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
            return default  # kept, for `stale`: overwritten by the next put
        return value

    def stale(self, key: str, default: Any = None) -> Any:
        """The last value put, however old: for when its source of truth can't be reached."""
        hit = self._data.get(key)
        return default if hit is None else hit[1]

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

    It is also where a failing shared cache stops: every caller keeps a source of truth behind
    it (the database), so a Redis error on a read is a miss and a failed fill is skipped, and
    after one the cache is left alone for a short cooldown (config.cooldown) rather than
    costing each request a timeout. A change that could not be written (`set`, `delete`) is
    remembered, and its key deleted once Redis answers again, so nobody reads the old value
    back after the outage.
    """

    _instance: BaseCache | None = None
    _lock = threading.Lock()
    _MAX_UNSYNCED = 10_000

    def __init__(self) -> None:
        self.cooldown = Cooldown()
        self._unsynced: set[str] = set()
        self._unsynced_overflow = False

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

    # -- failures ----------------------------------------------------------------------------

    def _failed(self, operation: str, key: str | None, *, write: bool) -> None:
        if not self.cooldown.active:
            logger.warning("shared cache unavailable (%s); using the database", operation)
        self.cooldown.trip()
        if write and key is not None:
            with self._lock:
                if len(self._unsynced) < self._MAX_UNSYNCED:
                    self._unsynced.add(key)
                else:
                    self._unsynced_overflow = True

    def _take_unsynced(self) -> tuple[list[str], bool]:
        with self._lock:
            keys, overflow = list(self._unsynced), self._unsynced_overflow
            self._unsynced.clear()
            self._unsynced_overflow = False
        return keys, overflow

    def _resync(self) -> None:
        keys, overflow = self._take_unsynced()
        if overflow:
            logger.warning("more changes than remembered were lost while Redis was down")
        if keys:
            try:
                self._get().delete_many(keys)
            except _ERRORS:
                self._failed("delete_many", None, write=False)
                with self._lock:
                    self._unsynced.update(keys)

    async def _aresync(self) -> None:
        keys, overflow = self._take_unsynced()
        if overflow:
            logger.warning("more changes than remembered were lost while Redis was down")
        if keys:
            try:
                await self._get().adelete_many(keys)
            except _ERRORS:
                self._failed("delete_many", None, write=False)
                with self._lock:
                    self._unsynced.update(keys)

    # -- the operations the hot path uses ----------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        if self.cooldown.active:
            return default
        try:
            value = self._get().get(key, default)
        except _ERRORS:
            self._failed("get", key, write=False)
            return default
        if self._unsynced:
            self._resync()
        return value

    async def aget(self, key: str, default: Any = None) -> Any:
        if self.cooldown.active:
            return default
        try:
            value = await self._get().aget(key, default)
        except _ERRORS:
            self._failed("get", key, write=False)
            return default
        if self._unsynced:
            await self._aresync()
        return value

    def add(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT) -> bool:
        if self.cooldown.active:
            return False
        try:
            return self._get().add(key, value, timeout)
        except _ERRORS:
            self._failed("add", key, write=False)
            return False

    async def aadd(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT) -> bool:
        if self.cooldown.active:
            return False
        try:
            return await self._get().aadd(key, value, timeout)
        except _ERRORS:
            self._failed("add", key, write=False)
            return False

    def set(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT) -> None:
        if self.cooldown.active:
            self._failed("set", key, write=True)
            return
        try:
            self._get().set(key, value, timeout)
        except _ERRORS:
            self._failed("set", key, write=True)

    async def aset(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT) -> None:
        if self.cooldown.active:
            self._failed("set", key, write=True)
            return
        try:
            await self._get().aset(key, value, timeout)
        except _ERRORS:
            self._failed("set", key, write=True)

    def delete(self, key: str) -> bool:
        if self.cooldown.active:
            self._failed("delete", key, write=True)
            return False
        try:
            return self._get().delete(key)
        except _ERRORS:
            self._failed("delete", key, write=True)
            return False

    async def adelete(self, key: str) -> bool:
        if self.cooldown.active:
            self._failed("delete", key, write=True)
            return False
        try:
            return await self._get().adelete(key)
        except _ERRORS:
            self._failed("delete", key, write=True)
            return False


process_cache = _ProcessCache()
