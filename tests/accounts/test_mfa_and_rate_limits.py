"""Two-factor authentication (TOTP + recovery codes) and allauth's rate limits, end to end
through the real pages."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time

from allauth.mfa.models import Authenticator
from django.urls import reverse

from tests.conftest import PASSWORD


def totp(secret: str, at: float | None = None) -> str:
    """RFC 6238, computed here independently of allauth."""
    counter = int((at or time.time()) // 30)
    digest = hmac.new(
        base64.b32decode(secret, casefold=True), struct.pack(">Q", counter), hashlib.sha1
    ).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def _login(client, email, password=PASSWORD):
    return client.post(reverse("account_login"), {"login": email, "password": password})


def test_totp_activation_then_login_needs_a_second_factor(client, alice):
    assert _login(client, alice.user.email).status_code == 302
    # Turning on MFA asks for the password again first.
    page = client.get(reverse("mfa_activate_totp"))
    assert page["Location"].startswith(reverse("account_reauthenticate"))
    client.post(page["Location"], {"password": PASSWORD})
    page = client.get(reverse("mfa_activate_totp"))
    assert page.status_code == 200
    secret = client.session["mfa.totp.secret"]

    wrong = client.post(reverse("mfa_activate_totp"), {"code": "000000"})
    assert wrong.status_code == 200  # form shown again with an error
    assert not Authenticator.objects.filter(user=alice.user).exists()

    done = client.post(reverse("mfa_activate_totp"), {"code": totp(secret)})
    assert done.status_code == 302
    types = set(Authenticator.objects.filter(user=alice.user).values_list("type", flat=True))
    assert types == {Authenticator.Type.TOTP, Authenticator.Type.RECOVERY_CODES}

    codes = client.get(reverse("mfa_view_recovery_codes")).context["unused_codes"]
    assert len(codes) >= 8

    client.post(reverse("account_logout"))
    response = _login(client, alice.user.email)
    assert response.status_code == 302
    assert response["Location"] == reverse("mfa_authenticate")
    # The password alone doesn't open the dashboard.
    assert client.get(reverse("dashboard"))["Location"].startswith(reverse("account_login"))

    assert client.post(reverse("mfa_authenticate"), {"code": "123456"}).status_code == 200
    ok = client.post(reverse("mfa_authenticate"), {"code": codes[0]})
    assert ok.status_code == 302
    assert client.get(reverse("dashboard")).status_code == 302  # → the organization overview
    assert client.get(reverse("dashboard"), follow=True).status_code == 200

    # A recovery code works once.
    client.post(reverse("account_logout"))
    _login(client, alice.user.email)
    assert client.post(reverse("mfa_authenticate"), {"code": codes[0]}).status_code == 200


def test_repeated_failed_logins_are_rate_limited(client, alice):
    for _ in range(5):
        response = _login(client, alice.user.email, password="wrong password")
        assert response.status_code == 200
    # login_failed allows 5 per 5 minutes per account: the sixth try, even with the right
    # password, is refused.
    blocked = _login(client, alice.user.email)
    assert blocked.status_code == 200
    assert "_auth_user_id" not in client.session
    assert b"Too many failed login attempts" in blocked.content
