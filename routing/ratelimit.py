"""Requests-per-minute and tokens-per-minute limits, checked and consumed in one atomic step.

Every limit is a GCRA (generic cell rate algorithm): one number per limit, the "theoretical
arrival time" (TAT) at which its bucket would be full again. It behaves exactly like a token
bucket holding `limit` units that refills at `limit / 60` units per second, so a fresh key may
burst its whole minute at once but never twice in a row (no fixed-window 2x burst at a boundary).
A request costs 1 request-unit and `tokens` token-units; it passes only if every limit that
applies has room, and then every one of them is charged (all or nothing).

Two backends behind one API:
- `RedisRateLimiter` when settings.REDIS_URL is set: one EVALSHA round trip per request, on
  Redis' own clock (`TIME`), so every server process shares the limits whatever their clocks.
- `InProcessRateLimiter` in the embedded default: a dict on `time.monotonic()`.

Redis down is never "allow": `acquire` raises `RateLimitUnavailable` and the caller answers 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from config.cooldown import Cooldown

__all__ = [
    "Decision",
    "InProcessRateLimiter",
    "Limit",
    "RateLimitUnavailable",
    "RateLimiter",
    "RedisRateLimiter",
    "format_duration",
    "get_rate_limiter",
    "rate_limit_headers",
]

PERIOD_S = 60.0
_PERIOD_US = 60_000_000


class RateLimitUnavailable(Exception):
    """The shared limiter could not be asked (Redis down or too slow). Fail closed: 503."""


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit that applies to this request. Immutable, so a caller may build it once per
    cached key and reuse it on every request."""

    scope: str  # "key" | "org"
    subject: str  # the key id / org id
    rpm: int | None  # None = unlimited
    tpm: int | None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    # For headers: the tightest limit of each kind (None when nothing limits that kind).
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None
    retry_after_s: float | None = None  # refused and retryable: wait this long (> 0)
    refused_by: str | None = None  # "key rpm", "org tpm", ...
    # The request alone is bigger than a whole minute of that limit: it can never pass.
    too_large: bool = False


_UNLIMITED = Decision(allowed=True)


def format_duration(seconds: float) -> str:
    """A duration the way OpenAI's x-ratelimit-reset-* headers write it (Go's
    time.Duration format at millisecond precision): "0s", "250ms", "1s", "8.64s", "6m0s".
    Rounded up, so a client that waits that long finds the room there."""
    ms = math.ceil(seconds * 1000 - 1e-6)  # the epsilon keeps 0.25 s at "250ms", not "251ms"
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    text = f"{secs}.{ms:03d}".rstrip("0") + "s" if ms else f"{secs}s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """OpenAI-style headers for any answer (200 or 429), plus Retry-After when refused."""
    headers: dict[str, str] = {}
    if decision.limit_requests is not None:
        headers["x-ratelimit-limit-requests"] = str(decision.limit_requests)
        if decision.remaining_requests is not None:
            headers["x-ratelimit-remaining-requests"] = str(decision.remaining_requests)
            headers["x-ratelimit-reset-requests"] = format_duration(decision.reset_requests_s)
    if decision.limit_tokens is not None:
        headers["x-ratelimit-limit-tokens"] = str(decision.limit_tokens)
        if decision.remaining_tokens is not None:
            headers["x-ratelimit-remaining-tokens"] = str(decision.remaining_tokens)
            headers["x-ratelimit-reset-tokens"] = format_duration(decision.reset_tokens_s)
    if not decision.allowed:
        if decision.retry_after_s is not None:
            headers["retry-after"] = str(max(1, math.ceil(decision.retry_after_s)))
        if decision.too_large:
            # The OpenAI SDKs retry a 429 unless told not to; this one would fail forever.
            headers["x-should-retry"] = "false"
    return headers


class RateLimiter:
    """Check-and-consume RPM/TPM limits. Subclasses store the per-limit GCRA state."""

    url = ""
    headers = staticmethod(rate_limit_headers)

    async def acquire(
        self, limits: Sequence[Limit], *, tokens: int, now: float | None = None
    ) -> Decision:
        """Admit one request costing `tokens` token-units (estimated prompt + max output)
        against every limit in `limits`, or refuse it and consume nothing.

        `now` (seconds, monotonic) is for tests of the in-process backend; the Redis backend
        always uses the Redis server's clock. Pass each (scope, subject) at most once.
        """
        if tokens < 0:
            raise ValueError("tokens can't be negative")
        # Flattened per check: (limit, is_tokens, per-minute limit, cost).
        checks: list[tuple[Limit, bool, int, int]] = []
        for limit in limits:
            if limit.rpm is not None:
                checks.append((limit, False, limit.rpm, 1))
            if limit.tpm is not None:
                checks.append((limit, True, limit.tpm, tokens))
        if not checks:
            return _UNLIMITED
        for check in checks:
            if check[3] > check[2] or check[2] <= 0:
                return _too_large(checks, check)
        allowed, backlogs = await self._consume(checks, now)
        return _decide(checks, allowed, backlogs)

    async def _consume(
        self, checks: list[tuple[Limit, bool, int, int]], now: float | None
    ) -> tuple[bool, list[float]]:
        """Charge every check if all fit. Return (allowed, each limit's backlog in seconds:
        how far its TAT is ahead of now, after the charge if allowed, as it stands if not)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release connections (tests; a server process keeps its limiter for life)."""


def _label(check: tuple[Limit, bool, int, int]) -> str:
    return f"{check[0].scope} {'tpm' if check[1] else 'rpm'}"


def _too_large(
    checks: list[tuple[Limit, bool, int, int]], culprit: tuple[Limit, bool, int, int]
) -> Decision:
    # Decided without asking the backend: no wait will ever make it fit.
    limit_requests = min((c[2] for c in checks if not c[1]), default=None)
    limit_tokens = min((c[2] for c in checks if c[1]), default=None)
    return Decision(
        allowed=False,
        limit_requests=limit_requests,
        limit_tokens=limit_tokens,
        refused_by=_label(culprit),
        too_large=True,
    )


def _decide(
    checks: list[tuple[Limit, bool, int, int]], allowed: bool, backlogs: list[float]
) -> Decision:
    req = tok = None  # (remaining, backlog, limit) of the tightest limit of each kind
    worst_wait = 0.0
    worst = None
    for check, backlog in zip(checks, backlogs, strict=True):
        _, is_tokens, per_minute, cost = check
        remaining = int((PERIOD_S - backlog) * per_minute / PERIOD_S + 1e-6)
        if remaining < 0:
            remaining = 0
        elif remaining > per_minute:
            remaining = per_minute
        if is_tokens:
            if tok is None or remaining < tok[0]:
                tok = (remaining, backlog, per_minute)
        elif req is None or remaining < req[0]:
            req = (remaining, backlog, per_minute)
        if not allowed:
            wait = backlog + cost * PERIOD_S / per_minute - PERIOD_S
            if worst is None or wait > worst_wait:
                worst, worst_wait = check, wait
    return Decision(
        allowed=allowed,
        limit_requests=req[2] if req else None,
        remaining_requests=req[0] if req else None,
        reset_requests_s=req[1] if req else None,
        limit_tokens=tok[2] if tok else None,
        remaining_tokens=tok[0] if tok else None,
        reset_tokens_s=tok[1] if tok else None,
        # A refusal always names a wait > 0, even if rounding put the excess at zero.
        retry_after_s=None if allowed else max(worst_wait, 0.001),
        refused_by=None if allowed else _label(worst),
    )


class InProcessRateLimiter(RateLimiter):
    """Limits held in this process's memory: the embedded default (one process, no Redis)."""

    _SWEEP_AT = 4096

    def __init__(self) -> None:
        # (scope, subject, is_tokens) -> (TAT, the per-minute limit it was charged under)
        self._tat: dict[tuple[str, str, bool], tuple[float, int]] = {}
        # acquire() never awaits while it holds this, so it is atomic on the event loop; the
        # lock covers callers on other threads (sync code through async_to_sync).
        self._lock = threading.Lock()
        self._sweep_at = self._SWEEP_AT

    async def _consume(self, checks, now):
        if now is None:
            now = time.monotonic()
        tats = self._tat
        backlogs: list[float] = []
        news: list[float] = []
        allowed = True
        with self._lock:
            for limit, is_tokens, per_minute, cost in checks:
                tat, was = tats.get((limit.scope, limit.subject, is_tokens), (now, per_minute))
                if tat < now:
                    tat = now
                elif was != per_minute:
                    tat = now + (tat - now) * was / per_minute  # see _LUA: units used stay
                new = tat + cost * PERIOD_S / per_minute
                # 1 us of slack (as in Redis) so float rounding never refuses the last unit.
                if new - now > PERIOD_S + 1e-6:
                    allowed = False
                backlogs.append(tat - now)
                news.append(new)
            if allowed:
                for i, (limit, is_tokens, per_minute, _) in enumerate(checks):
                    tats[(limit.scope, limit.subject, is_tokens)] = (news[i], per_minute)
                    backlogs[i] = news[i] - now
                if len(tats) > self._sweep_at:
                    self._sweep(now)
        return allowed, backlogs

    def _sweep(self, now: float) -> None:
        # A TAT in the past means a full bucket, the same as no entry: drop those.
        for key in [k for k, (tat, _) in self._tat.items() if tat <= now]:
            del self._tat[key]
        self._sweep_at = max(self._SWEEP_AT, 2 * len(self._tat))


# KEYS[i]: one limit's state, "TAT limit": the TAT in microseconds of Redis' clock since 2024
# (small enough that a double keeps sub-microsecond precision, so a tiny cost against a huge
# limit still counts) and the per-minute limit it was charged under. When the limit changes
# (staff raise an organization's), the backlog is rescaled so the units used in the last
# minute stay used: a raised limit has room at once, a lowered one none extra.
# ARGV[1]: "per_minute cost" for each key in turn, space-separated. One argument in and one
# string out cost the client far less to encode and parse than one value each.
# Returns "allowed backlog_us...": each backlog after the charge if allowed, as it stands if not.
_LUA = """
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1704067200) * 1000000 + tonumber(t[2])
local tats = redis.call('MGET', unpack(KEYS))
local out = {1}
local limits = {}
local i = 0
for per_minute, cost in string.gmatch(ARGV[1], '(%d+) (%d+)') do
  i = i + 1
  local limit = tonumber(per_minute)
  limits[i] = limit
  local tat = now
  if tats[i] then
    local stored, was = string.match(tats[i], '^(%S+) ?(%d*)$')
    tat = tonumber(stored) or now
    was = tonumber(was)
    if tat > now and was and was ~= limit then tat = now + (tat - now) * was / limit end
  end
  if tat < now then tat = now end
  local new = tat + tonumber(cost) * 60000000 / limit
  -- 1 us of slack so float rounding never refuses the last unit of a minute.
  if new - now > 60000001 then out[1] = 0 end
  out[i + 1] = tat - now
  tats[i] = new
end
if out[1] == 1 then
  for j = 1, i do
    local new = tats[j]
    if new > now then
      redis.call('SET', KEYS[j], string.format('%.17g %d', new, limits[j]),
                 'PX', math.ceil((new - now) / 1000) + 1000)
      out[j + 1] = new - now
    end
  end
end
return table.concat(out, ' ')
"""
_LUA_SHA = hashlib.sha1(_LUA.encode(), usedforsecurity=False).hexdigest()


class RedisRateLimiter(RateLimiter):
    """Limits shared by every process through Redis: one EVALSHA per request.

    Each event loop gets its own client (redis.asyncio connections belong to the loop that
    opened them), created on first use. A pooled connection that Redis dropped is reopened
    once, transparently; any other failure raises RateLimitUnavailable at once, no backoff.
    One request's keys (its key's and its organization's) go to one Redis: a Redis Cluster
    would need a hash tag per organization in the key names.
    """

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 64,
        timeout: float = 1.0,
        connect_timeout: float | None = None,
    ) -> None:
        self.url = url
        self._max_connections = max_connections
        self._timeout = timeout
        self._connect_timeout = timeout if connect_timeout is None else connect_timeout
        # After a failure, refuse at once for a moment instead of a timeout per request.
        self.cooldown = Cooldown()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._redis: Redis | None = None
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = (
            weakref.WeakKeyDictionary()
        )

    def _make_client(self) -> Redis:
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=self._max_connections,
            timeout=self._timeout,  # waiting for a free connection
            socket_timeout=self._timeout,
            socket_connect_timeout=self._connect_timeout,
            client_name="llmapi-ratelimit",
            # Retry only a broken connection, once: a timed-out EVALSHA may have run already,
            # and a retry would charge the request twice.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        return Redis.from_pool(pool)

    def _client(self) -> Redis:
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return self._redis
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._make_client()
        self._loop, self._redis = loop, client
        return client

    async def _consume(self, checks, now):
        n = len(checks)
        keys = [
            f"rl:{limit.scope}:{limit.subject}:{'tpm' if is_tokens else 'rpm'}"
            for limit, is_tokens, _, _ in checks
        ]
        spec = " ".join([f"{check[2]} {check[3]}" for check in checks])
        if self.cooldown.active:
            raise RateLimitUnavailable("rate limiter unavailable: Redis failed a moment ago")
        client = self._client()
        try:
            try:
                reply = await client.evalsha(_LUA_SHA, n, *keys, spec)
            except NoScriptError:  # first use, or Redis restarted / flushed its scripts
                await client.script_load(_LUA)
                reply = await client.evalsha(_LUA_SHA, n, *keys, spec)
        except (RedisError, OSError) as exc:
            self.cooldown.trip()
            raise RateLimitUnavailable(f"rate limiter unavailable: {exc}") from exc
        fields = reply.split()
        return int(fields[0]) == 1, [float(us) / 1_000_000 for us in fields[1:]]

    async def aclose(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is self._redis:
            self._loop = self._redis = None
        if client is not None:
            await client.aclose()


_limiter: RateLimiter | None = None
_limiter_lock = threading.Lock()


def get_rate_limiter() -> RateLimiter:
    """This process's limiter: Redis-backed if settings.REDIS_URL is set, else in-process."""
    url = settings.REDIS_URL
    limiter = _limiter
    if limiter is not None and limiter.url == url:
        return limiter
    return _replace_limiter(url)


def _replace_limiter(url: str) -> RateLimiter:
    global _limiter
    with _limiter_lock:
        if _limiter is None or _limiter.url != url:
            _limiter = (
                RedisRateLimiter(
                    url,
                    timeout=settings.REDIS_SOCKET_TIMEOUT,
                    connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
                )
                if url
                else InProcessRateLimiter()
            )
        return _limiter
