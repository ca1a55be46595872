"""The admin app, on our AdminSite (accounts.admin_site). Kept apart from it: INSTALLED_APPS
imports this module before any model can load."""

from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class SecureAdminConfig(AdminConfig):
    default_site = "accounts.admin_site.SecureAdminSite"
