"""What a provider says in its errors can name our account there: callers get our words for it
(streamed or not, in the error and in each attempt), the request log keeps the provider's."""

from __future__ import annotations

import httpx
import pytest
from django.urls import reverse

from observability.models import RequestAttempt, RequestLog
from observability.writer import flush_now, log_buffer

HERO = "google/gemini-3.1-flash-lite"
BY_PRICE = ["google-ai-studio", "vertex-ai", "openrouter", "private-vllm"]
SECRET = "project=llmapi-prod-7731 account=acct_9f8e7d6c key=sk-live-4f2a9b0c8d1e"
BODY = {"model": HERO, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


def _logged_messages(generation_id: str) -> list[str]:
    with log_buffer.paused():
        flush_now()
    log = RequestLog.objects.get(generation_id=generation_id)
    return list(RequestAttempt.objects.filter(log=log).values_list("message", flat=True))


@pytest.mark.parametrize("stream", [False, True])
def test_callers_never_see_what_a_failing_provider_said(gateway, sim, stream, generation_events):
    base_url, secret = gateway
    for slug in BY_PRICE:
        sim.set(slug, error_rate=1, error_kind="500", error_detail=SECRET)
    # The simulator does say it.
    direct = httpx.post(
        f"{sim.base_url('openrouter')}/chat/completions",
        json=BODY,
        headers={"Authorization": "Bearer simulated"},
    )
    assert SECRET in direct.text

    answer = httpx.post(
        f"{base_url}/chat/completions",
        json=BODY | {"stream": stream},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert answer.status_code == 502
    assert "acct_9f8e7d6c" not in answer.text and "sk-live" not in answer.text
    error = answer.json()["error"]
    assert error["code"] == "upstream_error"
    attempts = error["metadata"]["attempts"]
    assert [a["provider"] for a in attempts] == BY_PRICE
    assert all(a["message"] == "The provider failed or is overloaded. (HTTP 500)" for a in attempts)

    # The request log keeps the provider's words, for us.
    generation_id = generation_events[-1].generation_id
    logged = _logged_messages(generation_id)
    assert len(logged) == 4 and all(SECRET in m for m in logged)

    # ...and shows the organization our words, in the API and on the log page.
    looked_up = httpx.get(
        f"{base_url}/generation",
        params={"id": generation_id},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert looked_up.status_code == 200
    assert "acct_9f8e7d6c" not in looked_up.text
    assert looked_up.json()["data"]["attempts"][0]["message"].startswith("The provider failed")


def test_a_fallback_served_answer_says_nothing_of_the_failed_attempt(
    gateway, sim, generation_events, client, alice
):
    base_url, secret = gateway
    sim.set("google-ai-studio", error_rate=1, error_kind="429", error_detail=SECRET)
    with httpx.stream(
        "POST",
        f"{base_url}/chat/completions",
        json=BODY | {"stream": True},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    ) as streamed:
        text = streamed.read().decode()
    assert streamed.status_code == 200
    assert '"provider":"vertex-ai"' in text.replace(" ", "")
    assert "acct_9f8e7d6c" not in text

    generation_id = generation_events[-1].generation_id
    logged = _logged_messages(generation_id)
    assert SECRET in logged[0]

    client.force_login(alice.user)
    page = client.get(
        reverse("org_log_detail", kwargs={"org_id": alice.org.id, "generation_id": generation_id})
    )
    assert page.status_code == 200
    content = page.content.decode()
    assert "acct_9f8e7d6c" not in content
    assert "The provider is rate limiting requests. (HTTP 429)" in content


def test_the_simulator_refuses_a_bad_error_detail(sim):
    refused = sim.client.patch("/providers/openai", json={"error_detail": 42})
    assert refused.status_code == 400
