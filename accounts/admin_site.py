"""The Django admin behind allauth: its login is allauth's (rate limits, MFA and every login
stage apply), and a staff account without a second factor is refused every admin page."""

from __future__ import annotations

from functools import wraps

from allauth.account.decorators import secure_admin_login
from allauth.mfa.models import Authenticator
from allauth.mfa.utils import is_mfa_enabled
from django.contrib import admin
from django.shortcuts import render

# Recovery codes alone are no second factor: they come with one.
SECOND_FACTORS = [Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN]


class SecureAdminSite(admin.AdminSite):
    site_header = "LLM API administration"
    site_title = "LLM API admin"

    def login(self, request, extra_context=None):
        # Anonymous visitors go to allauth's login page; the admin's own form, which skipped
        # MFA and the login rate limits, never sees a password.
        return secure_admin_login(super().login)(request, extra_context=extra_context)

    def admin_view(self, view, cacheable=False):
        guarded = super().admin_view(view, cacheable)

        @wraps(guarded)
        def inner(request, *args, **kwargs):
            user = request.user
            if user.is_active and user.is_staff and not is_mfa_enabled(user, types=SECOND_FACTORS):
                return render(request, "admin/mfa_required.html", status=403)
            return guarded(request, *args, **kwargs)

        return inner
