"""Issue #11, point 1: the free starting credit is granted once per person, not per organization.

Tried as an attacker with one verified account would: create many organizations through the
dashboard, leave one and create another, get invited, race two creations, use the credit before
the address is verified. Each organization is "used" by opening its billing page, which is where
the old code posted a grant to every new organization."""

from __future__ import annotations

import re
import threading

import pytest
from django.core import mail
from django.db import connections
from django.test import Client
from django.urls import reverse

from accounts import services as account_services
from accounts.models import Membership, Organization, Role, User
from billing.models import LedgerEntry
from tests.billing.conftest import USD
from tests.factories import UserFactory

PASSWORD = "a long and unusual passphrase"


def _signup_and_verify(client: Client, email: str) -> User:
    """The real sign-up: the form, the verification link from the email, logged in after."""
    mail.outbox.clear()
    client.post(
        reverse("account_signup"), {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    )
    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", mail.outbox[-1].body).group(0)
    assert client.post(link.split("testserver", 1)[1]).status_code == 302
    return User.objects.get(email__iexact=email)


def _create_org(client: Client, name: str):
    return client.post(reverse("org_create"), {"name": name})


def _open_billing(client: Client, org: Organization) -> str:
    response = client.get(reverse("org_billing", kwargs={"org_id": org.id}))
    assert response.status_code == 200
    return response.content.decode()


def _grants(user: User) -> list[LedgerEntry]:
    return list(
        LedgerEntry.objects.filter(
            kind=LedgerEntry.Kind.GRANT, organization__memberships__user=user
        ).distinct()
    )


def _owned(user: User) -> list[Organization]:
    return list(
        Organization.objects.filter(memberships__user=user, memberships__role=Role.OWNER).order_by(
            "created_at"
        )
    )


@pytest.fixture
def no_creation_limits(settings):
    """The cap and the rate limit have tests of their own; these isolate the grant."""
    settings.ACCOUNTS_MAX_OWNED_ORGANIZATIONS = 100
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "create_organization": None}


def test_one_person_creating_many_organizations_gets_one_free_grant(client, db, no_creation_limits):
    # Before the fix: 25 organizations, 25 grants, $25 of free credit.
    user = _signup_and_verify(client, "mallory@example.com")
    for n in range(24):
        assert _create_org(client, f"Shell {n}").status_code == 302
    orgs = _owned(user)
    assert len(orgs) == 25
    for org in orgs:
        _open_billing(client, org)

    grants = _grants(user)
    assert [g.amount_nanousd for g in grants] == [USD]
    # The personal organization made at sign-up is the one that has it.
    assert grants[0].organization.is_personal
    assert grants[0].reference == f"free-grant:user:{user.pk}"
    total = LedgerEntry.objects.filter(organization__in=orgs).values_list("amount_nanousd", flat=1)
    assert sum(total) == USD


def test_organizations_beyond_the_first_start_at_zero_and_say_how_to_add_credit(
    client, db, no_creation_limits
):
    user = UserFactory(email="erin@example.com")
    client.force_login(user)
    first = _create_org(client, "First")
    page = client.get(first["Location"]).content.decode()
    assert "free starting credit" in page.lower()

    second = _create_org(client, "Second")
    page = client.get(second["Location"]).content.decode()
    assert "starts at $0" in page
    org = Organization.objects.get(name="Second")
    billing = _open_billing(client, org)
    assert re.search(r'data-testid="balance">\$0\.00<', billing)
    assert 'data-testid="no-free-credit"' in billing
    assert "once per person" in billing
    first_billing = _open_billing(client, Organization.objects.get(name="First"))
    assert re.search(r'data-testid="balance">\$1\.00<', first_billing)
    assert 'data-testid="no-free-credit"' not in first_billing


def test_the_number_of_organizations_one_person_owns_is_capped(client, db, settings):
    # Before the fix: a sixth (and a hundredth) organization is created.
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "create_organization": None}
    assert settings.ACCOUNTS_MAX_OWNED_ORGANIZATIONS == 5
    user = _signup_and_verify(client, "oscar@example.com")  # owns its personal organization
    for n in range(4):
        assert _create_org(client, f"Team {n}").status_code == 302
    response = _create_org(client, "One too many")
    assert response.status_code == 200
    assert "You already own 5 organizations, the most one person can own." in (
        response.content.decode()
    )
    assert len(_owned(user)) == 5
    assert not Organization.objects.filter(name="One too many").exists()


def test_creating_organizations_is_rate_limited_per_person(client, db, settings):
    # Before the fix: every request creates one.
    settings.ACCOUNTS_MAX_OWNED_ORGANIZATIONS = 100
    rates = settings.ACCOUNT_RATE_LIMITS["create_organization"]
    per_minute = int(rates.split(",")[0].split("/")[0])
    user = UserFactory()
    client.force_login(user)
    for n in range(per_minute):
        assert _create_org(client, f"Burst {n}").status_code == 302
    response = _create_org(client, "Burst again")
    assert response.status_code == 429
    assert "creating organizations too quickly" in response.content.decode()
    assert len(_owned(user)) == per_minute
    # The limit is per person, not per site: someone else still can.
    other = Client()
    other.force_login(UserFactory())
    assert _create_org(other, "Unrelated").status_code == 302


def test_leaving_an_organization_and_creating_another_grants_nothing_more(
    client, db, no_creation_limits
):
    # Before the fix: 2 grants.
    user = UserFactory()
    accomplice = UserFactory()
    client.force_login(user)
    _create_org(client, "Handed over")
    first = Organization.objects.get(name="Handed over")
    _open_billing(client, first)
    Membership.objects.create(organization=first, user=accomplice, role=Role.OWNER)
    response = client.post(reverse("org_leave", kwargs={"org_id": first.id}))
    assert response.status_code == 302
    assert not Membership.objects.filter(organization=first, user=user).exists()

    _create_org(client, "Fresh start")
    second = Organization.objects.get(name="Fresh start")
    _open_billing(client, second)
    assert LedgerEntry.objects.filter(organization=second).count() == 0
    assert LedgerEntry.objects.filter(reference__contains=str(user.pk)).count() == 1
    assert LedgerEntry.objects.filter(kind="grant", organization=first).count() == 1


def test_members_invited_into_an_organization_add_no_credit_to_it(client, db, no_creation_limits):
    owner = UserFactory()
    client.force_login(owner)
    _create_org(client, "Shared")
    shared = Organization.objects.get(name="Shared")
    for _ in range(3):
        member = UserFactory()
        invitation = account_services.invitation_create(
            organization=shared,
            invited_by=owner,
            email=member.email,
            role=Role.BILLING,
            base_url="http://testserver",
        )
        guest = Client()
        guest.force_login(member)
        token = account_services.invitation_token(invitation)
        response = guest.post(
            reverse("invitation_respond", kwargs={"token": token}), {"answer": "accept"}
        )
        assert response.status_code == 302
        _open_billing(guest, shared)
    assert [e.amount_nanousd for e in LedgerEntry.objects.filter(organization=shared)] == [USD]


def test_an_unverified_address_gets_no_credit_until_it_is_verified(client, db):
    # Before the fix: the account made before verification got $1 on first use.
    client.post(
        reverse("account_signup"),
        {"email": "ursula@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    user = User.objects.get(email="ursula@example.com")
    personal = Organization.objects.get(memberships__user=user)
    # What an unverified user can't reach through the dashboard, an operator's script could:
    # an organization made for them before they verified has no credit.
    extra = account_services.organization_create(user=user, name="Before verifying")
    from billing.services import billing_account_for

    assert billing_account_for(organization=personal).balance_nanousd == 0
    assert billing_account_for(organization=extra).balance_nanousd == 0

    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", mail.outbox[-1].body).group(0)
    client.post(link.split("testserver", 1)[1])
    assert billing_account_for(organization=personal).balance_nanousd == USD
    assert billing_account_for(organization=extra).balance_nanousd == 0
    # One grant in all, on the personal organization.
    assert len(_grants(user)) == 1


def test_accounts_on_aliases_of_one_inbox_get_one_free_grant(db):
    # Before the fix: 4 verified accounts reading one inbox, 4 grants.
    aliases = (
        "mallory@gmail.com",
        "mallory+2@gmail.com",
        "Mal.Lory+x@googlemail.com",
        "m.allory@gmail.com",
    )
    clients = {email: Client() for email in (*aliases, "trudy@gmail.com")}
    users = {email: _signup_and_verify(c, email) for email, c in clients.items()}
    for email, c in clients.items():
        _open_billing(c, Organization.objects.get(memberships__user=users[email]))
    granted = {email for email, user in users.items() if _grants(user)}
    assert granted == {"mallory@gmail.com", "trudy@gmail.com"}
    later = clients["m.allory@gmail.com"]
    later_org = Organization.objects.get(memberships__user=users["m.allory@gmail.com"])
    assert 'data-testid="no-free-credit"' in _open_billing(later, later_org)


def test_concurrent_creations_grant_once(transactional_db, no_creation_limits):
    # Before the fix: 6 organizations, 6 grants.
    user = UserFactory()
    clients = []
    for _ in range(6):
        c = Client()
        c.force_login(user)
        clients.append(c)
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []

    def create(n: int) -> None:
        try:
            barrier.wait()
            statuses.append(_create_org(clients[n], f"Race {n}").status_code)
            org = Organization.objects.get(name=f"Race {n}")
            _open_billing(clients[n], org)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=create, args=(n,)) for n in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [302] * len(clients)
    assert [g.amount_nanousd for g in _grants(user)] == [USD]


def test_two_grants_racing_for_one_person_post_one(transactional_db):
    """The person's lock in organization_create isn't what makes it once: the ledger's unique
    reference is. One transaction posts the grant and stays open; the other, which saw no
    grant yet, waits on the unique index and finds it taken once the first commits."""
    from django.db import transaction

    from billing.services import free_credit_grant
    from tests.factories import OrganizationFactory

    user = UserFactory()
    first, second = OrganizationFactory(), OrganizationFactory()
    posted = threading.Event()
    results: dict[str, bool] = {}

    def slow() -> None:
        try:
            with transaction.atomic():
                results["first"] = free_credit_grant(organization=first, user_id=user.pk)
                posted.set()
                threading.Event().wait(0.5)  # the other one runs into the unique index now
        finally:
            posted.set()
            connections.close_all()

    def racer() -> None:
        try:
            posted.wait()
            results["second"] = free_credit_grant(organization=second, user_id=user.pk)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=slow), threading.Thread(target=racer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"first": True, "second": False}
    grants = LedgerEntry.objects.filter(kind="grant", reference=f"free-grant:user:{user.pk}")
    assert [g.organization_id for g in grants] == [first.id]
    assert LedgerEntry.objects.filter(organization=second).count() == 0
