"""The gateway's RPM/TPM limiter, against both backends: in-process and a real Redis.

The in-process backend runs on a clock the test moves (`now=`); the Redis backend runs on the
Redis server's clock, so its tests use small limits and short real sleeps. Every test names
its limits with a fresh id, so tests on parallel workers sharing the Redis database never
touch each other's keys (and nobody flushes a database another worker is using).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from routing.ratelimit import (
    Decision,
    InProcessRateLimiter,
    Limit,
    RateLimiter,
    RateLimitUnavailable,
    RedisRateLimiter,
    format_duration,
    get_rate_limiter,
    rate_limit_headers,
)

REDIS_URL = os.environ.get("RATELIMIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
CLOSED_PORT_URL = "redis://127.0.0.1:6390/0"


class Clock:
    """Fake time for the in-process backend; real waiting for Redis, whose clock we can't move."""

    def __init__(self, *, real: bool) -> None:
        self.real = real
        self._t = 1000.0

    @property
    def now(self) -> float | None:
        return None if self.real else self._t

    async def advance(self, seconds: float) -> None:
        if self.real:
            await asyncio.sleep(seconds)
        else:
            self._t += seconds


@dataclass
class Backend:
    name: str
    limiter: RateLimiter
    clock: Clock
    uid: str

    def limit(self, scope: str, name: str, *, rpm: int | None = None, tpm: int | None = None):
        return Limit(scope=scope, subject=f"{self.uid}-{name}", rpm=rpm, tpm=tpm)

    async def acquire(self, limits, tokens: int = 0) -> Decision:
        return await self.limiter.acquire(limits, tokens=tokens, now=self.clock.now)


async def _delete_keys(uid: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"rl:*:{uid}-*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex


@pytest.fixture(params=["memory", "redis"])
async def backend(request, uid):
    if request.param == "memory":
        yield Backend("memory", InProcessRateLimiter(), Clock(real=False), uid)
        return
    limiter = RedisRateLimiter(REDIS_URL)
    yield Backend("redis", limiter, Clock(real=True), uid)
    await limiter.aclose()
    await _delete_keys(uid)


@pytest.fixture
async def redis_backend(uid):
    limiter = RedisRateLimiter(REDIS_URL)
    yield Backend("redis", limiter, Clock(real=True), uid)
    await limiter.aclose()
    await _delete_keys(uid)


async def test_rpm_allows_a_full_burst_at_once_then_refuses_until_it_refills(backend):
    # One request every 10 s: wide margins for a slow, loaded machine.
    key = backend.limit("key", "k", rpm=6)

    decisions = [await backend.acquire([key]) for _ in range(6)]
    refused = await backend.acquire([key])

    assert all(d.allowed for d in decisions)
    assert [d.remaining_requests for d in decisions] == list(range(5, -1, -1))
    assert decisions[0].limit_requests == 6
    assert decisions[0].reset_requests_s == pytest.approx(10.0)
    assert not refused.allowed
    assert refused.refused_by == "key rpm"
    assert not refused.too_large
    assert 9.0 < refused.retry_after_s <= 10.0 + 1e-6
    assert refused.remaining_requests == 0
    assert refused.limit_tokens is None


async def test_limits_refill_smoothly_and_a_retry_after_retry_after_succeeds(backend):
    # One request a second: wide enough margins for a loaded CI machine.
    key = backend.limit("key", "k", rpm=60)

    burst = [await backend.acquire([key]) for _ in range(61)]
    assert [d.allowed for d in burst] == [True] * 60 + [False]
    assert 0.8 < burst[-1].retry_after_s <= 1.0 + 1e-6

    await backend.clock.advance(burst[-1].retry_after_s + 0.1)
    again = [await backend.acquire([key]) for _ in range(2)]
    assert [d.allowed for d in again] == [True, False]

    await backend.clock.advance(2.1)  # room for two more, not three (no window reset)
    later = [await backend.acquire([key]) for _ in range(3)]
    assert [d.allowed for d in later] == [True, True, False]


async def test_an_idle_minute_refills_the_whole_bucket_and_no_more():
    limiter, clock = InProcessRateLimiter(), Clock(real=False)
    key = Limit("key", "k", rpm=10, tpm=None)
    for _ in range(10):
        await limiter.acquire([key], tokens=0, now=clock.now)

    await clock.advance(600)  # ten idle minutes bank no more than one
    decisions = [await limiter.acquire([key], tokens=0, now=clock.now) for _ in range(11)]

    assert [d.allowed for d in decisions] == [True] * 10 + [False]


async def test_redis_state_expires_soon_after_the_bucket_would_be_full(redis_backend):
    key = redis_backend.limit("key", "k", rpm=60, tpm=6000)
    await redis_backend.acquire([key], tokens=3000)

    client = Redis.from_url(REDIS_URL)
    try:
        rpm_ttl = await client.pttl(f"rl:key:{key.subject}:rpm")
        tpm_ttl = await client.pttl(f"rl:key:{key.subject}:tpm")
    finally:
        await client.aclose()

    assert 1000 < rpm_ttl <= 2000  # 1 s to refill one request, plus a second of slack
    assert 30_000 < tpm_ttl <= 31_000


async def test_tpm_charges_the_requested_tokens(backend):
    key = backend.limit("key", "k", tpm=1000)

    decisions = [await backend.acquire([key], tokens=300) for _ in range(4)]

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining_tokens for d in decisions[:3]] == [700, 400, 100]
    refused = decisions[3]
    assert refused.refused_by == "key tpm"
    assert not refused.too_large
    # 200 tokens short at 1000/60 tokens per second
    assert 11.9 < refused.retry_after_s <= 12.0 + 1e-6
    assert refused.remaining_tokens == 100
    assert refused.limit_requests is None
    # What is left still fits a request that asks no more than that.
    assert (await backend.acquire([key], tokens=100)).allowed
    assert (await backend.acquire([key], tokens=0)).allowed


async def test_two_keys_share_their_organizations_limit(backend):
    org = backend.limit("org", "acme", rpm=10)
    key_a = backend.limit("key", "a", rpm=100)
    key_b = backend.limit("key", "b", rpm=100)

    a = [await backend.acquire([key_a, org]) for _ in range(6)]
    b = [await backend.acquire([key_b, org]) for _ in range(5)]
    a_late = await backend.acquire([key_a, org])

    assert all(d.allowed for d in a)
    assert [d.allowed for d in b] == [True] * 4 + [False]
    assert b[-1].refused_by == "org rpm"
    assert not a_late.allowed and a_late.refused_by == "org rpm"
    # The headers follow the tightest limit: the organization's.
    assert (a[0].limit_requests, a[0].remaining_requests) == (10, 9)
    assert (b[3].limit_requests, b[3].remaining_requests) == (10, 0)


async def test_a_refusal_by_one_limit_consumes_nothing_from_the_others(backend):
    org = backend.limit("org", "acme", tpm=500)
    key = backend.limit("key", "k", rpm=5, tpm=1000)
    other = backend.limit("key", "other", tpm=1000)
    assert (await backend.acquire([other, org], tokens=500)).allowed  # the org is now full

    refused = [await backend.acquire([key, org], tokens=10) for _ in range(20)]
    alone = await backend.acquire([key], tokens=10)

    assert all(d.refused_by == "org tpm" for d in refused)
    assert alone.allowed
    assert (alone.remaining_requests, alone.remaining_tokens) == (4, 990)

    # And the other way round: a key that refuses leaves its organization untouched.
    tight = backend.limit("key", "tight", rpm=1)
    roomy_org = backend.limit("org", "globex", rpm=10)
    assert (await backend.acquire([tight, roomy_org])).allowed
    for _ in range(5):
        assert (await backend.acquire([tight, roomy_org])).refused_by == "key rpm"
    assert (await backend.acquire([roomy_org])).remaining_requests == 8


async def test_a_request_bigger_than_the_tpm_limit_can_never_pass(backend):
    key = backend.limit("key", "k", rpm=60, tpm=1000)
    org = backend.limit("org", "acme", tpm=5000)

    refused = await backend.acquire([key, org], tokens=1001)

    assert not refused.allowed
    assert refused.too_large
    assert refused.refused_by == "key tpm"
    assert refused.retry_after_s is None
    assert refused.limit_tokens == 1000
    headers = rate_limit_headers(refused)
    assert "retry-after" not in headers
    assert headers["x-should-retry"] == "false"
    # Nothing was charged: a full minute's worth still fits.
    fits = await backend.acquire([key, org], tokens=1000)
    assert fits.allowed and fits.remaining_requests == 59

    over_org = await backend.acquire([org], tokens=5001)
    assert over_org.too_large and over_org.refused_by == "org tpm"


async def test_headers_on_an_admitted_and_a_refused_request(backend):
    key = backend.limit("key", "k", rpm=60, tpm=6000)

    first = await backend.acquire([key], tokens=100)
    assert RateLimiter.headers(first) == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "5900",
        "x-ratelimit-reset-tokens": "1s",
    }

    await backend.acquire([key], tokens=5900)
    refused = await backend.acquire([key], tokens=300)
    headers = RateLimiter.headers(refused)
    assert refused.refused_by == "key tpm"
    assert headers["x-ratelimit-remaining-tokens"] == "0"
    assert headers["x-ratelimit-remaining-requests"] == "58"
    assert headers["retry-after"] == "3"  # 300 tokens at 100/s
    assert re.fullmatch(r"59\.9\d*s|1m0s", headers["x-ratelimit-reset-tokens"])
    assert "x-should-retry" not in headers


async def test_remaining_counts_never_increase_within_a_burst(backend):
    key = backend.limit("key", "k", rpm=20, tpm=1000)
    org = backend.limit("org", "acme", rpm=30, tpm=800)

    decisions = [await backend.acquire([key, org], tokens=30) for _ in range(40)]

    requests = [d.remaining_requests for d in decisions]
    tokens = [d.remaining_tokens for d in decisions]
    assert requests == sorted(requests, reverse=True)
    assert tokens == sorted(tokens, reverse=True)
    assert sum(d.allowed for d in decisions) == 20


@pytest.mark.parametrize("kind", ["rpm", "tpm"])
async def test_200_concurrent_requests_against_a_limit_of_50_admit_exactly_50(backend, kind):
    if kind == "rpm":
        key, tokens = backend.limit("key", "k", rpm=50, tpm=10**9), 10
    else:
        key, tokens = backend.limit("key", "k", rpm=10**6, tpm=5000), 100
    org = backend.limit("org", "acme", rpm=10**6)

    decisions = await asyncio.gather(*(backend.acquire([key, org], tokens) for _ in range(200)))

    assert sum(d.allowed for d in decisions) == 50
    assert {d.refused_by for d in decisions if not d.allowed} == {f"key {kind}"}


async def test_two_processes_sharing_redis_enforce_one_limit(redis_backend):
    other_process = RedisRateLimiter(REDIS_URL)
    try:
        key = redis_backend.limit("key", "k", rpm=10)
        org = redis_backend.limit("org", "acme", rpm=30)
        turns = [
            await (redis_backend.limiter if i % 2 else other_process).acquire([key], tokens=0)
            for i in range(12)
        ]
        assert [d.allowed for d in turns] == [True] * 10 + [False, False]

        # Concurrent on both at once: still exactly the limit.
        keys = [redis_backend.limit("key", f"k{i}", rpm=1000) for i in range(4)]
        decisions = await asyncio.gather(
            *(
                limiter.acquire([keys[i % 4], org], tokens=0)
                for i in range(100)
                for limiter in (redis_backend.limiter, other_process)
            )
        )
        assert sum(d.allowed for d in decisions) == 30
    finally:
        await other_process.aclose()


async def test_redis_down_raises_instead_of_allowing(uid):
    limiter = RedisRateLimiter(CLOSED_PORT_URL)
    key = Limit("key", uid, rpm=60, tpm=None)
    try:
        started = time.monotonic()
        with pytest.raises(RateLimitUnavailable):
            await limiter.acquire([key], tokens=0)
        with pytest.raises(RateLimitUnavailable):  # and again: no state that says "fine now"
            await limiter.acquire([key], tokens=0)
        assert time.monotonic() - started < 1.0  # fails fast, no retry backoff

        # A request that can never fit is refused without asking Redis.
        huge = await limiter.acquire([Limit("key", uid, rpm=None, tpm=10)], tokens=11)
        assert huge.too_large
    finally:
        await limiter.aclose()


async def test_a_redis_that_does_not_answer_raises_within_the_timeout(uid):
    writers = []

    async def silent(reader, writer):  # accepts, reads, never answers
        writers.append(writer)
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(RateLimitUnavailable):
            await limiter.acquire([Limit("key", uid, rpm=60, tpm=None)], tokens=0)
        assert time.monotonic() - started < 1.0
    finally:
        await limiter.aclose()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_connection_redis_dropped_is_reopened_transparently(redis_backend):
    key = redis_backend.limit("key", "k", rpm=60)
    assert (await redis_backend.acquire([key])).allowed
    pooled = redis_backend.limiter._client()
    connection_id = await pooled.client_id()  # the same pooled connection acquire() uses

    admin = Redis.from_url(REDIS_URL)
    try:
        assert await admin.client_kill_filter(_id=connection_id) == 1
    finally:
        await admin.aclose()

    decision = await redis_backend.acquire([key])
    assert decision.allowed and decision.remaining_requests == 58


async def test_no_limits_means_allowed_with_no_headers(backend):
    unlimited = backend.limit("key", "k")
    decision = await backend.acquire([unlimited], tokens=10**9)
    assert decision.allowed
    assert rate_limit_headers(decision) == {}

    only_tokens = backend.limit("key", "t", tpm=100)
    headers = rate_limit_headers(await backend.acquire([unlimited, only_tokens], tokens=10))
    assert set(headers) == {
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    }


async def test_negative_tokens_are_a_bug(backend):
    with pytest.raises(ValueError):
        await backend.acquire([backend.limit("key", "k", tpm=10)], tokens=-1)


async def test_in_process_memory_stays_bounded():
    limiter, clock = InProcessRateLimiter(), Clock(real=False)
    for i in range(10_000):
        await limiter.acquire([Limit("key", str(i), rpm=60, tpm=None)], tokens=0, now=clock.now)
    await clock.advance(61)  # every one of them is full again: as good as forgotten
    for i in range(10_000):
        await limiter.acquire([Limit("key", f"n{i}", rpm=60, tpm=None)], tokens=0, now=clock.now)
    assert len(limiter._tat) == 10_000
    assert all(subject.startswith("n") for _, subject, _ in limiter._tat)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0004, "1ms"),
        (0.017, "17ms"),
        (0.25, "250ms"),
        (0.999, "999ms"),
        (0.9991, "1s"),
        (1, "1s"),
        (1.5, "1.5s"),
        (8.64, "8.64s"),
        (59.9999, "1m0s"),
        (86.4, "1m26.4s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (3723.5, "1h2m3.5s"),
    ],
)
def test_durations_are_written_like_openai_does(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(("wait", "header"), [(0.001, "1"), (1.0, "1"), (1.2, "2"), (59.5, "60")])
def test_retry_after_is_whole_seconds_rounded_up(wait, header):
    decision = Decision(allowed=False, retry_after_s=wait, refused_by="key rpm")
    assert rate_limit_headers(decision) == {"retry-after": header}


def test_the_process_limiter_follows_redis_url(settings):
    settings.REDIS_URL = ""
    local = get_rate_limiter()
    assert isinstance(local, InProcessRateLimiter)
    assert get_rate_limiter() is local

    settings.REDIS_URL = REDIS_URL
    shared = get_rate_limiter()
    assert isinstance(shared, RedisRateLimiter) and shared.url == REDIS_URL
    assert get_rate_limiter() is shared


async def test_a_changed_limit_keeps_what_the_minute_used(backend):
    # Staff raise an organization's limit: what it used stays used, the rest is room at once.
    used = [await backend.acquire([backend.limit("org", "o", rpm=2)]) for _ in range(3)]
    assert [d.allowed for d in used] == [True, True, False]

    raised = [await backend.acquire([backend.limit("org", "o", rpm=5)]) for _ in range(4)]
    assert [d.allowed for d in raised] == [True, True, True, False]
    assert raised[0].limit_requests == 5
    assert raised[0].remaining_requests == 2

    # Lowered below what was used (5 of 3): refused until 3 of those 5 have refilled at the
    # new rate, a minute from now.
    lowered = await backend.acquire([backend.limit("org", "o", rpm=3)])
    assert not lowered.allowed
    assert lowered.remaining_requests == 0
    assert 55 <= lowered.retry_after_s <= 60
