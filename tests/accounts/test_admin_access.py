"""The admin sits behind allauth: its login is allauth's (rate limits and MFA apply), and a
staff account without a second factor is refused every admin page."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.urls import reverse

from accounts.models import User
from tests.accounts.test_mfa_and_rate_limits import totp
from tests.conftest import PASSWORD
from tests.factories import UserFactory

ADMIN = "/admin/"


@pytest.fixture
def staff(db) -> User:
    return UserFactory(email="ops@example.com", is_staff=True, is_superuser=True)


def _with_totp(user: User) -> str:
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return secret


def _allauth_login(client, email, password=PASSWORD, next_url=ADMIN):
    return client.post(
        reverse("account_login"), {"login": email, "password": password, "next": next_url}
    )


def test_the_admin_login_is_allauths(client, staff):
    response = client.get(ADMIN, follow=True)
    # /admin/ → the admin's login → allauth's login page, coming back to the admin after.
    final = urlsplit(response.redirect_chain[-1][0])
    assert final.path == reverse("account_login")
    assert parse_qs(final.query)["next"][0].startswith("/admin/")
    assert response.status_code == 200


def test_the_admin_login_form_no_longer_takes_a_password(client, staff):
    """Before: POST /admin/login/ logged a staff member in with a password alone, without MFA
    and without allauth's failed-login limit."""
    response = client.post(
        reverse("admin:login"), {"username": staff.email, "password": PASSWORD, "next": ADMIN}
    )
    assert response.status_code == 302
    assert urlsplit(response["Location"]).path == reverse("account_login")
    assert "_auth_user_id" not in client.session
    assert client.get(ADMIN).status_code == 302


def test_staff_with_mfa_needs_the_second_factor_to_reach_the_admin(client, staff):
    secret = _with_totp(staff)
    response = _allauth_login(client, staff.email)
    assert response["Location"] == reverse("mfa_authenticate")
    # The password alone opens nothing: the admin sends back to the pending second factor.
    assert "_auth_user_id" not in client.session
    chain = client.get(ADMIN, follow=True).redirect_chain
    assert urlsplit(chain[-1][0]).path == reverse("mfa_authenticate")

    done = client.post(reverse("mfa_authenticate"), {"code": totp(secret)})
    assert done.status_code == 302
    page = client.get(ADMIN)
    assert page.status_code == 200
    assert b"LLM API administration" in page.content


def test_staff_without_mfa_are_refused_with_a_page_saying_to_enable_it(client, staff):
    response = _allauth_login(client, staff.email)
    assert response.status_code == 302
    assert "_auth_user_id" in client.session  # logged in to the site...
    for url in (ADMIN, reverse("admin:accounts_organization_changelist")):
        page = client.get(url)
        assert page.status_code == 403  # ...but not into the admin
        assert b"Turn on two-factor authentication" in page.content
        assert reverse("mfa_activate_totp").encode() in page.content


def test_a_logged_in_person_who_is_not_staff_is_refused(client, alice):
    client.force_login(alice.user)
    assert client.get(reverse("admin:login")).status_code == 403
    assert client.get(ADMIN).status_code in (302, 403)
    assert client.get(ADMIN, follow=True).status_code == 403


def test_admin_login_attempts_count_against_allauths_failed_login_limit(client, staff):
    _with_totp(staff)
    for _ in range(5):
        assert _allauth_login(client, staff.email, password="wrong").status_code == 200
    blocked = _allauth_login(client, staff.email)
    assert "_auth_user_id" not in client.session
    assert b"Too many failed login attempts" in blocked.content
