"""Prompt and response bodies: off by default; owners and admins turn them on in the log
settings page (audited), and from then on each request's body and answer are kept, capped,
and shown on its detail page. Nobody else can change the setting."""

from __future__ import annotations

import pytest

from accounts.models import AuditLog, Role
from observability.models import OrganizationLogSettings, RequestLog
from observability.writer import flush_now, log_buffer
from tests.factories import MembershipFactory
from tests.observability.helpers import wait_until

HERO = "google/gemini-3.1-flash-lite"
pytestmark = pytest.mark.django_db(transaction=True)


def _logged(generation_id: str) -> RequestLog:
    def written():
        flush_now()
        return RequestLog.objects.filter(generation_id=generation_id).first()

    return wait_until(written)


def _settings_url(org) -> str:
    return f"/o/{org.id}/logs/settings/"


def test_bodies_are_not_kept_by_default(openai_client, alice, client):
    reply = openai_client.chat.completions.create(
        model=HERO, messages=[{"role": "user", "content": "my secret prompt"}], max_tokens=8
    )
    log = _logged(reply.id)
    assert log.prompt_body is None and log.response_body is None
    client.force_login(alice.user)
    page = client.get(f"/o/{alice.org.id}/logs/{reply.id}/").content.decode()
    assert "my secret prompt" not in page
    assert 'data-testid="bodies-off"' in page


def test_an_owner_turns_bodies_on_and_they_are_kept_capped(openai_client, alice, client):
    client.force_login(alice.user)
    page = client.get(_settings_url(alice.org))
    assert page.status_code == 200 and "not kept" in page.content.decode()
    response = client.post(
        _settings_url(alice.org), {"store_bodies": "on", "max_body_bytes": "1024"}
    )
    assert response.status_code == 302
    assert "kept, up to 1024 bytes" in client.get(_settings_url(alice.org)).content.decode()
    audit = AuditLog.objects.get(
        organization=alice.org, action=AuditLog.Action.LOG_SETTINGS_CHANGED
    )
    assert audit.actor == alice.user and audit.data["after"]["store_bodies"] is True
    log_buffer.refresh_body_orgs()  # what each process's writer thread does every 30 s

    long_prompt = "tell me about the sea " * 100  # 2,200 bytes
    reply = openai_client.chat.completions.create(
        model=HERO, messages=[{"role": "user", "content": long_prompt}], max_tokens=16
    )
    log = _logged(reply.id)
    assert log.prompt_body.startswith('{"model":') and "tell me about the sea" in log.prompt_body
    assert len(log.prompt_body.encode()) == 1024  # capped
    assert reply.choices[0].message.content in log.response_body

    chunks = list(
        openai_client.chat.completions.create(
            model=HERO,
            messages=[{"role": "user", "content": "stream it"}],
            max_tokens=16,
            stream=True,
        )
    )
    streamed = _logged(chunks[0].id)
    delivered = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed.response_body == delivered and delivered
    assert "stream it" in streamed.prompt_body

    detail = client.get(f"/o/{alice.org.id}/logs/{reply.id}/").content.decode()
    assert 'data-testid="prompt-body"' in detail and "tell me about the sea" in detail

    # Off again: the next request keeps nothing.
    client.post(_settings_url(alice.org), {"max_body_bytes": "1024"})
    log_buffer.refresh_body_orgs()
    reply = openai_client.chat.completions.create(
        model=HERO, messages=[{"role": "user", "content": "forget me"}], max_tokens=8
    )
    assert _logged(reply.id).prompt_body is None


@pytest.mark.parametrize("size", ["10", "100000", "lots"])
def test_a_cap_out_of_bounds_is_refused_with_a_message(alice, client, size):
    client.force_login(alice.user)
    response = client.post(_settings_url(alice.org), {"store_bodies": "on", "max_body_bytes": size})
    assert response.status_code == 400
    assert "invalid-feedback" in response.content.decode()
    assert not OrganizationLogSettings.objects.filter(
        organization=alice.org, store_bodies=True
    ).exists()


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER, Role.BILLING])
def test_members_without_the_right_role_cannot_change_it(alice, client, role):
    member = MembershipFactory(organization=alice.org, role=role)
    client.force_login(member.user)
    assert client.get(_settings_url(alice.org)).status_code == 403
    response = client.post(
        _settings_url(alice.org), {"store_bodies": "on", "max_body_bytes": "2048"}
    )
    assert response.status_code == 403
    assert not OrganizationLogSettings.objects.filter(organization=alice.org).exists()


def test_another_organizations_owner_gets_404(alice, charlie, client):
    client.force_login(charlie.user)
    assert client.get(_settings_url(alice.org)).status_code == 404
    response = client.post(
        _settings_url(alice.org), {"store_bodies": "on", "max_body_bytes": "2048"}
    )
    assert response.status_code == 404
    assert not OrganizationLogSettings.objects.filter(organization=alice.org).exists()
