"""A dependency that just failed is left alone for a moment.

After a Redis error the callers skip Redis for a short cooldown instead of each paying a
connect or socket timeout of its own: with Redis hung, one request in a cooldown waits for the
timeout and the others go straight to their fallback (the database, or a 503). The first call
after the cooldown tries again, so everything comes back by itself once Redis does.
"""

from __future__ import annotations

import time

from django.conf import settings


class Cooldown:
    def __init__(self, seconds: float | None = None) -> None:
        self._seconds = seconds
        self._until = 0.0

    @property
    def seconds(self) -> float:
        if self._seconds is not None:
            return self._seconds
        return settings.REDIS_COOLDOWN_SECONDS

    @property
    def active(self) -> bool:
        """True while the dependency should not be asked."""
        return self._until > time.monotonic()

    def trip(self) -> None:
        """It failed: skip it for the cooldown."""
        self._until = time.monotonic() + self.seconds

    def reset(self) -> None:
        self._until = 0.0
