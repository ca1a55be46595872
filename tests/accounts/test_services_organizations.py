"""Organizations and memberships: who is in, in which role, and that someone stays in charge."""

from __future__ import annotations

import pytest
from django.http import Http404

from accounts import selectors, services
from accounts.exceptions import AccountsError
from accounts.models import AuditLog, Membership, Organization, Role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _audits(org: Organization, action: str) -> list[AuditLog]:
    return list(AuditLog.objects.filter(organization=org, action=action))


def test_the_creator_owns_a_new_organization_and_it_is_audited(db):
    user = UserFactory()
    org = services.organization_create(user=user, name="  Initech  ")
    assert org.name == "Initech"
    assert not org.is_personal
    assert org.created_by == user
    membership = Membership.objects.get(organization=org)
    assert (membership.user, membership.role) == (user, Role.OWNER)
    [audit] = _audits(org, AuditLog.Action.ORG_CREATED)
    assert (audit.actor, audit.target) == (user, "Initech")
    assert list(selectors.organization_list_for_user(user=user)) == [org]


def test_an_organization_needs_a_name(db):
    user = UserFactory()
    with pytest.raises(AccountsError):
        services.organization_create(user=user, name="   ")
    assert not Organization.objects.exists()


def test_the_cap_on_owned_organizations_holds_for_every_caller(db, settings):
    """The page, the create_api_key command and anything else go through the service."""
    settings.ACCOUNTS_MAX_OWNED_ORGANIZATIONS = 2
    user = UserFactory()
    services.organization_create(user=user, name="One")
    services.organization_create(user=user, name="Two")
    with pytest.raises(AccountsError) as refused:
        services.organization_create(user=user, name="Three")
    assert refused.value.code == "organization_limit"
    # Being a member (not the owner) of others' organizations doesn't count.
    elsewhere = services.organization_create(user=UserFactory(), name="Elsewhere")
    Membership.objects.filter(organization__name="One").update(role=Role.ADMIN)
    Membership.objects.create(organization=elsewhere, user=user, role=Role.DEVELOPER)
    assert services.organization_create(user=user, name="Three").name == "Three"


def test_a_signed_up_user_gets_a_personal_organization_they_own(db):
    user = UserFactory(email="dana@example.com")
    org = services.user_signed_up(user=user)
    assert org.is_personal
    assert org.name == "dana's organization"
    assert Membership.objects.get(organization=org, user=user).role == Role.OWNER
    assert _audits(org, AuditLog.Action.ORG_CREATED)[0].actor == user
    assert list(selectors.organization_list_for_user(user=user)) == [org]


def test_a_personal_organization_uses_the_users_name_when_there_is_one(db):
    user = UserFactory(name="Dana Scully")
    assert services.user_signed_up(user=user).name == "Dana Scully's organization"


def test_rename_is_audited_with_the_old_and_new_name(alice):
    services.organization_rename(organization=alice.org, actor=alice.user, name="Acme Corp")
    alice.org.refresh_from_db()
    assert alice.org.name == "Acme Corp"
    [audit] = _audits(alice.org, AuditLog.Action.ORG_RENAMED)
    assert audit.actor == alice.user
    assert audit.data == {"from": "Acme", "to": "Acme Corp"}


def test_change_role_is_saved_and_audited(alice, bob):
    services.membership_change_role(membership=bob.membership, actor=alice.user, role=Role.ADMIN)
    bob.membership.refresh_from_db()
    assert bob.membership.role == Role.ADMIN
    [audit] = _audits(alice.org, AuditLog.Action.MEMBER_ROLE_CHANGED)
    assert (audit.actor, audit.target) == (alice.user, "bob@example.com")
    assert audit.data == {"from": "developer", "to": "admin"}


def test_an_unknown_role_is_refused(alice, bob):
    with pytest.raises(AccountsError):
        services.membership_change_role(membership=bob.membership, actor=alice.user, role="god")
    bob.membership.refresh_from_db()
    assert bob.membership.role == Role.DEVELOPER


def test_remove_takes_the_member_out_and_is_audited(alice, bob):
    services.membership_remove(membership=bob.membership, actor=alice.user)
    assert not Membership.objects.filter(user=bob.user, organization=alice.org).exists()
    [audit] = _audits(alice.org, AuditLog.Action.MEMBER_REMOVED)
    assert (audit.actor, audit.target, audit.data) == (
        alice.user,
        "bob@example.com",
        {"role": "developer", "keys": "revoked"},
    )
    assert list(selectors.organization_list_for_user(user=bob.user)) == []


def test_a_member_can_leave(alice, bob):
    services.membership_leave(membership=bob.membership)
    assert not Membership.objects.filter(user=bob.user, organization=alice.org).exists()
    [audit] = _audits(alice.org, AuditLog.Action.MEMBER_LEFT)
    assert audit.actor == bob.user


@pytest.mark.parametrize("role", [Role.ADMIN, Role.DEVELOPER, Role.BILLING, Role.VIEWER])
def test_the_last_owner_cannot_be_demoted(alice, role):
    with pytest.raises(AccountsError) as refused:
        services.membership_change_role(membership=alice.membership, actor=alice.user, role=role)
    assert refused.value.code == "last_owner"
    alice.membership.refresh_from_db()
    assert alice.membership.role == Role.OWNER
    assert not _audits(alice.org, AuditLog.Action.MEMBER_ROLE_CHANGED)


def test_the_last_owner_cannot_leave(alice, bob):
    with pytest.raises(AccountsError) as refused:
        services.membership_leave(membership=alice.membership)
    assert refused.value.code == "last_owner"
    assert Membership.objects.filter(pk=alice.membership.pk, role=Role.OWNER).exists()
    assert not _audits(alice.org, AuditLog.Action.MEMBER_LEFT)


def test_the_last_owner_cannot_be_removed(alice, bob):
    services.membership_change_role(membership=bob.membership, actor=alice.user, role=Role.ADMIN)
    with pytest.raises(AccountsError) as refused:
        services.membership_remove(membership=alice.membership, actor=bob.user)
    assert refused.value.code == "last_owner"
    assert Membership.objects.filter(pk=alice.membership.pk, role=Role.OWNER).exists()
    assert not _audits(alice.org, AuditLog.Action.MEMBER_REMOVED)


def test_with_two_owners_one_can_leave_and_the_other_is_then_the_last(alice, bob):
    services.membership_change_role(membership=bob.membership, actor=alice.user, role=Role.OWNER)

    services.membership_leave(membership=alice.membership)
    assert list(Membership.objects.filter(organization=alice.org).values_list("user", "role")) == [
        (bob.user.pk, Role.OWNER)
    ]
    [audit] = _audits(alice.org, AuditLog.Action.MEMBER_LEFT)
    assert (audit.actor, audit.data) == (alice.user, {"role": "owner", "keys": "revoked"})

    with pytest.raises(AccountsError) as refused:
        services.membership_leave(membership=bob.membership)
    assert refused.value.code == "last_owner"


def test_with_two_owners_one_can_be_demoted(alice, bob):
    services.membership_change_role(membership=bob.membership, actor=alice.user, role=Role.OWNER)
    services.membership_change_role(membership=alice.membership, actor=bob.user, role=Role.ADMIN)
    alice.membership.refresh_from_db()
    assert alice.membership.role == Role.ADMIN
    with pytest.raises(AccountsError) as refused:
        services.membership_change_role(membership=bob.membership, actor=bob.user, role=Role.VIEWER)
    assert refused.value.code == "last_owner"


def test_an_owner_of_another_organization_does_not_count(alice, charlie):
    # charlie owns Globex; that doesn't make him an owner Acme could fall back on.
    Membership.objects.create(organization=alice.org, user=charlie.user, role=Role.VIEWER)
    with pytest.raises(AccountsError) as refused:
        services.membership_leave(membership=alice.membership)
    assert refused.value.code == "last_owner"


def test_a_non_member_gets_404_at_the_tenant_gate(alice, charlie):
    assert selectors.membership_for_user(user=alice.user, organization_id=alice.org.id).role == (
        Role.OWNER
    )
    with pytest.raises(Http404):
        selectors.membership_for_user(user=charlie.user, organization_id=alice.org.id)
