"""Invitations send mail to any address, so they are bounded: a rate per inviting person and
per organization (allauth's limiter, in the shared cache), and a cap on pending invitations."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts import services
from accounts.exceptions import AccountsError
from accounts.models import Invitation, Membership, Role
from tests.factories import UserFactory


def _invite(client, org, email, role="viewer"):
    return client.post(
        reverse("members", kwargs={"org_id": org.id}), {"email": email, "role": role}
    )


def test_invitations_are_rate_limited_per_person(alice, charlie, login, settings):
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "invite_member": "3/m/user"}
    client = login(alice.user)
    for n in range(3):
        assert _invite(client, alice.org, f"friend{n}@example.com").status_code == 302
    refused = _invite(client, alice.org, "friend3@example.com")
    assert refused.status_code == 429
    assert b"Too many invitations sent in a short time" in refused.content
    assert not Invitation.objects.filter(email="friend3@example.com").exists()
    # Someone else, in another organization, is not held back.
    assert _invite(login(charlie.user), charlie.org, "friend3@example.com").status_code == 302


def test_invitations_are_rate_limited_per_organization(alice, charlie, client, settings):
    settings.ACCOUNT_RATE_LIMITS = {
        **settings.ACCOUNT_RATE_LIMITS,
        "invite_member": "10/m/user,4/m/key",
    }
    admins = [UserFactory(email=f"admin{n}@example.com") for n in range(2)]
    for admin in admins:
        Membership.objects.create(organization=alice.org, user=admin, role=Role.ADMIN)
    # Several admins of one organization share its allowance.
    for n, inviter in enumerate([alice.user, alice.user, admins[0], admins[0]]):
        client.force_login(inviter)
        assert _invite(client, alice.org, f"guest{n}@example.com").status_code == 302
    client.force_login(admins[1])  # has sent nothing yet
    refused = _invite(client, alice.org, "one-more@example.com")
    assert refused.status_code == 429
    assert Invitation.objects.filter(organization=alice.org).count() == 4
    client.force_login(charlie.user)
    assert _invite(client, charlie.org, "one-more@example.com").status_code == 302


def test_pending_invitations_are_capped(alice, login, settings):
    settings.ACCOUNTS_MAX_PENDING_INVITATIONS = 3
    client = login(alice.user)
    for n in range(3):
        assert _invite(client, alice.org, f"p{n}@example.com").status_code == 302
    refused = _invite(client, alice.org, "p3@example.com")
    assert refused.status_code == 200
    form = refused.context["form"]
    assert form.non_field_errors() == [
        "Acme already has 3 pending invitations, the most it can have. Withdraw the ones "
        "that are no longer needed, or wait for answers."
    ]
    assert b"already has 3 pending invitations" in refused.content
    assert Invitation.objects.filter(organization=alice.org).count() == 3

    # Withdrawing one frees its place.
    first = Invitation.objects.get(email="p0@example.com")
    services.invitation_revoke(invitation=first, actor=alice.user)
    assert _invite(client, alice.org, "p3@example.com").status_code == 302


def test_the_default_cap_is_fifty(alice, settings):
    assert settings.ACCOUNTS_MAX_PENDING_INVITATIONS == 50

    def invite(n):
        return services.invitation_create(
            organization=alice.org,
            invited_by=alice.user,
            email=f"x{n}@example.com",
            role=Role.VIEWER,
            base_url="http://testserver",
        )

    for n in range(50):
        invite(n)
    with pytest.raises(AccountsError) as refused:
        invite(50)
    assert refused.value.code == "too_many_pending"
