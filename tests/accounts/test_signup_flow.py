from __future__ import annotations

import re

from django.core import mail
from django.urls import reverse

from accounts.models import Membership, Role, User


def _signup(client, email="dana@example.com", password="a long and unusual passphrase"):
    return client.post(
        reverse("account_signup"),
        {"email": email, "password1": password, "password2": password},
    )


def test_signup_sends_a_verification_link_and_makes_a_personal_organization(client, db):
    response = _signup(client)
    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    user = User.objects.get(email="dana@example.com")
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER
    assert membership.organization.is_personal

    # Email verification is mandatory: no dashboard before the link is followed.
    assert client.get(reverse("dashboard")).status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", mail.outbox[0].body).group(0)
    path = link.split("testserver", 1)[1]
    confirm = client.post(path)
    assert confirm.status_code == 302
    landing = client.get(reverse("dashboard"), follow=True)
    assert landing.status_code == 200
    assert landing.redirect_chain[-1][0] == reverse(
        "org_overview", kwargs={"org_id": membership.organization_id}
    )


def test_unverified_user_cannot_log_in(client, db):
    _signup(client)
    client.logout()
    response = client.post(
        reverse("account_login"),
        {"login": "dana@example.com", "password": "a long and unusual passphrase"},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
