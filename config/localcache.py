"""The per-process layer of the project's two-level caches (API keys, routing policies,
billing snapshots): entries live for a short TTL in this process's memory, in front of the
shared Django cache, so a warm hot path does no I/O at all."""

from __future__ import annotations

import time
from typing import Any


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
