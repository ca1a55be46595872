"""`manage.py create_api_key`: for scripts, so stdout is the key and nothing else."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from allauth.account.models import EmailAddress
from django.core.management import CommandError, call_command

from accounts import selectors
from accounts.models import APIKey, Membership, Organization, Role, User

pytestmark = pytest.mark.django_db

KEY_LINE_RE = re.compile(r"\Allmapi_[0-9A-Za-z]{36}\n\Z")


def _run(**options) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("create_api_key", stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def test_creates_the_user_and_organization_and_prints_only_the_key():
    out, err = _run(email="ops@example.com", org="Ops", name="deploy")

    assert KEY_LINE_RE.match(out), out
    assert err == ""
    raw = out.strip()

    user = User.objects.get(email="ops@example.com")
    assert not user.has_usable_password()
    address = EmailAddress.objects.get(user=user)
    assert (address.email, address.verified, address.primary) == ("ops@example.com", True, True)

    org = Organization.objects.get(name="Ops")
    assert Membership.objects.get(organization=org, user=user).role == Role.OWNER
    key = APIKey.objects.get(organization=org)
    assert (key.name, key.created_by) == ("deploy", user)

    authed = selectors.api_key_authenticate(raw_key=raw)
    assert (authed.key_id, authed.organization_id) == (key.id, org.id)


def test_a_second_run_reuses_the_user_and_organization():
    first, _ = _run(email="ops@example.com", org="Ops", name="one")
    second, _ = _run(email="OPS@example.com", org="Ops", name="two")

    assert KEY_LINE_RE.match(second)
    assert first != second
    assert User.objects.count() == 1
    assert Organization.objects.filter(name="Ops").count() == 1
    assert EmailAddress.objects.count() == 1
    org = Organization.objects.get(name="Ops")
    assert sorted(APIKey.objects.filter(organization=org).values_list("name", flat=True)) == [
        "one",
        "two",
    ]
    for out in (first, second):
        assert selectors.api_key_authenticate(raw_key=out.strip()).organization_id == org.id


def test_an_existing_user_gets_their_email_verified(db):
    user = User.objects.create_user(email="eve@example.com", password="a long passphrase")
    out, _ = _run(email="eve@example.com", org="Eve's", name="k")
    assert KEY_LINE_RE.match(out)
    assert EmailAddress.objects.get(user=user).verified
    assert user.memberships.get().role == Role.OWNER


def test_an_existing_organization_can_be_named_by_id(alice):
    out, _ = _run(email="alice@example.com", org=str(alice.org.id), name="by id")
    assert selectors.api_key_authenticate(raw_key=out.strip()).organization_id == alice.org.id
    assert Organization.objects.count() == 1


def test_never_hands_out_a_key_to_someone_elses_organization(alice):
    out, err = _run(email="mallory@example.com", org="Acme", name="sneaky")
    authed = selectors.api_key_authenticate(raw_key=out.strip())
    assert authed.organization_id != alice.org.id
    assert not APIKey.objects.filter(organization=alice.org).exists()
    assert "isn't a member" in err
    mallory_org = Organization.objects.get(pk=authed.organization_id)
    assert mallory_org.memberships.get().user.email == "mallory@example.com"


def test_a_role_that_cannot_create_keys_is_refused(alice):
    viewer = User.objects.create_user(email="vic@example.com")
    Membership.objects.create(organization=alice.org, user=viewer, role=Role.VIEWER)
    with pytest.raises(CommandError, match="can't create keys"):
        _run(email="vic@example.com", org="Acme", name="k")
    assert not APIKey.objects.exists()


def test_a_scripted_person_gets_the_free_credit_once():
    from billing.models import LedgerEntry

    _run(email="ops@example.com", org="Ops", name="deploy")
    _run(email="ops@example.com", org="Staging", name="deploy")
    grants = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.GRANT)
    assert [g.organization.name for g in grants] == ["Ops"]
