"""An API call through the gateway flows to its log row, its attempts, its rollup and a
WebSocket message on the organization's live stream, through the real background writer (the
embedded default's in-process thread, or Celery with Redis), within 2 seconds.
Only members of the organization can join its stream."""

from __future__ import annotations

import time

import httpx
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from config.asgi import application
from observability.models import RequestAttempt, RequestLog, UsageRollup
from observability.writer import flush_now
from routing.http import close_client
from tests.observability.helpers import session_cookie, wait_until, ws_headers

HERO = "google/gemini-3.1-flash-lite"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice_cookie(alice, transactional_db) -> bytes:
    return session_cookie(alice.user)


@pytest.fixture
def charlie_cookie(charlie, transactional_db) -> bytes:
    return session_cookie(charlie.user)


async def _join(org_id, cookie=None) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application, f"/ws/orgs/{org_id}/live/", headers=ws_headers(cookie)
    )


async def test_an_api_call_reaches_its_log_rollup_and_the_live_stream(gateway, alice, alice_cookie):
    _, secret = gateway
    communicator = await _join(alice.org.id, alice_cookie)
    connected, _ = await communicator.connect()
    assert connected
    snapshot = await communicator.receive_json_from(timeout=5)
    assert snapshot["type"] == "snapshot"
    assert snapshot["figures"]["requests"] == 0

    # The call runs on this test's event loop (in-process ASGI), where the consumer lives too:
    # the embedded default's in-memory channel layer only reaches consumers of its own loop.
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        response = await client.post(
            "/v1/chat/completions",
            json={"model": HERO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
            headers={"Authorization": f"Bearer {secret}"},
        )
    answered = time.monotonic()
    assert response.status_code == 200, response.text
    generation_id = response.json()["id"]

    update = await communicator.receive_json_from(timeout=2)
    assert time.monotonic() - answered < 2
    assert update["type"] == "update"
    assert update["figures"]["requests"] == 1
    assert update["figures"]["completion_tokens"] == response.json()["usage"]["completion_tokens"]
    assert update["recent"][0]["id"] == generation_id
    assert update["delta"]["by_model"][0]["requests"] == 1
    await communicator.disconnect()
    await close_client()

    log = await RequestLog.objects.aget(generation_id=generation_id)
    assert log.organization_id == alice.org.id
    assert log.status == "ok" and log.model == HERO
    assert log.prompt_tokens == response.json()["usage"]["prompt_tokens"]
    assert await RequestAttempt.objects.filter(log=log).acount() == 1
    rollup = await UsageRollup.objects.aget(organization=alice.org)
    assert rollup.requests == 1 and rollup.provider == log.provider


def test_a_forced_fallback_shows_two_attempts(openai_client, sim, alice):
    sim.set("google-ai-studio", error_rate=1, error_kind="500")
    reply = openai_client.chat.completions.create(
        model=HERO, messages=[{"role": "user", "content": "hi"}], max_tokens=8
    )
    assert reply.model_extra["provider"] == "vertex-ai"

    def written():
        flush_now()
        return RequestLog.objects.filter(generation_id=reply.id).first()

    log = wait_until(written)
    assert log.provider == "vertex-ai" and log.attempt_count == 2
    attempts = list(log.attempts.order_by("index"))
    assert [(a.provider, a.outcome) for a in attempts] == [
        ("google-ai-studio", "overloaded"),
        ("vertex-ai", "ok"),
    ]
    assert attempts[0].http_status == 500


def test_a_streamed_call_is_logged_as_streamed(openai_client, alice):
    chunks = list(
        openai_client.chat.completions.create(
            model=HERO,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    generation_id = chunks[0].id

    def written():
        flush_now()
        return RequestLog.objects.filter(generation_id=generation_id).first()

    log = wait_until(written)
    assert log.streamed and log.status == "ok"
    assert log.completion_tokens == chunks[-1].usage.completion_tokens


async def test_another_organizations_member_cannot_join_the_stream(alice, charlie_cookie):
    communicator = await _join(alice.org.id, charlie_cookie)
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4403


async def test_an_anonymous_visitor_cannot_join_the_stream(alice):
    communicator = await _join(alice.org.id)
    connected, code = await communicator.connect()
    assert (connected, code) == (False, 4403)


async def test_a_member_joins_and_gets_the_current_figures(bob, transactional_db):
    cookie = await sync_to_async(session_cookie)(bob.user)
    communicator = await _join(bob.org.id, cookie)
    connected, _ = await communicator.connect()
    assert connected
    message = await communicator.receive_json_from(timeout=5)
    assert message["type"] == "snapshot" and "uptime" in message["figures"]
    await communicator.disconnect()
