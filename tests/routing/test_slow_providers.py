"""A slow or silent provider costs a bounded wait, not the whole attempt timeout: through the
served gateway, against the provider simulator stalling one endpoint.

The attempt timeout stays at its 60 s default in these tests; the limits they exercise are set
low so the tests stay short. Before these limits, every stalled request here waited the full
attempt timeout (and the client's own timeout gave up first)."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import httpx
import pytest

from billing import services as billing_services
from billing.models import LedgerEntry
from routing import router
from routing.health import HealthBook
from routing.snapshot import catalog

MINI = "openai/gpt-4.1-mini"  # openai first (cheapest), then openrouter
HERO = "google/gemini-3.1-flash-lite"  # a reasoning model (thinking levels)
HELLO = [{"role": "user", "content": "hello"}]
CLIENT_TIMEOUT = 10.0  # well under the attempt timeout: a request that waits for it fails


@pytest.fixture
def limits(settings):
    settings.ROUTING_ATTEMPT_TIMEOUT = 60.0
    settings.ROUTING_FIRST_TOKEN_MULTIPLIER = 4.0
    settings.ROUTING_FIRST_TOKEN_FLOOR_SECONDS = 0.3
    settings.ROUTING_REASONING_FIRST_TOKEN_FLOOR_SECONDS = 2.0
    settings.ROUTING_FIRST_TOKEN_DEFAULT_SECONDS = 1.0
    settings.ROUTING_STREAM_IDLE_SECONDS = 0.5
    settings.ROUTING_REASONING_STREAM_IDLE_SECONDS = 2.0
    settings.ROUTING_DEFAULT_TOKENS_PER_SECOND = 1000.0
    return settings


def post(gateway, body: dict) -> tuple[httpx.Response, float]:
    base_url, secret = gateway
    started = time.monotonic()
    response = httpx.post(
        f"{base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=CLIENT_TIMEOUT,
    )
    return response, time.monotonic() - started


def stream(gateway, body: dict) -> tuple[list[dict], float]:
    """A streamed request: its data events (JSON, [DONE] left out) and how long it took."""
    base_url, secret = gateway
    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{base_url}/chat/completions",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=CLIENT_TIMEOUT,
    ) as response:
        assert response.status_code == 200, response.read()
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    elapsed = time.monotonic() - started
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]], elapsed


def text_of(chunks: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def warm_up(gateway, model: str, times: int = 3) -> None:
    """A few good streams, so that the first endpoint's time to first token is measured."""
    for _ in range(times):
        chunks, _ = stream(gateway, {"model": model, "messages": HELLO, "max_tokens": 8})
        assert text_of(chunks)


def test_a_silent_provider_on_a_stream_falls_back_within_the_default_limit(
    gateway, sim, limits, generation_events
):
    """Unmeasured: the default first-token limit (1 s here), not the 60 s attempt timeout."""
    sim.set("openai", error_rate=1, error_kind="stall")
    chunks, elapsed = stream(gateway, {"model": MINI, "messages": HELLO, "max_tokens": 8})
    assert {c["provider"] for c in chunks} == {"openrouter"}
    assert text_of(chunks)
    assert 1.0 <= elapsed < 4.0
    attempts = generation_events[-1].attempts
    assert [(a["provider"], a["outcome"]) for a in attempts] == [
        ("openai", "timeout"),
        ("openrouter", "ok"),
    ]
    assert "within 1 s" in attempts[0]["message"]


def test_a_silent_provider_on_a_non_streamed_call_falls_back_within_its_limit(gateway, sim, limits):
    """Unmeasured: the default first-token limit plus max_tokens at the default speed."""
    limits.ROUTING_DEFAULT_TOKENS_PER_SECOND = 8.0  # 8 tokens: one more second
    sim.set("openai", error_rate=1, error_kind="stall")
    response, elapsed = post(gateway, {"model": MINI, "messages": HELLO, "max_tokens": 8})
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["provider"] == "openrouter"
    assert reply["choices"][0]["message"]["content"]
    assert 2.0 <= elapsed < 5.0


def test_a_non_streamed_answer_that_goes_silent_midway_falls_back(gateway, sim, limits):
    sim.set("openai", error_rate=1, error_kind="stall_mid")
    response, elapsed = post(gateway, {"model": MINI, "messages": HELLO, "max_tokens": 8})
    assert response.status_code == 200, response.text
    assert response.json()["provider"] == "openrouter"
    assert elapsed < 4.0


def test_a_measured_endpoint_gets_a_multiple_of_its_p95_first_token_time(gateway, sim, limits):
    """Measured at ~250 ms to first token: its limit is 4 x that (~1 s), above the floor and
    far below the attempt timeout."""
    limits.ROUTING_FIRST_TOKEN_DEFAULT_SECONDS = 30.0  # not used once measured
    sim.set("openai", latency_ms=250)
    warm_up(gateway, MINI)
    sim.set("openai", error_rate=1, error_kind="stall")
    chunks, elapsed = stream(gateway, {"model": MINI, "messages": HELLO, "max_tokens": 8})
    assert {c["provider"] for c in chunks} == {"openrouter"}
    assert 1.0 <= elapsed < 4.0


def test_a_provider_that_answers_headers_but_no_token_falls_back(gateway, sim, limits):
    """The stream's head (status, headers, a role chunk) came; its first token never did."""
    sim.set("openai", error_rate=1, error_kind="stall_mid", cut_after_tokens=0)
    chunks, elapsed = stream(gateway, {"model": MINI, "messages": HELLO, "max_tokens": 8})
    assert {c["provider"] for c in chunks} == {"openrouter"}
    assert text_of(chunks)
    assert elapsed < 4.0


def test_a_stream_that_stalls_after_bytes_were_sent_ends_with_an_error_chunk_and_is_billed(
    gateway, alice, sim, limits, generation_events
):
    sim.set("openai", error_rate=1, error_kind="stall_mid", cut_after_tokens=3)
    chunks, elapsed = stream(gateway, {"model": MINI, "messages": HELLO, "max_tokens": 16})
    assert elapsed < 4.0  # the idle limit (0.5 s), not the attempt timeout
    *served, last = chunks
    # No fallback once bytes reached the client: what came is the stalled provider's.
    assert served and {c["provider"] for c in served} == {"openai"}
    assert text_of(served)
    assert last["choices"][0]["finish_reason"] == "error"
    assert last["error"]["code"] == "timeout"
    assert "sent nothing for 0.5 s" in last["error"]["message"]
    # Billed for what was served: the prompt and the tokens delivered, as the chunk says.
    assert last["usage"]["completion_tokens"] >= 3
    cost = int(Decimal(str(last["usage"]["cost"])) * 1_000_000_000)
    assert cost > 0
    finished = generation_events[-1]
    assert finished.error == "timeout"
    assert finished.cost_nanousd == cost
    billing_services.usage_flush()
    entries = LedgerEntry.objects.filter(organization=alice.org, kind=LedgerEntry.Kind.USAGE)
    assert [e.amount_nanousd for e in entries] == [-cost]


def test_a_reasoning_model_gets_the_longer_first_token_floor(gateway, sim, limits):
    """Measured fast, so the floor decides: 2 s for a model that may think first, 0.3 s when
    the request keeps its thinking minimal."""
    warm_up(gateway, HERO)
    sim.set("google-ai-studio", error_rate=1, error_kind="stall")
    chunks, elapsed = stream(gateway, {"model": HERO, "messages": HELLO, "max_tokens": 8})
    assert {c["provider"] for c in chunks} == {"vertex-ai"}
    assert 2.0 <= elapsed < 5.0

    chunks, elapsed = stream(
        gateway,
        {"model": HERO, "messages": HELLO, "max_tokens": 8, "reasoning_effort": "minimal"},
    )
    assert {c["provider"] for c in chunks} == {"vertex-ai"}
    assert elapsed < 1.5


def test_a_slow_but_steady_stream_is_not_cut(gateway, sim, limits):
    """Tokens every 0.2 s stay under the 0.5 s idle limit: the answer arrives whole."""
    sim.set("openai", tokens_per_second=5)
    chunks, elapsed = stream(gateway, {"model": MINI, "messages": HELLO, "max_tokens": 6})
    assert {c["provider"] for c in chunks} == {"openai"}
    assert chunks[-1].get("error") is None
    assert elapsed >= 1.0


def test_hedging_still_races_a_second_provider(gateway, sim, limits):
    sim.set("openai", latency_ms=3000)
    response, elapsed = post(
        gateway, {"model": MINI, "messages": HELLO, "max_tokens": 8, "hedge_after_ms": 100}
    )
    assert response.status_code == 200, response.text
    assert response.json()["provider"] == "openrouter"
    assert elapsed < 2.5


# The limits themselves, from an endpoint's measured figures.


@pytest.fixture
def endpoint(gateway):
    return catalog.get().resolve(MINI).endpoints[0]


def test_limits_for_an_unmeasured_endpoint_are_the_defaults(endpoint, limits):
    book = HealthBook()
    assert router.first_token_seconds(endpoint, health=book) == 1.0
    assert router.first_token_seconds(endpoint, reasoning=True, health=book) == 2.0
    # 1 s to the first token, then 500 tokens at the default 1000 tokens/s.
    assert router.answer_seconds(endpoint, output_cap=500, health=book) == 1.5
    assert router.idle_seconds() == 0.5
    assert router.idle_seconds(reasoning=True) == 2.0


def test_limits_follow_the_measured_p95_and_speed_within_the_attempt_timeout(endpoint, limits):
    book = HealthBook()
    for ms in [100] * 19 + [400]:
        book.record_first_token(endpoint.key, ms)
    assert router.first_token_seconds(endpoint, health=book) == pytest.approx(0.4)  # 4 x 100
    book = HealthBook()
    for ms in [100] * 19 + [400, 400]:  # 2 in 21 slow: the p95 is 400 ms
        book.record_first_token(endpoint.key, ms)
    for speed in [50] + [100] * 19:
        book.record_speed(endpoint.key, speed)
    assert router.first_token_seconds(endpoint, health=book) == pytest.approx(1.6)
    # The slow end of its speeds (50 tokens/s) sizes a non-streamed answer.
    assert router.answer_seconds(endpoint, output_cap=100, health=book) == pytest.approx(3.6)
    limits.ROUTING_ATTEMPT_TIMEOUT = 2.0
    assert router.answer_seconds(endpoint, output_cap=100, health=book) == 2.0
    assert router.first_token_seconds(endpoint, reasoning=True, health=book) == 2.0


def test_the_platforms_published_figures_stand_in_for_a_fresh_process(endpoint, limits):
    book = HealthBook()
    book.set_measured(
        {endpoint.key: {"ttft_ms_p50": 200, "ttft_ms_p95": 500, "throughput_p50": 40}}
    )
    assert router.first_token_seconds(endpoint, health=book) == pytest.approx(2.0)
    assert router.answer_seconds(endpoint, output_cap=40, health=book) == pytest.approx(3.0)
