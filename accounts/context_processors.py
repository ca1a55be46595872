from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse

from accounts.access import CURRENT_ORG_SESSION_KEY
from accounts.permissions import ROLE_PERMISSIONS, Perm
from accounts.selectors import membership_find, organization_list_for_user

# The dashboard's navigation: (key, label, url name, permission needed to see it).
NAV = (
    ("overview", "Overview", "org_overview", Perm.VIEW),
    ("playground", "Playground", "org_playground", Perm.VIEW),
    ("keys", "API keys", "api_keys", Perm.VIEW),
    ("usage", "Usage", "org_usage", Perm.VIEW),
    ("logs", "Logs", "org_logs", Perm.VIEW),
    ("batches", "Batches", "org_batches", Perm.VIEW),
    ("billing", "Billing", "org_billing", Perm.MANAGE_BILLING),
    ("members", "Members", "members", Perm.VIEW),
    ("settings", "Settings", "org_settings", Perm.VIEW),
)


def dashboard(request: HttpRequest) -> dict:
    context: dict = {"site_name": settings.SITE_NAME}
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return context
    org = getattr(request, "org", None)
    membership = getattr(request, "membership", None)
    context["user_orgs"] = list(organization_list_for_user(user=user))
    if org is None:
        # Account pages (password, MFA) keep the sidebar of the organization used last.
        wanted = request.session.get(CURRENT_ORG_SESSION_KEY)
        if wanted:
            membership = membership_find(user=user, organization_id=wanted)
            org = membership.organization if membership else None
    context["current_org"] = org
    context["current_membership"] = membership
    if org is not None and membership is not None:
        perms = ROLE_PERMISSIONS.get(membership.role, frozenset())
        context["perms_in_org"] = {p.value for p in perms}
        context["nav"] = [
            {"key": key, "label": label, "url": reverse(name, kwargs={"org_id": org.id})}
            for key, label, name, perm in NAV
            if perm in perms
        ]
    return context
