"""The API keys page: who may create and revoke, what the list shows, and that the secret is
shown once."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from accounts import services
from accounts.models import APIKey, Membership, Role
from tests.factories import UserFactory

KEY_RE = re.compile(rb"llmapi_[0-9A-Za-z]{36}")


def keys_url(org):
    return reverse("api_keys", kwargs={"org_id": org.id})


def revoke_url(key):
    return reverse("api_key_revoke", kwargs={"org_id": key.organization_id, "key_id": key.id})


@pytest.fixture
def viewer(alice):
    user = UserFactory(email="vera@example.com")
    Membership.objects.create(organization=alice.org, user=user, role=Role.VIEWER)
    return user


def test_creating_a_key_shows_the_secret_once_with_snippets(alice, login):
    client = login(alice.user)
    response = client.post(keys_url(alice.org), {"name": "prod", "spend_limit_period": "monthly"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    secret = KEY_RE.search(response.content).group(0).decode()
    body = response.content.decode()
    assert 'base_url="http://testserver/v1"' in body
    assert f"Authorization: Bearer {secret}" in body

    listing = client.get(keys_url(alice.org)).content.decode()
    assert secret not in listing
    key = APIKey.objects.get()
    assert f"{secret[:11]}…{secret[-4:]}" in listing
    assert key.masked in listing
    assert "alice@example.com" in listing
    assert "active" in listing


def test_key_limits_from_the_form_are_stored_in_nano_usd(alice, login):
    client = login(alice.user)
    client.post(
        keys_url(alice.org),
        {
            "name": "capped",
            "spend_limit_usd": "12.50",
            "spend_limit_period": "daily",
            "rpm_limit": "60",
            "tpm_limit": "100000",
            "allowed_models": "google/gemini-3.1-flash-lite, openai/gpt-4.1-mini",
        },
    )
    key = APIKey.objects.get()
    assert key.spend_limit_nanousd == 12_500_000_000
    assert key.spend_limit_period == "daily"
    assert (key.rpm_limit, key.tpm_limit) == (60, 100_000)
    assert key.allowed_models == ["google/gemini-3.1-flash-lite", "openai/gpt-4.1-mini"]


def test_bad_input_is_shown_on_the_form_not_a_500(alice, login):
    client = login(alice.user)
    response = client.post(
        keys_url(alice.org),
        {
            "name": "",
            "rpm_limit": "-3",
            "expires_at": "2001-01-01T00:00",
            "spend_limit_period": "x",
        },
    )
    assert response.status_code == 200
    assert not APIKey.objects.exists()
    assert response.context["form"].errors.keys() >= {"name", "rpm_limit", "expires_at"}


def test_a_viewer_sees_keys_but_cannot_create_or_revoke(alice, viewer, login):
    key, _ = services.api_key_create(organization=alice.org, created_by=alice.user, name="prod")
    client = login(viewer)
    page = client.get(keys_url(alice.org))
    assert page.status_code == 200
    assert b"Create key" not in page.content
    assert client.post(keys_url(alice.org), {"name": "x"}).status_code == 403
    assert client.post(revoke_url(key)).status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None


def test_a_developer_revokes_their_own_keys_only(alice, bob, login):
    alices, _ = services.api_key_create(organization=alice.org, created_by=alice.user, name="a")
    bobs, _ = services.api_key_create(organization=alice.org, created_by=bob.user, name="b")
    client = login(bob.user)
    assert client.post(revoke_url(alices)).status_code == 403
    assert client.post(revoke_url(bobs)).status_code == 302
    alices.refresh_from_db()
    bobs.refresh_from_db()
    assert alices.revoked_at is None
    assert bobs.revoked_at is not None
    assert bobs.revoked_by == bob.user


def test_an_owner_revokes_any_key(alice, bob, login):
    bobs, secret = services.api_key_create(organization=alice.org, created_by=bob.user, name="b")
    client = login(alice.user)
    response = client.post(revoke_url(bobs), follow=True)
    assert b"revoked" in response.content
    bobs.refresh_from_db()
    assert bobs.status == "revoked"


def test_the_key_list_costs_the_same_queries_for_1_or_20_keys(
    alice, login, django_assert_num_queries
):
    client = login(alice.user)
    services.api_key_create(organization=alice.org, created_by=alice.user, name="k0")
    client.get(keys_url(alice.org))  # warm the session
    with django_assert_num_queries(5) as one:
        client.get(keys_url(alice.org))
    for i in range(19):
        services.api_key_create(organization=alice.org, created_by=alice.user, name=f"k{i + 1}")
    with django_assert_num_queries(len(one.captured_queries)):
        response = client.get(keys_url(alice.org))
    assert response.content.count(b'data-testid="key-masked"') == 20
