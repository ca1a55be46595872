"""Prometheus /metrics: generations, refusals and upstream attempts counted from real API
calls; the token guards it when set."""

from __future__ import annotations

import re

import httpx

from accounts import services as account_services
from accounts.models import APIKey

HERO = "google/gemini-3.1-flash-lite"


def value(text: str, name: str, **labels) -> float:
    """The sample `name{labels}` in the exposition text (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def scrape(base: str, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{base}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def _chat(base_url, secret):
    return httpx.post(
        f"{base_url}/chat/completions",
        json={"model": HERO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def test_requests_refusals_and_attempts_are_counted(gateway, sim, alice):
    base_url, secret = gateway
    server = base_url.removesuffix("/v1")
    before = scrape(server)
    sim.set("google-ai-studio", error_rate=1, error_kind="500")  # one failed attempt each
    for _ in range(2):
        assert _chat(base_url, secret).status_code == 200
    _, capped = account_services.api_key_create(
        organization=alice.org,
        created_by=alice.user,
        name="capped",
        spend_limit_nanousd=1,
        spend_limit_period=APIKey.SpendPeriod.DAILY,
    )
    assert _chat(base_url, capped).status_code == 402
    after = scrape(server)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("llmapi_requests_total", model=HERO, provider="vertex-ai", status="ok") == 2
    assert moved("llmapi_request_duration_seconds_count", model=HERO, provider="vertex-ai") == 2
    assert moved("llmapi_upstream_attempt_duration_seconds_count", provider="google-ai-studio") == 2
    assert moved("llmapi_upstream_attempt_duration_seconds_count", provider="vertex-ai") == 2
    assert moved("llmapi_requests_refused_total", reason="spend", limit="key_spend_limit") == 1
    assert re.search(r"^llmapi_log_queue_pending \d", after, re.M)


def test_the_token_guards_metrics_when_set(client, settings):
    settings.METRICS_TOKEN = "scrape-token-for-tests"
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-for-tests"})
    assert ok.status_code == 200
    assert b"llmapi_requests_total" in ok.content
