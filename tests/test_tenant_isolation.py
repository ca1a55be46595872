"""Every URL that takes an id, tried by a member of another organization: always 404.

The URL patterns are enumerated from the resolver, so a new URL is covered the day it is added.
A URL whose id this test doesn't know how to fill fails the test until it is taught here.
"""

from __future__ import annotations

import io
import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from accounts import services
from accounts.models import Role
from routing.batches import files as batch_files
from routing.batches import services as batch_services

# Patterns that take parameters but are not tenant objects, with the reason.
NOT_TENANT_SCOPED = {
    # allauth's own signed keys (email confirmation, password reset): not ids of tenant objects.
    "allauth",
    # The admin is for staff only; everyone else is sent to its login page.
    "django.contrib.admin",
    "django.contrib.contenttypes",  # the admin's "view on site" redirect
}
# The invitation link carries a signed token: anyone holding it may look, only the addressee
# may answer (tested in tests/accounts/test_views_members.py).
CAPABILITY_URLS = {"invitation_respond"}
# Ids of public, shared things: the model catalog belongs to no tenant.
PUBLIC_URLS = {"v1_model", "public_model"}


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def _module_of(pattern: URLPattern) -> str:
    callback = pattern.callback
    return getattr(callback, "__module__", "") or ""


def id_taking_patterns():
    found = []
    for route, pattern in _walk(get_resolver().url_patterns):
        params = re.findall(r"<(?:(\w+):)?(\w+)>", route)
        if not params:
            continue
        module = _module_of(pattern)
        if any(module.startswith(skip) for skip in NOT_TENANT_SCOPED) or route.startswith("admin/"):
            continue
        if pattern.name in CAPABILITY_URLS | PUBLIC_URLS:
            continue
        found.append((route, pattern.name, [name for _, name in params]))
    return found


def _fill(route: str, values: dict[str, str]) -> str:
    def sub(match):
        name = match.group(2)
        if name not in values:
            raise AssertionError(
                f"{route} takes '{name}', which this test can't fill: add an object of "
                "alice's for it in acme_ids()."
            )
        return str(values[name])

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", sub, route)


@pytest.fixture
def acme_ids(alice, bob):
    key, _ = services.api_key_create(organization=alice.org, created_by=alice.user, name="prod")
    invitation = services.invitation_create(
        organization=alice.org,
        invited_by=alice.user,
        email="eve@example.com",
        role=Role.VIEWER,
        base_url="http://testserver",
    )
    from tests.observability.factories import request_log_for

    upload = io.BytesIO(
        b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", '
        b'"body": {"model": "google/gemini-3.1-flash-lite", "messages": '
        b'[{"role": "user", "content": "hi"}]}}\n'
    )
    stored = batch_files.file_create(
        organization=alice.org, upload=upload, filename="in.jsonl", purpose="batch"
    )
    batch = batch_services.batch_create(
        organization=alice.org,
        key_id=key.id,
        input_file=stored,
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    from routing.models import StoredResponse

    response = StoredResponse.objects.create(
        id="resp_" + "a" * 32,
        organization=alice.org,
        key_id=key.id,
        response='{"id": "resp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "object": "response"}',
        conversation=[{"role": "user", "content": "hi"}],
        input_items=[],
    )
    return {
        "response_id": response.id,
        "file_id": stored.id,
        "batch_id": batch.id,
        "kind": "output",
        "org_id": alice.org.id,
        "generation_id": request_log_for(alice.org).generation_id,
        "key_id": key.id,
        "membership_id": bob.membership.id,
        "invitation_id": invitation.id,
    }


def test_the_enumeration_finds_the_id_taking_urls():
    names = {name for _, name, _ in id_taking_patterns()}
    # A sanity floor: if the walk broke, the isolation test below would pass vacuously.
    assert {"api_keys", "api_key_revoke", "membership_role", "invitation_revoke"} <= names


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_tenant_gets_404_on_every_id_taking_url(acme_ids, charlie, client, method):
    client.force_login(charlie.user)
    # The API's URLs answer API keys: charlie's own.
    _, secret = services.api_key_create(
        organization=charlie.org, created_by=charlie.user, name="charlie"
    )
    checked = 0
    for route, name, params in id_taking_patterns():
        # Alice's ids throughout, and charlie's own organization with alice's object ids.
        attempts = [acme_ids]
        if "org_id" in params and len(params) > 1:
            attempts.append({**acme_ids, "org_id": charlie.org.id})
        for values in attempts:
            url = _fill(route, values)
            headers = {"Authorization": f"Bearer {secret}"} if url.startswith("/v1/") else {}
            response = getattr(client, method)(url, headers=headers)
            # A POST-only URL may turn a GET away before looking anything up: 405 for every
            # id alike tells nothing. A POST must always be 404.
            # An API URL answers 405 to a method it has no handler for, whatever the id
            # (tests/routing/batches checks each of its methods against another tenant).
            allowed = (404, 405) if method == "get" or url.startswith("/v1/") else (404,)
            assert response.status_code in allowed, f"{method.upper()} {url} ({name})"
            assert b"Acme" not in response.content
            checked += 1
    assert checked >= 10


def test_members_of_the_organization_do_get_through(acme_ids, alice, client):
    """The same URLs answer alice, so the 404s above are about tenancy, not broken URLs."""
    client.force_login(alice.user)
    for route, name, params in id_taking_patterns():
        if params != ["org_id"]:
            continue
        response = client.get(_fill(route, acme_ids))
        assert response.status_code in (200, 405), f"GET {route} ({name})"
