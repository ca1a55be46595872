"""The live overview in a real browser: the request counter moves after an API call, without
reloading the page (pushed over the organization's WebSocket), and the new request shows up in
the latest requests."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_overview_counter_moves_after_an_api_call(page, gateway, alice):
    base_url, secret = gateway
    site = base_url.removesuffix("/v1")
    page.goto(f"{site}/accounts/login/")
    page.locator("input[name=login]").fill(alice.user.email)
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name=re.compile("sign in|log in", re.I)).click()
    page.wait_for_url(re.compile(r"/o/[0-9a-f-]{36}/$"))

    requests = page.get_by_test_id("fig-requests")
    expect(requests).to_have_text("0")
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "live")
    page.evaluate("window.__sameDocument = true")

    response = httpx.post(
        f"{base_url}/chat/completions",
        json={
            "model": "google/gemini-3.1-flash-lite",
            "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 8,
        },
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert response.status_code == 200
    generation_id = response.json()["id"]

    expect(requests).to_have_text("1", timeout=5_000)
    recent = page.get_by_test_id("recent")
    expect(recent.locator(f'tr[data-generation="{generation_id}"]')).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    assert page.console_errors == []
