"""The playground in a real browser against the served gateway: pick a model, chat, see the
streamed reply with the provider that answered, its latency and its cost."""

from __future__ import annotations

import re

import pytest

from routing.services import catalog_load
from routing.snapshot import catalog
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_chat_in_the_playground(page, asgi_server, sim, alice):
    catalog_load()
    catalog.invalidate()
    base = asgi_server.url
    page.goto(f"{base}/accounts/login/")
    page.locator("input[name=login]").fill(alice.user.email)
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name=re.compile("sign in|log in", re.I)).click()
    page.wait_for_url(re.compile(r"/o/[0-9a-f-]{36}/$"))

    page.get_by_role("link", name="Playground").click()
    page.get_by_test_id("pg-model").select_option("anthropic/claude-3.5-haiku")
    page.get_by_test_id("pg-input").fill("Say something nice")
    page.get_by_test_id("pg-send").click()

    reply = page.get_by_test_id("pg-reply").last
    cost = reply.get_by_test_id("pg-cost")
    cost.wait_for()
    assert reply.get_by_test_id("pg-reply-text").inner_text().strip()
    assert reply.get_by_test_id("pg-reply-provider").inner_text() == "Anthropic"
    assert reply.get_by_test_id("pg-reply-simulated").is_visible()
    assert re.search(r"\$0\.\d+", cost.inner_text())
    assert reply.get_by_test_id("pg-ttft").inner_text().endswith("ms")
    assert page.console_errors == []


def test_the_playground_speaks_anthropics_messages_api_and_shows_the_raw_exchange(
    page, asgi_server, sim, alice
):
    catalog_load()
    catalog.invalidate()
    base = asgi_server.url
    page.goto(f"{base}/accounts/login/")
    page.locator("input[name=login]").fill(alice.user.email)
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name=re.compile("sign in|log in", re.I)).click()
    page.wait_for_url(re.compile(r"/o/[0-9a-f-]{36}/$"))
    page.goto(f"{base}/o/{alice.org.id}/playground/")

    page.get_by_test_id("pg-api").select_option("messages")
    page.get_by_test_id("pg-system").fill("Be kind.")
    page.get_by_test_id("pg-input").fill("Say something nice")
    page.get_by_test_id("pg-send").click()
    reply = page.get_by_test_id("pg-reply").last
    reply.get_by_test_id("pg-cost").wait_for()
    assert reply.get_by_test_id("pg-reply-text").inner_text().strip()
    assert reply.get_by_test_id("pg-reply-provider").inner_text() == "Google AI Studio"
    raw_request = reply.get_by_test_id("pg-raw-request").text_content()
    assert raw_request.startswith("POST /v1/messages")
    assert '"system": "Be kind."' in raw_request and '"max_tokens": 512' in raw_request
    raw_response = reply.get_by_test_id("pg-raw-response").text_content()
    assert "event: message_start" in raw_response and "event: message_stop" in raw_response

    # The conversation goes on in the other API, with its history.
    page.get_by_test_id("pg-api").select_option("chat")
    page.get_by_test_id("pg-input").fill("And again")
    page.get_by_test_id("pg-send").click()
    second = page.get_by_test_id("pg-reply").nth(1)
    second.get_by_test_id("pg-cost").wait_for()
    raw = second.get_by_test_id("pg-raw-request").text_content()
    assert raw.startswith("POST /v1/chat/completions")
    assert '"role": "system"' in raw and "Say something nice" in raw
    assert "data: [DONE]" in second.get_by_test_id("pg-raw-response").text_content()
    assert page.console_errors == []
