"""Invitations: an email with a signed link, answered only by the person it was sent to."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.http import Http404
from django.utils import timezone

from accounts import selectors, services
from accounts.exceptions import AccountsError
from accounts.models import AuditLog, Invitation, Membership, Role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LINK_RE = re.compile(r"http://testserver/invitations/(?P<token>[^/\s]+)/")


@pytest.fixture
def invite(alice, django_capture_on_commit_callbacks):
    def _invite(email: str = "dana@example.com", role: str = Role.DEVELOPER) -> Invitation:
        with django_capture_on_commit_callbacks(execute=True):
            return services.invitation_create(
                organization=alice.org,
                invited_by=alice.user,
                email=email,
                role=role,
                base_url="http://testserver/",
            )

    return _invite


@pytest.fixture
def dana(db):
    return UserFactory(email="dana@example.com")


def _audits(org, action) -> list[AuditLog]:
    return list(AuditLog.objects.filter(organization=org, action=action))


def test_an_invitation_emails_a_link_that_leads_back_to_it(alice, invite):
    invitation = invite(role=Role.ADMIN)

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["dana@example.com"]
    assert "Acme" in message.subject
    assert "alice@example.com invited you to join Acme" in message.body
    assert "Admin" in message.body
    token = LINK_RE.search(message.body).group("token")
    assert selectors.invitation_from_token(token=token) == invitation

    assert invitation.status == Invitation.Status.PENDING
    [audit] = _audits(alice.org, AuditLog.Action.INVITATION_SENT)
    assert (audit.actor, audit.target, audit.data) == (
        alice.user,
        "dana@example.com",
        {"role": "admin"},
    )


def test_no_email_leaves_before_the_invitation_is_committed(alice):
    # The email is a side effect: it waits for the transaction, so a rollback sends nothing.
    services.invitation_create(
        organization=alice.org,
        invited_by=alice.user,
        email="dana@example.com",
        role=Role.DEVELOPER,
        base_url="http://testserver",
    )
    assert mail.outbox == []


def test_accept_makes_a_membership_in_the_invited_role(alice, invite, dana):
    invitation = invite(role=Role.BILLING)
    membership = services.invitation_accept(invitation=invitation, user=dana)

    assert (membership.organization, membership.user, membership.role) == (
        alice.org,
        dana,
        Role.BILLING,
    )
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.ACCEPTED
    assert invitation.responded_at is not None
    assert _audits(alice.org, AuditLog.Action.INVITATION_ACCEPTED)[0].actor == dana
    [joined] = _audits(alice.org, AuditLog.Action.MEMBER_JOINED)
    assert (joined.actor, joined.target, joined.data) == (
        dana,
        "dana@example.com",
        {"role": "billing"},
    )
    assert selectors.membership_for_user(user=dana, organization_id=alice.org.id) == membership


def test_an_invitation_is_answered_only_once(alice, invite, dana):
    invitation = invite()
    services.invitation_accept(invitation=invitation, user=dana)
    with pytest.raises(AccountsError) as refused:
        services.invitation_decline(invitation=invitation, user=dana)
    assert refused.value.code == "not_pending"
    with pytest.raises(AccountsError) as refused:
        services.invitation_accept(invitation=invitation, user=dana)
    assert refused.value.code == "not_pending"


def test_the_addressee_is_matched_regardless_of_case(alice, invite):
    invitation = invite(email="Dana.Scully@Example.com")
    user = UserFactory(email="dana.scully@example.com")
    assert services.invitation_accept(invitation=invitation, user=user).organization == alice.org


def test_decline_leaves_no_membership(alice, invite, dana):
    invitation = invite()
    services.invitation_decline(invitation=invitation, user=dana)
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.DECLINED
    assert invitation.responded_at is not None
    assert not Membership.objects.filter(organization=alice.org, user=dana).exists()
    assert _audits(alice.org, AuditLog.Action.INVITATION_DECLINED)[0].actor == dana


def test_someone_with_another_email_cannot_accept_or_decline(alice, bob, invite, charlie):
    invitation = invite()
    with pytest.raises(AccountsError) as refused:
        services.invitation_accept(invitation=invitation, user=charlie.user)
    assert refused.value.code == "wrong_recipient"
    with pytest.raises(AccountsError) as refused:
        services.invitation_decline(invitation=invitation, user=charlie.user)
    assert refused.value.code == "wrong_recipient"

    assert not Membership.objects.filter(organization=alice.org, user=charlie.user).exists()
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.PENDING


def test_an_expired_invitation_is_refused(alice, invite, dana):
    invitation = invite()
    Invitation.objects.filter(pk=invitation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(AccountsError) as refused:
        services.invitation_accept(invitation=invitation, user=dana)
    assert refused.value.code == "expired"
    assert not Membership.objects.filter(organization=alice.org, user=dana).exists()


def test_a_tampered_token_is_404(alice, invite):
    invite()
    token = LINK_RE.search(mail.outbox[0].body).group("token")
    last = token[-1]
    tampered = token[:-1] + ("A" if last != "A" else "B")
    with pytest.raises(Http404):
        selectors.invitation_from_token(token=tampered)
    with pytest.raises(Http404):
        selectors.invitation_from_token(token="not-a-token")


def test_a_second_pending_invitation_to_the_same_address_is_refused(alice, invite):
    invite(email="dana@example.com")
    with pytest.raises(AccountsError) as refused:
        invite(email="DANA@example.com")
    assert refused.value.code == "already_invited"
    assert Invitation.objects.filter(organization=alice.org).count() == 1
    assert len(mail.outbox) == 1
    assert len(_audits(alice.org, AuditLog.Action.INVITATION_SENT)) == 1


def test_the_same_address_may_be_invited_by_two_organizations(alice, charlie, invite):
    invite(email="dana@example.com")
    other = services.invitation_create(
        organization=charlie.org,
        invited_by=charlie.user,
        email="dana@example.com",
        role=Role.VIEWER,
        base_url="http://testserver",
    )
    assert other.status == Invitation.Status.PENDING


def test_an_expired_pending_invitation_gives_way_to_a_new_one(alice, invite, dana):
    old = invite()
    Invitation.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(days=1))
    new = invite()
    old.refresh_from_db()
    assert old.status == Invitation.Status.REVOKED
    assert new.status == Invitation.Status.PENDING
    services.invitation_accept(invitation=new, user=dana)


def test_inviting_an_existing_member_is_refused(alice, bob, invite):
    with pytest.raises(AccountsError) as refused:
        invite(email="Bob@Example.com")
    assert refused.value.code == "already_member"
    assert not Invitation.objects.exists()
    assert mail.outbox == []


def test_an_unknown_role_is_refused(alice, invite):
    with pytest.raises(AccountsError):
        invite(role="superuser")
    assert not Invitation.objects.exists()


def test_revoke_closes_the_invitation(alice, invite, dana):
    invitation = invite()
    services.invitation_revoke(invitation=invitation, actor=alice.user)
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.REVOKED
    [audit] = _audits(alice.org, AuditLog.Action.INVITATION_REVOKED)
    assert (audit.actor, audit.target) == (alice.user, "dana@example.com")
    assert list(selectors.invitation_list_pending(organization=alice.org)) == []

    with pytest.raises(AccountsError) as refused:
        services.invitation_accept(invitation=invitation, user=dana)
    assert refused.value.code == "not_pending"
    with pytest.raises(AccountsError):
        services.invitation_revoke(invitation=invitation, actor=alice.user)
    # A revoked invitation is history: the address can be invited again.
    assert invite().status == Invitation.Status.PENDING


def test_another_tenant_cannot_reach_an_invitation_by_id(alice, charlie, invite):
    invitation = invite()
    assert selectors.invitation_get(organization=alice.org, invitation_id=invitation.id)
    with pytest.raises(Http404):
        selectors.invitation_get(organization=charlie.org, invitation_id=invitation.id)
    assert list(selectors.invitation_list_pending(organization=charlie.org)) == []
