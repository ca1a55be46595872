"""Fallback across providers under real simulated faults, the circuit breaker, hedging, and the
routing preferences, all through the served gateway and the official openai SDK."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

HERO = "google/gemini-3.1-flash-lite"
HELLO = [{"role": "user", "content": "hello"}]
# The hero model's providers, cheapest first.
BY_PRICE = ["google-ai-studio", "vertex-ai", "openrouter", "private-vllm"]


def ask(client, **kwargs):
    return client.chat.completions.create(model=HERO, messages=HELLO, max_tokens=8, **kwargs)


@pytest.mark.parametrize("kind", ["500", "503", "429", "reset"])
def test_a_failing_provider_is_routed_around(openai_client, sim, generation_events, kind):
    sim.set("google-ai-studio", error_rate=1, error_kind=kind, retry_after=1)
    reply = ask(openai_client)
    assert reply.model_extra["provider"] == "vertex-ai"
    assert reply.choices[0].message.content
    attempts = generation_events[-1].attempts
    assert [a["provider"] for a in attempts] == ["google-ai-studio", "vertex-ai"]
    assert attempts[0]["outcome"] != "ok" and attempts[1]["outcome"] == "ok"
    assert sim.stats("google-ai-studio")["requests"] == 1


def test_a_stalled_provider_times_out_and_falls_back(openai_client, sim, settings):
    settings.ROUTING_ATTEMPT_TIMEOUT = 0.5
    sim.set("google-ai-studio", error_rate=1, error_kind="stall")
    started = time.monotonic()
    reply = ask(openai_client)
    assert reply.model_extra["provider"] == "vertex-ai"
    assert time.monotonic() - started < 5


def test_a_rate_limited_provider_cools_down(openai_client, sim):
    sim.set("google-ai-studio", error_rate=1, error_kind="429", retry_after=30)
    assert ask(openai_client).model_extra["provider"] == "vertex-ai"
    assert ask(openai_client).model_extra["provider"] == "vertex-ai"
    # The second request skipped it: it said to come back in 30 s.
    assert sim.stats("google-ai-studio")["requests"] == 1


def test_stream_cut_before_the_first_byte_falls_back(openai_client, sim):
    sim.set("google-ai-studio", error_rate=1, error_kind="cut", cut_after_tokens=0)
    chunks = list(ask(openai_client, stream=True))
    assert {c.model_extra["provider"] for c in chunks} == {"vertex-ai"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_stream_cut_midway_ends_with_an_error_chunk(gateway, sim, generation_events):
    base_url, secret = gateway
    sim.set("google-ai-studio", error_rate=1, error_kind="cut", cut_after_tokens=3)
    with httpx.stream(
        "POST",
        f"{base_url}/chat/completions",
        json={"model": HERO, "messages": HELLO, "max_tokens": 16, "stream": True},
        headers={"Authorization": f"Bearer {secret}"},
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    import json

    last = json.loads(lines[-2].removeprefix("data: "))
    assert last["choices"][0]["finish_reason"] == "error"
    assert last["error"]["code"] == "stream_cut"
    delivered = [json.loads(x.removeprefix("data: ")) for x in lines[:-2]]
    assert delivered and all(c["provider"] == "google-ai-studio" for c in delivered)
    # Billed for what was delivered, not for nothing.
    assert generation_events[-1].error == "stream_cut"
    assert generation_events[-1].usage.completion_tokens >= 3


def test_every_provider_failing_gives_502_with_each_attempt(openai_client, sim, generation_events):
    for slug in BY_PRICE:
        sim.set(slug, error_rate=1, error_kind="500")
    with pytest.raises(openai.InternalServerError) as excinfo:
        ask(openai_client)
    assert excinfo.value.status_code == 502
    error = excinfo.value.body
    assert error["code"] == "upstream_error"
    attempts = error["metadata"]["attempts"]
    assert [a["provider"] for a in attempts] == BY_PRICE
    assert all(a["outcome"] == "overloaded" and a["status"] == 500 for a in attempts)
    # The failure is recorded too (logs, error rates, uptime), at no cost.
    failure = generation_events[-1]
    assert failure.error == "overloaded"
    assert failure.cost_nanousd == 0
    assert len(failure.attempts) == 4


def test_a_bad_request_is_not_retried_elsewhere(gateway, sim):
    """A failure that would happen anywhere ends the call at once."""
    base_url, secret = gateway
    response = httpx.post(
        f"{base_url}/chat/completions",
        json={
            "model": "anthropic/claude-3.5-haiku",
            "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
        },
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 400
    assert sim.stats("openrouter")["requests"] == 0


def test_the_circuit_opens_and_recovers(openai_client, sim, settings):
    settings.ROUTING_BREAKER_COOLDOWN_SECONDS = 0.5
    sim.set("google-ai-studio", error_rate=1, error_kind="500")
    for _ in range(3):
        assert ask(openai_client).model_extra["provider"] == "vertex-ai"
    assert sim.stats("google-ai-studio")["requests"] == 3
    # Open: skipped without being called.
    for _ in range(3):
        assert ask(openai_client).model_extra["provider"] == "vertex-ai"
    assert sim.stats("google-ai-studio")["requests"] == 3
    # Healthy again; after the cooldown one probe goes through and closes the circuit.
    sim.set("google-ai-studio", error_rate=0)
    time.sleep(0.6)
    assert ask(openai_client).model_extra["provider"] == "google-ai-studio"
    assert ask(openai_client).model_extra["provider"] == "google-ai-studio"
    assert sim.stats("google-ai-studio")["requests"] == 5


def test_hedging_races_a_second_provider_when_the_first_is_slow(openai_client, sim):
    sim.set("google-ai-studio", latency_ms=3000)
    started = time.monotonic()
    reply = ask(openai_client, extra_body={"hedge_after_ms": 100})
    assert time.monotonic() - started < 2
    assert reply.model_extra["provider"] == "vertex-ai"


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ({"order": ["openrouter", "vertex-ai"]}, "openrouter"),
        ({"only": ["private-vllm"]}, "private-vllm"),
        ({"ignore": ["google-ai-studio", "vertex-ai"]}, "openrouter"),
        ({"sort": "latency"}, "private-vllm"),  # 250 ms nominal, the fastest to answer
        ({"sort": "throughput"}, "google-ai-studio"),  # 240 tokens/s nominal
        ({"max_price": {"prompt": 0.052}, "sort": "latency"}, "google-ai-studio"),
    ],
)
def test_routing_preferences_pick_the_endpoint(openai_client, provider, expected):
    assert ask(openai_client, extra_body={"provider": provider}).model_extra["provider"] == expected


def test_no_fallbacks_when_the_caller_forbids_them(openai_client, sim):
    sim.set("openrouter", error_rate=1, error_kind="500")
    with pytest.raises(openai.InternalServerError):
        ask(
            openai_client,
            extra_body={"provider": {"order": ["openrouter"], "allow_fallbacks": False}},
        )
    assert sim.stats("vertex-ai")["requests"] == 0


def test_a_models_list_falls_back_across_models(openai_client, sim):
    for slug in BY_PRICE:
        sim.set(slug, error_rate=1, error_kind="503")
    reply = ask(openai_client, extra_body={"models": ["openai/gpt-4.1-mini"]})
    assert reply.model == "openai/gpt-4.1-mini"
    assert reply.model_extra["provider"] == "openai"


def test_context_window_filters_small_endpoints(openai_client, generation_events):
    # ~40K tokens: over the private deployment's 32K window, within the others' 128K.
    long = "word " * 32_000
    reply = openai_client.chat.completions.create(
        model=HERO,
        messages=[{"role": "user", "content": long}],
        max_tokens=8,
        extra_body={"provider": {"order": ["private-vllm"]}},
    )
    assert reply.model_extra["provider"] != "private-vllm"


def test_the_organization_default_routing_applies(openai_client, alice, sim):
    from routing.policy import routing_policy_update

    routing_policy_update(
        organization=alice.org,
        actor=alice.user,
        strategy="price",
        provider_order=[],
        ignored_providers=["google-ai-studio"],
        allow_fallbacks=True,
    )
    assert ask(openai_client).model_extra["provider"] == "vertex-ai"
    # The organization's policy is a ceiling: a key can narrow it, never undo it.
    for provider in (
        {"only": ["google-ai-studio"]},
        {"order": ["google-ai-studio"], "allow_fallbacks": False},
    ):
        with pytest.raises(openai.NotFoundError) as refused:
            ask(openai_client, extra_body={"provider": provider})
        assert refused.value.body["code"] == "no_endpoint"
    narrowed = ask(openai_client, extra_body={"provider": {"ignore": ["vertex-ai"]}})
    assert narrowed.model_extra["provider"] not in ("google-ai-studio", "vertex-ai")
    assert sim.stats("google-ai-studio")["requests"] == 0
