"""The playground: the page, and chats through its session-authenticated endpoint, which runs
the same gateway path as /v1/chat/completions (against the provider simulator)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client
from django.urls import reverse

from accounts.models import Membership, Role
from routing.health import health_book
from routing.http import close_client
from routing.policy import routing_policy_update
from routing.selectors import policy_cache
from routing.services import catalog_load
from routing.views import playground_key
from tests.factories import UserFactory

HERO = "google/gemini-3.1-flash-lite"


@pytest.fixture(autouse=True)
def _fresh_routing_state():
    # Both outlive a test: another test's failing provider must not reorder this one's.
    policy_cache.clear_local()
    health_book.reset()
    yield
    policy_cache.clear_local()
    health_book.reset()


@pytest.fixture
def catalog_loaded(db):
    catalog_load()


@pytest.fixture
def viewer(alice):
    user = UserFactory(email="vera@example.com")
    Membership.objects.create(organization=alice.org, user=user, role=Role.VIEWER)
    return user


def _page(org):
    return reverse("org_playground", kwargs={"org_id": org.id})


def _chat_url(org):
    return reverse("playground_chat", kwargs={"org_id": org.id})


def _body(**overrides):
    body = {
        "model": HERO,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello to the playground."},
        ],
        "strategy": "price",
        "provider": None,
        "max_tokens": 64,
    }
    body.update(overrides)
    return body


def _events(raw: bytes) -> list:
    """SSE frames → parsed chunks, with the final "[DONE]" kept as the string."""
    events = []
    for frame in raw.decode().split("\n\n"):
        data = [line[len("data: ") :] for line in frame.split("\n") if line.startswith("data: ")]
        if data:
            text = "\n".join(data)
            events.append(text if text == "[DONE]" else json.loads(text))
    return events


def _chat(user, org, body, *, headers=None):
    """POSTs through Django's AsyncClient (the endpoint is an async view) and reads the whole
    stream. Run under async_to_sync, so the view's ORM calls share the test's transaction."""

    async def run():
        client = AsyncClient()
        if user is not None:
            await client.aforce_login(user)
        try:
            response = await client.post(
                _chat_url(org), body, content_type="application/json", headers=headers or {}
            )
            if response.streaming:
                content = b"".join([chunk async for chunk in response.streaming_content])
            else:
                content = response.content
        finally:
            await close_client()  # the upstream client belongs to this short-lived loop
        return response, content

    return async_to_sync(run)()


# The page ------------------------------------------------------------------------------------


def test_the_page_offers_the_catalogs_chat_models(alice, catalog_loaded, login):
    response = login(alice.user).get(_page(alice.org))
    assert response.status_code == 200
    html = response.content.decode()
    for model_id in (HERO, "openai/gpt-4.1-mini", "anthropic/claude-3.5-haiku"):
        assert f'<option value="{model_id}"' in html
    assert "text-embedding-3-small" not in html  # not a chat model
    assert f'<option value="{HERO}" selected>' in html  # the hero model is preselected
    assert 'id="playground-data"' in html
    assert "js/playground.js" in html
    assert 'data-can-chat="true"' in html
    assert reverse("routing_settings", kwargs={"org_id": alice.org.id}) in html
    data = response.context["playground_data"]
    assert data["chatUrl"] == _chat_url(alice.org)
    providers = {p["slug"]: p for p in data["models"][HERO]["providers"]}
    assert {"google-ai-studio", "vertex-ai", "openrouter", "private-vllm"} <= set(providers)
    assert all(p["simulated"] for p in providers.values())  # tests never reach a real provider


def test_the_organizations_default_strategy_is_preselected(alice, catalog_loaded, login):
    routing_policy_update(
        organization=alice.org,
        actor=alice.user,
        strategy="latency",
        provider_order=[],
        ignored_providers=[],
        allow_fallbacks=True,
    )
    html = login(alice.user).get(_page(alice.org)).content.decode()
    assert 'value="latency" data-help="' in html
    assert "selected>Latency (organization default)" in html


def test_without_a_catalog_the_page_says_how_to_load_it(alice, login):
    html = login(alice.user).get(_page(alice.org)).content.decode()
    assert "load_catalog" in html
    assert "js/playground.js" not in html


def test_a_viewer_sees_the_page_but_not_a_working_composer(alice, viewer, catalog_loaded, login):
    html = login(viewer).get(_page(alice.org)).content.decode()
    assert 'data-testid="pg-readonly"' in html
    assert 'data-can-chat="false"' in html


def test_another_tenant_gets_404_for_the_page_and_the_chat(alice, charlie, catalog_loaded, login):
    assert login(charlie.user).get(_page(alice.org)).status_code == 404
    response, content = _chat(charlie.user, alice.org, _body())
    assert response.status_code == 404
    assert json.loads(content)["error"]["code"] == "not_found"


def test_an_unknown_organization_is_404(alice, catalog_loaded):
    response, _ = _chat(alice.user, type("Org", (), {"id": uuid.uuid4()})(), _body())
    assert response.status_code == 404


def test_a_viewer_may_not_chat(alice, viewer, catalog_loaded):
    response, content = _chat(viewer, alice.org, _body())
    assert response.status_code == 403
    assert json.loads(content)["error"]["code"] == "permission_denied"


def test_an_anonymous_chat_is_refused(alice, catalog_loaded):
    response, _ = _chat(None, alice.org, _body())
    assert response.status_code == 401


def test_the_chat_endpoint_is_csrf_protected(alice, catalog_loaded):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice.user)
    response = client.post(_chat_url(alice.org), _body(), content_type="application/json")
    assert response.status_code == 403


def test_the_chat_endpoint_takes_only_post(alice, catalog_loaded, login):
    assert login(alice.user).get(_chat_url(alice.org)).status_code == 405


# Chatting against the simulator --------------------------------------------------------------


def test_a_streamed_chat_names_its_provider_and_ends_with_the_cost(alice, catalog_loaded, sim):
    response, content = _chat(alice.user, alice.org, _body())

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    events = _events(content)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )
    assert text.strip()
    providers = {c["provider"] for c in chunks}
    assert len(providers) == 1
    # The price strategy picks the hero model's cheapest provider.
    assert providers == {"google-ai-studio"}
    assert all(c["model"] == HERO for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("gen-")
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert Decimal(str(usage["cost"])) > 0
    assert sim.stats("google-ai-studio")["requests"] == 1


def test_a_pinned_provider_answers(alice, catalog_loaded, sim):
    response, content = _chat(alice.user, alice.org, _body(provider="vertex-ai"))
    assert response.status_code == 200
    chunks = _events(content)[:-1]
    assert {c["provider"] for c in chunks} == {"vertex-ai"}
    assert sim.stats("vertex-ai")["requests"] == 1
    assert sim.stats("google-ai-studio")["requests"] == 0


def test_the_conversation_history_is_sent_along(alice, catalog_loaded, sim):
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me more."},
    ]
    response, content = _chat(alice.user, alice.org, _body(messages=history))
    assert response.status_code == 200
    assert _events(content)[-1] == "[DONE]"


def test_a_failing_provider_is_routed_around_before_the_first_byte(alice, catalog_loaded, sim):
    sim.set("google-ai-studio", error_rate=1, error_kind="500")
    response, content = _chat(alice.user, alice.org, _body())
    assert response.status_code == 200
    providers = {c["provider"] for c in _events(content)[:-1]}
    assert providers and "google-ai-studio" not in providers


def test_a_stream_that_breaks_ends_with_an_error_chunk(alice, catalog_loaded, sim):
    sim.set("openrouter", error_rate=1, error_kind="cut", cut_after_tokens=3)
    response, content = _chat(alice.user, alice.org, _body(provider="openrouter"))
    assert response.status_code == 200
    events = _events(content)
    assert events[-1] == "[DONE]"
    last = events[-2]
    assert last["choices"][0]["finish_reason"] == "error"
    assert last["error"]["message"]
    assert "cost" in last["usage"]


def test_gateway_errors_come_back_as_json_in_the_openai_shape(alice, catalog_loaded, sim):
    response, content = _chat(alice.user, alice.org, _body(model="google/gemini-nope"))
    assert response.status_code == 404
    error = json.loads(content)["error"]
    assert error["code"] == "model_not_found"
    assert error["type"] == "not_found_error"

    response, content = _chat(alice.user, alice.org, _body(max_tokens=10_000_000))
    assert response.status_code == 400
    assert json.loads(content)["error"]["param"] == "max_tokens"

    response, content = _chat(alice.user, alice.org, _body(strategy="fastest"))
    assert response.status_code == 400

    response, content = _chat(alice.user, alice.org, _body(messages=[]))
    assert response.status_code == 400
    assert json.loads(content)["error"]["param"] == "messages"


def test_every_provider_failing_is_a_502_listing_the_attempts(alice, catalog_loaded, sim):
    sim.set("vertex-ai", error_rate=1, error_kind="500")
    response, content = _chat(alice.user, alice.org, _body(provider="vertex-ai"))
    assert response.status_code == 502
    error = json.loads(content)["error"]
    assert error["metadata"]["attempts"]
    assert {a["provider"] for a in error["metadata"]["attempts"]} == {"vertex-ai"}


def test_the_organizations_rate_limit_applies(alice, catalog_loaded, sim):
    alice.org.rpm_limit = 1
    alice.org.save(update_fields=["rpm_limit"])
    first, _ = _chat(alice.user, alice.org, _body())
    second, content = _chat(alice.user, alice.org, _body())
    assert first.status_code == 200
    assert second.status_code == 429
    assert json.loads(content)["error"]["code"] == "rate_limit_exceeded"
    assert second["retry-after"]


def test_the_playground_key_is_stable_per_user_and_carries_the_org_limits(alice, bob):
    alice.org.rpm_limit, alice.org.tpm_limit = 30, 9000
    key = playground_key(alice.org, alice.user)
    assert key == playground_key(alice.org, alice.user)
    assert key.key_id != playground_key(alice.org, bob.user).key_id
    assert key.name == "Playground"
    assert key.organization_id == alice.org.id
    assert (key.rpm_limit, key.tpm_limit, key.spend_limit_nanousd) == (None, None, None)
    assert (key.org_rpm_limit, key.org_tpm_limit) == (30, 9000)
    assert key.allowed_models == ()


def test_the_messages_api_answers_in_anthropics_events(alice, catalog_loaded, sim):
    body = {
        "api": "messages",
        "request": {
            "model": HERO,
            "max_tokens": 8,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hi"}],
        },
    }
    response, content = _chat(alice.user, alice.org, body)
    assert response.status_code == 200
    text = content.decode()
    assert text.startswith("event: message_start")
    assert "event: content_block_delta" in text and text.rstrip().endswith(
        '{"type":"message_stop"}'
    )


def test_an_unknown_api_or_a_bad_messages_request_is_a_400(alice, catalog_loaded, sim):
    response, _ = _chat(alice.user, alice.org, {"api": "soap", "request": {}})
    assert response.status_code == 400
    missing, _ = _chat(
        alice.user, alice.org, {"api": "messages", "request": {"model": HERO, "messages": []}}
    )
    assert missing.status_code == 400
    assert "max_tokens" in missing.json()["error"]["message"]
