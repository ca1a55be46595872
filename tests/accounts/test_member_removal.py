"""Removing a member takes away what they held: the API keys they created in the organization
are revoked (or handed to an owner or admin, as the remover chooses), and their live sessions
there are closed (4403), at once or by the socket's own membership re-check."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib import messages as django_messages
from django.urls import reverse

from accounts import selectors, services
from accounts.models import AuditLog, Membership, Role
from config.asgi import application
from tests.factories import UserFactory
from tests.observability.helpers import session_cookie, ws_headers


def url(name, org, **kwargs):
    return reverse(name, kwargs={"org_id": org.id, **kwargs})


def _key(tenant, name="bob's key"):
    return services.api_key_create(organization=tenant.org, created_by=tenant.user, name=name)


def test_removing_a_member_revokes_the_keys_they_created(
    alice, bob, charlie, login, django_capture_on_commit_callbacks
):
    key, secret = _key(bob)
    elsewhere, other_secret = services.api_key_create(
        organization=charlie.org, created_by=charlie.user, name="charlie's"
    )
    Membership.objects.create(organization=charlie.org, user=bob.user, role=Role.DEVELOPER)
    bobs_globex_key, bobs_globex_secret = services.api_key_create(
        organization=charlie.org, created_by=bob.user, name="bob at globex"
    )
    alices_key, alices_secret = _key(alice, name="alice's key")
    assert selectors.api_key_authenticate(raw_key=secret).key_id == key.id

    with django_capture_on_commit_callbacks(execute=True):
        response = login(alice.user).post(
            url("membership_remove", alice.org, membership_id=bob.membership.id)
        )
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.status == "revoked" and key.revoked_by == alice.user
    with pytest.raises(selectors.KeyRejected):
        selectors.api_key_authenticate(raw_key=secret)
    # Only bob's keys, only in Acme.
    for other in (alices_secret, bobs_globex_secret, other_secret):
        assert not selectors.api_key_authenticate(raw_key=other).revoked
    assert AuditLog.objects.filter(
        organization=alice.org, action=AuditLog.Action.API_KEY_REVOKED, actor=alice.user
    ).exists()


def test_the_remover_can_hand_the_keys_to_an_admin_instead(alice, bob, login):
    key, secret = _key(bob)
    dana = UserFactory(email="dana@example.com")
    danas = Membership.objects.create(organization=alice.org, user=dana, role=Role.ADMIN)
    client = login(alice.user)
    page = client.get(url("members", alice.org))
    assert f'value="{danas.id}"'.encode() in page.content  # offered in the remove form

    response = client.post(
        url("membership_remove", alice.org, membership_id=bob.membership.id),
        {"keys": str(danas.id)},
        follow=True,
    )
    assert b"Their API keys now belong to dana@example.com" in response.content
    key.refresh_from_db()
    assert key.status == "active" and key.created_by == dana
    assert not selectors.api_key_authenticate(raw_key=secret).revoked
    assert not Membership.objects.filter(organization=alice.org, user=bob.user).exists()


def test_keys_go_only_to_an_owner_or_admin_of_the_organization(alice, bob, charlie, login):
    key, _ = _key(bob)
    carol = UserFactory(email="carol@example.com")
    carols = Membership.objects.create(organization=alice.org, user=carol, role=Role.VIEWER)
    client = login(alice.user)
    response = client.post(
        url("membership_remove", alice.org, membership_id=bob.membership.id),
        {"keys": str(carols.id)},
        follow=True,
    )
    error = [m for m in response.context["messages"] if m.level == django_messages.ERROR]
    assert "owner or admin" in str(error[0])
    # Nothing happened: bob is still a member and his key works.
    assert Membership.objects.filter(pk=bob.membership.pk).exists()
    key.refresh_from_db()
    assert key.status == "active" and key.created_by == bob.user

    # Another tenant's membership is unknown here.
    foreign = client.post(
        url("membership_remove", alice.org, membership_id=bob.membership.id),
        {"keys": str(charlie.membership.id)},
    )
    assert foreign.status_code == 404
    bad = client.post(
        url("membership_remove", alice.org, membership_id=bob.membership.id),
        {"keys": "not-a-membership"},
    )
    assert bad.status_code == 302
    assert Membership.objects.filter(pk=bob.membership.pk).exists()


def test_leaving_revokes_the_keys_one_created(bob, login):
    key, _ = _key(bob)
    login(bob.user).post(url("org_leave", bob.org))
    key.refresh_from_db()
    assert key.status == "revoked"


# WebSockets: the live overview of the organization.


async def _join(org_id, cookie) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, f"/ws/orgs/{org_id}/live/", headers=ws_headers(cookie)
    )
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from(timeout=5))["type"] == "snapshot"
    return communicator


async def _closed_with(communicator, timeout=3.0) -> int:
    message = await communicator.receive_output(timeout=timeout)
    assert message["type"] == "websocket.close", message
    return message["code"]


@pytest.mark.django_db(transaction=True)
async def test_removing_a_member_closes_their_live_sessions(alice, bob):
    bobs = await _join(bob.org.id, await sync_to_async(session_cookie)(bob.user))
    alices = await _join(alice.org.id, await sync_to_async(session_cookie)(alice.user))

    await sync_to_async(services.membership_remove)(membership=bob.membership, actor=alice.user)

    assert await _closed_with(bobs) == 4403
    # The remover's own session stays open.
    assert await alices.receive_nothing(timeout=0.3)
    await alices.disconnect()
    # And bob can't come back in.
    again = WebsocketCommunicator(
        application,
        f"/ws/orgs/{bob.org.id}/live/",
        headers=ws_headers(await sync_to_async(session_cookie)(bob.user)),
    )
    assert await again.connect() == (False, 4403)


@pytest.mark.django_db(transaction=True)
async def test_a_live_socket_rechecks_membership(alice, bob, settings):
    """A removal whose message never reached the socket (another way in, the channel layer
    down): the socket's own re-check closes it."""
    settings.LIVE_MEMBERSHIP_RECHECK_SECONDS = 0.2
    bobs = await _join(bob.org.id, await sync_to_async(session_cookie)(bob.user))
    assert await bobs.receive_nothing(timeout=0.5)  # still a member: still open

    await Membership.objects.filter(pk=bob.membership.pk).adelete()

    assert await _closed_with(bobs, timeout=3) == 4403
