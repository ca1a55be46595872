"""Issue #11, point 6: priced exactly as the provider charges.

Through the real request path (HTTP, the gateway, the provider simulator upstream): prompt
cache writes are billed at the cache-write price of their TTL, fields that make a provider
charge more are refused, OpenAI-wire calls never store a tenant's completions in our account,
a simulated generation costs nothing, and production never simulates a provider.
"""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from billing import selectors, services
from billing.models import LedgerEntry
from routing.models import Endpoint
from routing.snapshot import catalog

CLAUDE = "anthropic/claude-3.5-haiku"
GPT = "openai/gpt-4.1-mini"
HERO = "google/gemini-3.1-flash-lite"
NANO = Decimal(1_000_000_000)
# A system prompt long enough to be cached (the simulator caches from 32 tokens, as
# Anthropic does from 1024 or 2048).
SYSTEM = " ".join(f"rule{i}" for i in range(300))


def _post(base_url: str, secret: str, body: dict) -> httpx.Response:
    return httpx.post(
        f"{base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def _streamed(base_url: str, secret: str, body: dict) -> dict:
    """The final chunk carrying usage (and the generation id) of a streamed answer."""
    last = None
    with httpx.stream(
        "POST",
        f"{base_url}/chat/completions",
        json=body | {"stream": True, "stream_options": {"include_usage": True}},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    last = chunk
    assert last is not None
    return last


def _cached_chat(ttl: str | None = None) -> dict:
    control = {"type": "ephemeral"} | ({"ttl": ttl} if ttl else {})
    return {
        "model": CLAUDE,
        "provider": {"only": ["anthropic"]},
        "max_tokens": 16,
        "messages": [
            {
                "role": "system",
                "content": [{"type": "text", "text": SYSTEM, "cache_control": control}],
            },
            {"role": "user", "content": "hi"},
        ],
    }


def _billed(generation_id: str) -> int:
    services.usage_flush()
    return -LedgerEntry.objects.get(reference=generation_id).amount_nanousd


def _per_million(total: int) -> int:
    return (total + 500_000) // 1_000_000


@pytest.mark.parametrize(("ttl", "multiplier"), [(None, "1.25"), ("5m", "1.25"), ("1h", "2")])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_cache_writes_are_billed_at_the_cache_write_price(gateway, alice, ttl, multiplier, stream):
    """Before: the simulator reported no cache writes and the gateway billed writes at the plain
    input price (a 1.25x or 2x charge from Anthropic billed at 1x). Now writes cost 1.25x (5 min)
    or 2x (1 h) the input price; the next identical prompt reads the cache at 0.1x."""
    base_url, secret = gateway
    services.billing_account_for(organization=alice.org)
    endpoint = Endpoint.objects.get(model__public_id=CLAUDE, provider__slug="anthropic")
    write_price = endpoint.cache_write_1h_price if ttl == "1h" else endpoint.cache_write_price
    assert write_price == int(endpoint.input_price * Decimal(multiplier))
    send = _streamed if stream else lambda b, s, body: _post(b, s, body).json()

    first = send(base_url, secret, _cached_chat(ttl))
    usage = first["usage"]
    written = usage["prompt_tokens_details"]["cache_write_tokens"]
    assert written >= 300  # the whole system prompt went to the cache
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    expected = _per_million(
        (usage["prompt_tokens"] - written) * endpoint.input_price
        + written * write_price
        + usage["completion_tokens"] * endpoint.output_price
    )
    assert _billed(first["id"]) == expected
    assert Decimal(str(usage["cost"])) * NANO == expected

    second = send(base_url, secret, _cached_chat(ttl))["usage"]
    assert second["prompt_tokens_details"]["cached_tokens"] == written
    assert "cache_write_tokens" not in second["prompt_tokens_details"]
    assert selectors.billing_check() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("service_tier", "priority"),
        ("service_tier", "flex"),
        ("modalities", ["text", "audio"]),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("web_search_options", {}),
        ("prediction", {"type": "content", "content": "a long draft"}),
    ],
)
def test_fields_that_change_the_provider_price_are_refused(gateway, alice, sim, field, value):
    """Before: passed through to the provider, which charges more than the catalog price (a
    priority tier, audio tokens, web search calls, rejected prediction tokens) while we billed
    the list price. Now: 400 in the OpenAI shape naming the field, and no provider is called."""
    base_url, secret = gateway
    body = {
        "model": GPT,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 16,
        field: value,
    }
    response = _post(base_url, secret, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field
    assert error["type"] == "invalid_request_error"
    assert field in error["message"]
    assert sim.stats("openai")["requests"] == 0
    assert sim.stats("openrouter")["requests"] == 0


def test_the_standard_service_tier_is_served(gateway, sim):
    base_url, secret = gateway
    for tier in ("auto", "default"):
        body = {"model": GPT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        response = _post(base_url, secret, body | {"service_tier": tier, "modalities": ["text"]})
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_completions_are_never_stored_in_our_provider_account(gateway, sim, stream):
    """Before: the client's `store: true` (and its metadata) reached OpenAI, which kept the
    tenant's completion in our account. Now the upstream body always says store=false."""
    base_url, secret = gateway
    body = {
        "model": GPT,
        "provider": {"only": ["openai"]},
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 8,
        "store": True,
        "metadata": {"team": "red"},
    }
    if stream:
        _streamed(base_url, secret, body)
    else:
        assert _post(base_url, secret, body).status_code == 200
    upstream = sim.last_request("openai")
    assert upstream["store"] is False
    assert "metadata" not in upstream
    del body["store"], body["metadata"]
    assert _post(base_url, secret, body).status_code == 200
    assert sim.last_request("openai")["store"] is False


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_simulated_generation_costs_nothing(gateway, alice, settings, generation_events, stream):
    """Before: a generation the simulator played was billed at the endpoint's list price. Now
    (outside the test suite's own money-path setting) it costs $0: the answer says it was
    simulated, its usage is still logged, and no credit is spent."""
    settings.ROUTING_BILL_SIMULATED = False
    base_url, secret = gateway
    services.billing_account_for(organization=alice.org)
    before = selectors.ledger_sum(organization=alice.org)
    body = {"model": HERO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
    if stream:
        reply = _streamed(base_url, secret, body)
    else:
        response = _post(base_url, secret, body)
        assert response.status_code == 200
        reply = response.json()
    assert reply["simulated"] is True
    assert Decimal(str(reply["usage"]["cost"])) == 0
    assert reply["usage"]["prompt_tokens"] > 0 and reply["usage"]["completion_tokens"] > 0
    services.usage_flush()
    assert selectors.ledger_sum(organization=alice.org) == before
    usage = LedgerEntry.objects.filter(organization=alice.org, kind=LedgerEntry.Kind.USAGE)
    assert [e.amount_nanousd for e in usage] == [0]
    (event,) = [e for e in generation_events if e.generation_id == reply["id"]]
    assert event.cost_nanousd == 0 and event.usage.completion_tokens > 0


def test_production_disables_providers_without_credentials(gateway, sim, settings, monkeypatch):
    """Before: a provider without credentials was played by the simulator, in production too,
    so tenants paid for made-up answers. Now its endpoints are disabled: nothing is called."""
    settings.ROUTING_FORCE_SIMULATOR = False
    settings.ROUTING_SIMULATE_MISSING_PROVIDERS = False
    for name in (
        "GOOGLE_AI_STUDIO_API_KEY",
        "VERTEX_AI_ACCESS_TOKEN",
        "OPENROUTER_API_KEY",
        "PRIVATE_VLLM_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    catalog.invalidate()
    base_url, secret = gateway
    body = {"model": HERO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
    response = _post(base_url, secret, body)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "no_endpoint"
    assert sum(s["requests"] for s in sim.stats().values()) == 0
