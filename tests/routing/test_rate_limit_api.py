"""RPM/TPM limits as an API client sees them: OpenAI-style headers on every answer, 429 with
Retry-After when over, per key and per organization."""

from __future__ import annotations

import httpx

from accounts import services
from accounts.models import Organization

HERO = "google/gemini-3.1-flash-lite"


def _post(base_url, secret, **extra):
    return httpx.post(
        f"{base_url}/chat/completions",
        json={"model": HERO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        | extra,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def test_key_rpm_limit_headers_and_429(gateway, alice):
    base_url, _ = gateway
    _, secret = services.api_key_create(
        organization=alice.org, created_by=alice.user, name="rpm", rpm_limit=2, tpm_limit=10_000
    )
    first = _post(base_url, secret)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-limit-tokens"] == "10000"
    assert int(first.headers["x-ratelimit-remaining-tokens"]) < 10_000
    assert _post(base_url, secret).status_code == 200

    refused = _post(base_url, secret)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limit_exceeded"


def test_a_request_larger_than_the_tpm_limit_is_refused_outright(gateway, alice):
    base_url, _ = gateway
    _, secret = services.api_key_create(
        organization=alice.org, created_by=alice.user, name="tpm", tpm_limit=100
    )
    refused = _post(base_url, secret, max_tokens=500)
    assert refused.status_code == 429
    assert refused.headers.get("x-should-retry") == "false"
    assert "exceeds" in refused.json()["error"]["message"]


def test_organization_limit_is_shared_by_its_keys(
    gateway, alice, django_capture_on_commit_callbacks
):
    base_url, first_secret = gateway
    with django_capture_on_commit_callbacks(execute=True):
        services.organization_set_rate_limits(
            organization=Organization.objects.get(pk=alice.org.pk),
            actor=alice.user,
            rpm_limit=2,
            tpm_limit=None,
        )
    _, second_secret = services.api_key_create(
        organization=alice.org, created_by=alice.user, name="second"
    )
    from accounts.api_key_auth import key_cache

    key_cache.clear_local()
    assert _post(base_url, first_secret).status_code == 200
    assert _post(base_url, second_secret).status_code == 200
    assert _post(base_url, first_secret).status_code == 429


def test_an_oversized_body_is_413(gateway):
    base_url, secret = gateway
    response = httpx.post(
        f"{base_url}/chat/completions",
        content=b"{" + b" " * (21 * 1024 * 1024) + b"}",
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
