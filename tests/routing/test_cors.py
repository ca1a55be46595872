"""CORS on /v1 (issue 13, point 6): browser apps call the API from the origins the key, or
its organization, allows; a preflight is answered; other origins are refused with a 403
they can read. Over HTTP here; in a browser in tests/e2e/test_browser_cors.py."""

from __future__ import annotations

import httpx
import pytest

from accounts import services as account_services
from accounts.exceptions import AccountsError

HERO = "google/gemini-3.1-flash-lite"
BODY = {"model": HERO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def _chat(base_url: str, secret: str, origin: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}"}
    if origin:
        headers["Origin"] = origin
    return httpx.post(f"{base_url}/chat/completions", json=BODY, headers=headers, timeout=30)


def test_a_preflight_is_answered_for_any_origin(gateway):
    base_url, _ = gateway
    response = httpx.options(
        f"{base_url}/messages",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key, content-type, anthropic-version",
        },
        timeout=10,
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "x-api-key" in response.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in response.headers


def test_origins_are_the_keys_or_else_the_organizations(gateway, alice):
    base_url, secret = gateway
    # Nothing allowed yet: a page's request is refused, readably; an SDK's (no Origin) isn't.
    refused = _chat(base_url, secret, "https://app.example.com")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "origin_not_allowed"
    assert refused.headers["access-control-allow-origin"] == "https://app.example.com"
    assert _chat(base_url, secret, None).status_code == 200

    account_services.organization_set_allowed_origins(
        organization=alice.org, actor=alice.user, origins=["https://App.Example.com/"]
    )
    allowed = _chat(base_url, secret, "https://app.example.com")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "x-request-id" in allowed.headers["access-control-expose-headers"]
    assert _chat(base_url, secret, "https://evil.example").status_code == 403

    # A key's own list replaces the organization's.
    key, own = account_services.api_key_create(
        organization=alice.org,
        created_by=alice.user,
        name="widget",
        allowed_origins=["https://widget.example"],
    )
    assert _chat(base_url, own, "https://widget.example").status_code == 200
    assert _chat(base_url, own, "https://app.example.com").status_code == 403
    account_services.api_key_update(api_key=key, actor=alice.user, allowed_origins=["*"])
    assert _chat(base_url, own, "https://anything.example").status_code == 200


def test_origins_are_checked_when_saved(alice):
    with pytest.raises(AccountsError, match="not an origin"):
        account_services.organization_set_allowed_origins(
            organization=alice.org, actor=alice.user, origins=["app.example.com/path"]
        )


def test_the_settings_page_saves_the_organizations_origins(client, alice, bob, charlie):
    client.force_login(alice.user)
    url = f"/o/{alice.org.id}/settings/"
    page = client.get(url)
    assert b"Browser access" in page.content
    bad = client.post(url, {"action": "origins", "allowed_origins": "not an origin"})
    assert bad.status_code == 200 and b"is not an origin" in bad.content
    saved = client.post(url, {"action": "origins", "allowed_origins": "https://a.example\n*"})
    assert saved.status_code == 302
    alice.org.refresh_from_db()
    assert alice.org.allowed_origins == ["https://a.example", "*"]
    # Another tenant's settings are not there for alice.
    other = client.post(
        f"/o/{charlie.org.id}/settings/", {"action": "origins", "allowed_origins": "*"}
    )
    assert other.status_code == 404
    charlie.org.refresh_from_db()
    assert charlie.org.allowed_origins == []
    # A developer of alice's organization may not change them.
    client.force_login(bob.user)
    assert client.post(url, {"action": "origins", "allowed_origins": ""}).status_code == 403
    alice.org.refresh_from_db()
    assert alice.org.allowed_origins == ["https://a.example", "*"]
