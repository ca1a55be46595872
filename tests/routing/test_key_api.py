"""GET /v1/key: the gateway's bearer authentication, seen from an API client."""

from __future__ import annotations

import pytest
from django.utils import timezone

from accounts import services
from accounts.models import APIKey


def _get(client, token=None, path="/v1/key"):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return client.get(path, **headers)


def _assert_openai_error(response, status, code=None):
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


@pytest.fixture
def key(alice):
    return services.api_key_create(
        organization=alice.org, created_by=alice.user, name="prod", rpm_limit=60
    )


def test_a_valid_key_answers_with_its_organization_and_limits(client, alice, key):
    api_key, secret = key
    response = _get(client, secret)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["id"] == str(api_key.id)
    assert data["organization_id"] == str(alice.org.id)
    assert data["limits"]["rpm"] == 60


def test_missing_key_is_401_in_the_openai_shape(client, db):
    error = _assert_openai_error(_get(client), 401)
    assert error["type"] == "authentication_error"
    assert "API key" in error["message"]


@pytest.mark.parametrize(
    "token",
    ["nonsense", "llmapi_" + "A" * 36, "sk-" + "x" * 40, ""],
)
def test_malformed_or_bad_checksum_keys_are_401(client, db, token, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = _get(client, token)
    _assert_openai_error(response, 401)


def test_revoked_key_is_401_with_a_clear_code(
    client, alice, key, django_capture_on_commit_callbacks
):
    api_key, secret = key
    assert _get(client, secret).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_revoke(api_key=api_key, actor=alice.user)
    from accounts.api_key_auth import key_cache

    key_cache.clear_local()  # this test process plays "the next second"
    _assert_openai_error(_get(client, secret), 401, code="revoked_api_key")


def test_expired_key_is_401(client, key):
    api_key, secret = key
    APIKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now())
    _assert_openai_error(_get(client, secret), 401, code="expired_api_key")


def test_unknown_v1_path_is_404_in_the_openai_shape(client, db):
    _assert_openai_error(client.get("/v1/nope"), 404, code="unknown_url")


def test_the_anthropic_sdks_x_api_key_header_is_accepted(client, alice, key):
    api_key, secret = key
    response = client.get("/v1/key", HTTP_X_API_KEY=secret)
    assert response.status_code == 200
    assert response.json()["data"]["id"] == str(api_key.id)
    _assert_openai_error(client.get("/v1/key", HTTP_X_API_KEY="nope"), 401, "invalid_api_key")


def test_x_api_key_is_accepted_before_a_body_is_read(openai_client, gateway):
    import httpx

    base_url, secret = gateway
    hello = [{"role": "user", "content": "hi"}]
    body = {"model": "google/gemini-3.1-flash-lite", "messages": hello}
    answered = httpx.post(
        f"{base_url}/chat/completions", json=body, headers={"x-api-key": secret}, timeout=30
    )
    assert answered.status_code == 200, answered.text
    refused = httpx.post(f"{base_url}/chat/completions", json=body, timeout=30)
    assert refused.status_code == 401
    assert "x-api-key" in refused.json()["error"]["message"]
