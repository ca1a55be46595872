"""Rolling health of each endpoint from the traffic this process sees, and its circuit breaker.

Closed: used normally. After too many failures in the window it opens: skipped for a cooldown
(doubling each time it fails again, up to a cap). Then half-open: one request probes it; success
closes the circuit, failure opens it again. A 429 only cools the endpoint down for its
Retry-After; it doesn't count as the endpoint being broken.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from dataclasses import dataclass, field

from django.conf import settings

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(slots=True)
class Outcome:
    at: float
    ok: bool
    ttft_ms: float | None = None
    tokens_per_second: float | None = None


@dataclass(slots=True)
class EndpointHealth:
    outcomes: deque[Outcome] = field(default_factory=lambda: deque(maxlen=200))
    state: str = CLOSED
    open_until: float = 0.0
    cooldown: float = 0.0
    rate_limited_until: float = 0.0
    probing: bool = False
    consecutive_failures: int = 0
    # (p50 ttft, p50 tokens/s), recomputed only after a new outcome: the router reads it for
    # every candidate of every request.
    _medians: tuple[float | None, float | None] | None = None
    # What a slow or silent answer is measured against: streams' times to first token (ms)
    # and answers' output speeds (tokens/s), the last of each.
    first_tokens: deque[float] = field(default_factory=lambda: deque(maxlen=200))
    speeds: deque[float] = field(default_factory=lambda: deque(maxlen=200))
    # (p95 time to first token, slow-end tokens/s), recomputed after a new figure, at most
    # once a second: sorting the window on every request would cost more than the request.
    _timing: tuple[float | None, float | None] | None = None
    _timing_at: float = 0.0
    _timing_stale: bool = False

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self._medians = None

    def timing(self) -> tuple[float | None, float | None]:
        timing = self._timing
        if timing is None or self._timing_stale:
            now = time.monotonic()
            if timing is None or now - self._timing_at >= 1.0 or None in timing:
                timing = self._timing = (
                    percentile(self.first_tokens, 0.95),
                    percentile(self.speeds, 0.05),
                )
                self._timing_at = now
                self._timing_stale = False
        return timing

    def figure_added(self) -> None:
        self._timing_stale = True

    def medians(self) -> tuple[float | None, float | None]:
        if self._medians is None:
            self._medians = (self.p50_ttft_ms(), self.p50_tps())
        return self._medians

    def _window(self, now: float) -> list[Outcome]:
        horizon = now - settings.ROUTING_HEALTH_WINDOW_SECONDS
        return [o for o in self.outcomes if o.at >= horizon]

    def error_rate(self, now: float | None = None) -> float:
        window = self._window(now or time.monotonic())
        return sum(not o.ok for o in window) / len(window) if window else 0.0

    def p50_ttft_ms(self) -> float | None:
        values = [o.ttft_ms for o in self.outcomes if o.ok and o.ttft_ms is not None]
        return statistics.median(values) if values else None

    def p50_tps(self) -> float | None:
        values = [o.tokens_per_second for o in self.outcomes if o.ok and o.tokens_per_second]
        return statistics.median(values) if values else None


def percentile(values, q: float) -> float | None:
    """Nearest-rank percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


class HealthBook:
    def __init__(self) -> None:
        self._by_key: dict[str, EndpointHealth] = {}
        # Platform-wide figures measured from every process's traffic (observability
        # publishes them): what a process that has not called an endpoint yet goes by.
        self._measured: dict[str, tuple[float | None, float | None]] = {}
        self._measured_timing: dict[str, tuple[float | None, float | None]] = {}

    def set_measured(self, figures: dict[str, dict]) -> None:
        """{endpoint key: {"ttft_ms_p50", "ttft_ms_p95", "throughput_p50"}} from
        routing.services."""
        self._measured = {
            key: (f.get("ttft_ms_p50"), f.get("throughput_p50")) for key, f in figures.items()
        }
        self._measured_timing = {
            key: (f.get("ttft_ms_p95"), f.get("throughput_p50")) for key, f in figures.items()
        }

    def get(self, key: str) -> EndpointHealth:
        health = self._by_key.get(key)
        if health is None:
            health = self._by_key[key] = EndpointHealth()
        return health

    def medians(self, key: str) -> tuple[float | None, float | None]:
        """(p50 time to first token ms, p50 tokens/s) measured for an endpoint, if any."""
        health = self._by_key.get(key)
        if health is not None:
            ttft, tps = health.medians()
            if ttft is not None or tps is not None:
                return ttft, tps
        return self._measured.get(key, (None, None))

    def timing(self, key: str) -> tuple[float | None, float | None]:
        """(p95 time to first token ms, slow-end output tokens/s) measured for an endpoint:
        this process's own figures, else the platform's, else None (not measured)."""
        health = self._by_key.get(key)
        ttft = speed = None
        if health is not None:
            ttft, speed = health.timing()
        if ttft is None or speed is None:
            shared_ttft, shared_speed = self._measured_timing.get(key, (None, None))
            ttft = ttft if ttft is not None else shared_ttft
            speed = speed if speed is not None else shared_speed
        return ttft, speed

    def record_first_token(self, key: str, ms: float) -> None:
        health = self.get(key)
        health.first_tokens.append(ms)
        health.figure_added()

    def record_speed(self, key: str, tokens_per_second: float) -> None:
        health = self.get(key)
        health.speeds.append(tokens_per_second)
        health.figure_added()

    def reset(self) -> None:
        self._by_key.clear()
        self._measured = {}
        self._measured_timing = {}

    def available(self, key: str, now: float | None = None) -> bool:
        """May a request go to this endpoint now? A half-open circuit lets one probe through."""
        health = self._by_key.get(key)
        if health is None:
            return True
        now = now or time.monotonic()
        if health.rate_limited_until > now:
            return False
        if health.state == CLOSED:
            return True
        if health.state == OPEN and now >= health.open_until:
            health.state = HALF_OPEN
            health.probing = False
        if health.state == HALF_OPEN and not health.probing:
            return True
        return False

    def claim_probe(self, key: str) -> None:
        health = self._by_key.get(key)
        if health is not None and health.state == HALF_OPEN:
            health.probing = True

    def state(self, key: str) -> str:
        health = self._by_key.get(key)
        return health.state if health else CLOSED

    def record_success(
        self, key: str, *, ttft_ms: float | None = None, tokens_per_second: float | None = None
    ) -> None:
        health = self.get(key)
        health.add(Outcome(time.monotonic(), True, ttft_ms, tokens_per_second))
        health.consecutive_failures = 0
        if health.state != CLOSED:
            health.state = CLOSED
            health.cooldown = 0.0
            health.probing = False

    def record_rate_limited(self, key: str, retry_after: float | None) -> None:
        health = self.get(key)
        wait = retry_after if retry_after is not None else settings.ROUTING_RATE_LIMIT_COOLDOWN
        health.rate_limited_until = time.monotonic() + min(wait, 300.0)

    def record_failure(self, key: str) -> None:
        now = time.monotonic()
        health = self.get(key)
        health.add(Outcome(now, False))
        health.consecutive_failures += 1
        if health.state == HALF_OPEN:
            self._open(health, now)
            return
        window = health._window(now)
        failures = sum(not o.ok for o in window)
        if health.consecutive_failures >= settings.ROUTING_BREAKER_CONSECUTIVE_FAILURES or (
            failures >= settings.ROUTING_BREAKER_MIN_FAILURES
            and failures / len(window) >= settings.ROUTING_BREAKER_ERROR_RATE
        ):
            self._open(health, now)

    def _open(self, health: EndpointHealth, now: float) -> None:
        base = settings.ROUTING_BREAKER_COOLDOWN_SECONDS
        health.cooldown = min(max(base, health.cooldown * 2), settings.ROUTING_BREAKER_MAX_COOLDOWN)
        health.state = OPEN
        health.open_until = now + health.cooldown
        health.probing = False


health_book = HealthBook()
