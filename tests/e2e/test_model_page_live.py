"""The public model page in a real browser: the platform's request counter moves after anyone's
API call, without reloading, for a visitor who is not logged in."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HERO = "google/gemini-3.1-flash-lite"


def test_the_model_pages_totals_move_after_an_api_call(page, gateway):
    base_url, secret = gateway
    site = base_url.removesuffix("/v1")
    page.goto(f"{site}/models/{HERO}/")
    requests = page.get_by_test_id("total-requests")
    expect(requests).to_have_text("0")
    expect(page.get_by_test_id("platform-totals")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("simulated").first).to_be_visible()
    page.evaluate("window.__sameDocument = true")

    for _ in range(2):
        response = httpx.post(
            f"{base_url}/chat/completions",
            json={
                "model": HERO,
                "messages": [{"role": "user", "content": "hello"}],
                "max_tokens": 8,
            },
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        )
        assert response.status_code == 200
    completion_tokens = response.json()["usage"]["completion_tokens"]

    expect(requests).to_have_text("2", timeout=5_000)
    expect(page.get_by_test_id("total-uptime")).to_have_text("100%")
    assert (
        int(page.get_by_test_id("total-completion-tokens").inner_text().replace(",", ""))
        >= completion_tokens
    )
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    assert page.console_errors == []
