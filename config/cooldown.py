"""A dependency that keeps failing is left alone for a moment.

After a few failures in a row (no success in between) the callers skip Redis, or a database
that can't be reached, for a short cooldown instead of each paying a connect or socket timeout
of its own: with Redis hung, the first requests wait for their timeouts and the others go
straight to their fallback (the database, or a 503). One timeout among successes (a busy
moment) trips nothing. The first call after the cooldown tries again (one failure then starts
another cooldown), so everything comes back by itself once the dependency does.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings

# Failures in a row, with no success between them, that start a cooldown.
REDIS_FAILURES_IN_A_ROW = 3


class Cooldown:
    def __init__(
        self,
        seconds: float | None = None,
        *,
        setting: str = "REDIS_COOLDOWN_SECONDS",
        threshold: int = 1,
    ) -> None:
        self._seconds = seconds
        self._setting = setting
        self._threshold = threshold
        self._failures = 0
        self._until = 0.0

    @property
    def seconds(self) -> float:
        if self._seconds is not None:
            return self._seconds
        return getattr(settings, self._setting)

    @property
    def active(self) -> bool:
        """True while the dependency should not be asked."""
        return self._until > time.monotonic()

    def trip(self) -> None:
        """It failed: after enough failures in a row, skip it for the cooldown."""
        self._failures += 1
        if self._failures >= self._threshold:
            self._until = time.monotonic() + self.seconds

    def ok(self) -> None:
        """It answered."""
        if self._failures:
            self._failures = 0

    def reset(self) -> None:
        self._failures = 0
        self._until = 0.0


_redis: dict[str, Cooldown] = {}
_lock = threading.Lock()


def for_redis(url: str) -> Cooldown:
    """One cooldown per Redis server, shared by its users in this process (the cache, the
    rate limiter, the spend holds): what one of them learned spares the others a timeout."""
    cooldown = _redis.get(url)
    if cooldown is None:
        with _lock:
            cooldown = _redis.setdefault(url, Cooldown(threshold=REDIS_FAILURES_IN_A_ROW))
    return cooldown
