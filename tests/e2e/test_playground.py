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
