"""A newcomer, in a real browser: sign up, verify, land on the dashboard, create a key, see it
once, and afterwards only its prefix…last4."""

from __future__ import annotations

import re

import pytest
from django.core import mail

from accounts import keyformat
from accounts.models import APIKey

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

KEY_RE = re.compile(r"llmapi_[0-9A-Za-z]{36}")


def test_sign_up_verify_and_create_a_key(page, asgi_server):
    base = asgi_server.url
    page.goto(f"{base}/")
    page.get_by_role("link", name=re.compile("sign up|get an api key", re.I)).first.click()

    page.locator("input[name=email]").fill("newcomer@example.com")
    page.locator("input[name=password1]").fill("a long and unusual passphrase")
    page.locator("input[name=password2]").fill("a long and unusual passphrase")
    page.get_by_role("button", name=re.compile("sign up", re.I)).click()
    page.wait_for_url(re.compile(r"/accounts/confirm-email/$"))

    # The verification mail, captured as the console would print it in development.
    assert len(mail.outbox) == 1
    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", mail.outbox[0].body).group(0)
    page.goto(link)
    page.get_by_role("button", name=re.compile("confirm", re.I)).click()

    # Verified and logged in: the dashboard of the personal organization.
    page.wait_for_url(re.compile(r"/o/[0-9a-f-]{36}/$"))
    assert page.get_by_role("link", name="API keys").is_visible()
    assert "organization" in page.get_by_test_id("org-switcher").inner_text()

    page.get_by_role("link", name="API keys").click()
    page.locator("input[name=name]").fill("my laptop")
    page.get_by_role("button", name="Create key").click()

    secret = page.get_by_test_id("new-key-secret").input_value()
    assert KEY_RE.fullmatch(secret)
    assert "won't be able to see it again" in page.get_by_test_id("new-key").inner_text()
    assert f'base_url="{base}/v1"' in page.get_by_test_id("snippet-python").inner_text()
    assert secret in page.get_by_test_id("snippet-curl").inner_text()

    # Only the hash is stored, and the key works from here on.
    key = APIKey.objects.get()
    assert key.hashed_key == keyformat.hash_key(secret)

    # Seen once: on the next visit the page holds only the prefix…last4.
    page.get_by_role("link", name="API keys").click()
    assert secret not in page.content()
    masked = page.get_by_test_id("key-masked").first.inner_text()
    assert masked == f"{secret[:11]}…{secret[-4:]}"
    assert page.console_errors == []
