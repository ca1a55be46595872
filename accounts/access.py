"""The one access helper every organization-scoped page goes through.

Non-members get 404 (the organization might as well not exist); members whose role lacks the
permission get 403.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from accounts.permissions import Perm, role_can
from accounts.selectors import membership_for_user

CURRENT_ORG_SESSION_KEY = "current_org_id"


def org_view(perm: Perm = Perm.VIEW) -> Callable:
    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, org_id, *args, **kwargs) -> HttpResponse:
            membership = membership_for_user(user=request.user, organization_id=org_id)
            if not role_can(membership.role, perm):
                raise PermissionDenied("Your role in this organization doesn't allow this.")
            request.org = membership.organization
            request.membership = membership
            if request.session.get(CURRENT_ORG_SESSION_KEY) != str(org_id):
                request.session[CURRENT_ORG_SESSION_KEY] = str(org_id)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def can(request: HttpRequest, perm: Perm) -> bool:
    membership = getattr(request, "membership", None)
    return membership is not None and role_can(membership.role, perm)


def placeholder_page(title: str, key: str, perm: Perm = Perm.VIEW, blurb: str = "") -> Callable:
    """A dashboard section that later work fills in: real navigation, honest "coming soon"."""
    from django.shortcuts import render

    @org_view(perm)
    def view(request: HttpRequest) -> HttpResponse:
        return render(
            request, "coming_soon.html", {"title": title, "active_nav": key, "blurb": blurb}
        )

    view.__name__ = f"{key}_placeholder"
    return view
