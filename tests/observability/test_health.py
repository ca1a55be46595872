"""Endpoint health from a scripted sequence of attempts, written through the real writer:
uptime per window with rate limits excluded, and the bucketed percentiles, exactly."""

from __future__ import annotations

import time

import pytest

from observability.health import endpoint_health
from observability.services import request_logs_write
from observability.writer.records import event_to_record
from tests.factories import OrganizationFactory
from tests.observability.helpers import attempt, make_event

AI_STUDIO = ("google-ai-studio", "google/gemini-3.1-flash-lite")
VERTEX = ("vertex-ai", "google/gemini-3.1-flash-lite")


def _write(org, *, minutes_ago: float, attempts, error=None):
    at = time.time() - minutes_ago * 60
    event = make_event(
        org,
        received_at=at,
        finished_at=at + sum(a["duration_ms"] for a in attempts) / 1000,
        attempts=tuple(attempts),
        error=error,
        provider=attempts[-1]["provider"],
    )
    request_logs_write(records=[event_to_record(event)])


@pytest.fixture
def scripted(db):
    org = OrganizationFactory()
    for duration in (150, 150, 600):  # three answers, 30 tokens each: 200, 200 and 50 tok/s
        _write(org, minutes_ago=2, attempts=[attempt(duration_ms=duration)])
    # A fallback: AI Studio failed, Vertex answered.
    _write(org, minutes_ago=2, attempts=[attempt(outcome="overloaded"), attempt("vertex-ai")])
    # A rate limit is not an outage: it counts nowhere.
    _write(org, minutes_ago=2, attempts=[attempt(outcome="rate_limited"), attempt("vertex-ai")])
    # A hedge that lost, and a request the provider refused as malformed: not counted either.
    _write(
        org,
        minutes_ago=2,
        attempts=[attempt(outcome="cancelled"), attempt(outcome="bad_request")],
        error="bad_request",
    )
    _write(org, minutes_ago=20, attempts=[attempt(outcome="timeout")], error="timeout")
    for _ in range(2):
        _write(org, minutes_ago=180, attempts=[attempt(outcome="overloaded")], error="overloaded")
    for _ in range(4):
        _write(org, minutes_ago=10 * 24 * 60, attempts=[attempt()])
    _write(org, minutes_ago=40 * 24 * 60, attempts=[attempt(outcome="timeout")], error="timeout")
    return org


def test_uptime_per_window_excludes_rate_limits(scripted):
    health = endpoint_health()
    assert health[AI_STUDIO]["uptime"] == {
        "5m": 75.0,  # 3 ok, 1 error
        "30m": 60.0,  # 3 ok, 2 errors
        "1d": 42.86,  # 3 ok, 4 errors
        "30d": 63.64,  # 7 ok, 4 errors (the 40-day-old timeout is out of every window)
    }
    assert health[VERTEX]["uptime"] == {"5m": 100.0, "30m": 100.0, "1d": 100.0, "30d": 100.0}
    assert health[AI_STUDIO]["requests_1d"] == 7


def test_time_to_first_token_and_throughput_percentiles(scripted):
    figures = endpoint_health()[AI_STUDIO]
    # First tokens at 150, 150 and 600 ms: buckets up to 200 (two) and up to 750 (one).
    assert figures["ttft_ms"] == {"p50": 200.0, "p90": 750.0, "p95": 750.0, "p99": 750.0}
    # 200, 200 and 50 tokens/s: the median's bucket is the one up to 200.
    assert figures["throughput_p50"] == 200.0


def test_no_traffic_means_no_figures(db):
    assert endpoint_health() == {}


@pytest.mark.django_db(transaction=True)
def test_the_router_orders_by_measured_latency_from_the_shared_figures(gateway, alice, request):
    import httpx
    from django.core.cache import cache

    from observability.health import endpoint_health_share
    from routing.health import health_book
    from routing.snapshot import MEASURED_HEALTH_CACHE_KEY

    base_url, secret = gateway
    # Traffic seen by other processes: Vertex answers its first token in 150 ms, AI Studio
    # in 2.5 s. By catalog figures alone a latency sort would pick private-vllm (250 ms
    # nominal) and put Vertex (380 ms) behind AI Studio (320 ms).
    for _ in range(3):
        _write(alice.org, minutes_ago=1, attempts=[attempt("vertex-ai", duration_ms=150)])
        _write(alice.org, minutes_ago=1, attempts=[attempt(duration_ms=2500)])
    health_book.reset()  # this process has measured nothing itself
    assert endpoint_health_share() == 2
    request.addfinalizer(lambda: cache.delete(MEASURED_HEALTH_CACHE_KEY))
    assert health_book.medians("google/gemini-3.1-flash-lite@vertex-ai") == (200.0, 200.0)
    reply = httpx.post(
        f"{base_url}/chat/completions",
        json={
            "model": "google/gemini-3.1-flash-lite",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4,
            "provider": {"sort": "latency"},
        },
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["provider"] == "vertex-ai"
