"""Members, invitations, organizations and the audit log, through the dashboard pages."""

from __future__ import annotations

import re

from django.core import mail
from django.urls import reverse

from accounts.models import AuditLog, Invitation, Membership, Organization, Role
from tests.factories import UserFactory


def url(name, org, **kwargs):
    return reverse(name, kwargs={"org_id": org.id, **kwargs})


def test_invite_accept_by_email_link(alice, client, login, django_capture_on_commit_callbacks):
    owner = login(alice.user)
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.post(
            url("members", alice.org), {"email": "eve@example.com", "role": "admin"}
        )
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["eve@example.com"]
    link = re.search(r"http://testserver(/invitations/\S+/)", mail.outbox[0].body).group(1)
    owner.logout()

    # Not logged in: the page says what it is and asks to log in or sign up.
    anonymous = client.get(link)
    assert b"Acme" in anonymous.content and b"Log in" in anonymous.content
    assert client.post(link, {"answer": "accept"})["Location"].startswith(reverse("account_login"))

    eve = UserFactory(email="eve@example.com")
    client.force_login(eve)
    response = client.post(link, {"answer": "accept"})
    assert response["Location"] == url("org_overview", alice.org)
    assert Membership.objects.get(organization=alice.org, user=eve).role == Role.ADMIN
    assert client.get(url("org_overview", alice.org)).status_code == 200
    # A used link can't be used again.
    again = client.post(link, {"answer": "accept"}, follow=True)
    assert b"already accepted" in again.content


def test_only_the_addressee_can_answer(alice, charlie, login, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        login(alice.user).post(
            url("members", alice.org), {"email": "eve@example.com", "role": "viewer"}
        )
    link = re.search(r"http://testserver(/invitations/\S+/)", mail.outbox[0].body).group(1)
    client = login(charlie.user)
    page = client.get(link)
    assert b"this invitation is for eve@example.com" in page.content
    client.post(link, {"answer": "accept"})
    assert not Membership.objects.filter(organization=alice.org, user=charlie.user).exists()


def test_decline(alice, client, django_capture_on_commit_callbacks):
    client.force_login(alice.user)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url("members", alice.org), {"email": "eve@example.com", "role": "viewer"})
    link = re.search(r"http://testserver(/invitations/\S+/)", mail.outbox[0].body).group(1)
    client.force_login(UserFactory(email="eve@example.com"))
    client.post(link, {"answer": "decline"})
    assert Invitation.objects.get().status == Invitation.Status.DECLINED
    assert Membership.objects.filter(organization=alice.org).count() == 1


def test_a_tampered_invitation_link_is_404(client, db):
    assert client.get("/invitations/not-a-real-token/").status_code == 404


def test_a_developer_cannot_invite_or_change_roles(alice, bob, login):
    client = login(bob.user)
    assert (
        client.post(
            url("members", alice.org), {"email": "x@example.com", "role": "viewer"}
        ).status_code
        == 403
    )
    assert (
        client.post(
            url("membership_role", alice.org, membership_id=alice.membership.id), {"role": "viewer"}
        ).status_code
        == 403
    )
    assert not mail.outbox


def test_admin_manages_members_but_not_owners(alice, bob, login):
    Membership.objects.filter(pk=bob.membership.pk).update(role=Role.ADMIN)
    carol = UserFactory(email="carol@example.com")
    carols = Membership.objects.create(organization=alice.org, user=carol, role=Role.VIEWER)
    client = login(bob.user)
    client.post(url("membership_role", alice.org, membership_id=carols.id), {"role": "developer"})
    carols.refresh_from_db()
    assert carols.role == Role.DEVELOPER
    # Admins can't make owners, or touch the owner.
    assert (
        client.post(
            url("membership_role", alice.org, membership_id=carols.id), {"role": "owner"}
        ).status_code
        == 403
    )
    assert (
        client.post(
            url("membership_remove", alice.org, membership_id=alice.membership.id)
        ).status_code
        == 403
    )
    assert (
        client.post(url("membership_remove", alice.org, membership_id=carols.id)).status_code == 302
    )
    assert not Membership.objects.filter(pk=carols.pk).exists()


def test_the_last_owner_can_neither_leave_nor_be_demoted(alice, login):
    client = login(alice.user)
    response = client.post(url("org_leave", alice.org), follow=True)
    assert b"last owner" in response.content
    response = client.post(
        url("membership_role", alice.org, membership_id=alice.membership.id),
        {"role": "viewer"},
        follow=True,
    )
    assert b"last owner" in response.content
    alice.membership.refresh_from_db()
    assert alice.membership.role == Role.OWNER


def test_create_and_switch_organizations(alice, login):
    client = login(alice.user)
    response = client.post(reverse("org_create"), {"name": "Side project"})
    side = Organization.objects.get(name="Side project")
    assert response["Location"] == url("org_overview", side)
    assert Membership.objects.get(organization=side, user=alice.user).role == Role.OWNER
    page = client.get(url("org_overview", side))
    # The switcher lists both, and the dashboard remembers the last one used.
    assert b"Acme" in page.content and b"Side project" in page.content
    assert client.get(reverse("dashboard"))["Location"] == url("org_overview", side)
    client.get(url("org_overview", alice.org))
    assert client.get(reverse("dashboard"))["Location"] == url("org_overview", alice.org)


def test_audit_log_page_for_owners_and_admins_only(alice, bob, login):
    client = login(alice.user)
    client.post(url("org_settings", alice.org), {"name": "Acme Inc"})
    client.post(url("members", alice.org), {"email": "eve@example.com", "role": "viewer"})
    page = client.get(url("audit_log", alice.org))
    assert page.status_code == 200
    text = page.content.decode()
    for label in ("Organization created", "Organization renamed", "Invitation sent"):
        assert label in text
    assert "alice@example.com" in text
    assert AuditLog.objects.filter(organization=alice.org).count() == 3
    assert login(bob.user).get(url("audit_log", alice.org)).status_code == 403
