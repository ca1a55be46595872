"""Dashboard pages for organizations, members, invitations, API keys and the audit log."""

from __future__ import annotations

from decimal import Decimal

from allauth.core import ratelimit
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts import selectors, services
from accounts.access import CURRENT_ORG_SESSION_KEY, can, org_view
from accounts.exceptions import AccountsError
from accounts.forms import (
    NANO_PER_USD,
    AllowedOriginsForm,
    APIKeyCreateForm,
    InvitationForm,
    KeysHandOverForm,
    OrganizationForm,
    RoleForm,
    split_origins,
)
from accounts.models import Organization, Role
from accounts.permissions import Perm, role_can
from billing import services as billing_services


def public_base_url(request: HttpRequest) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") or request.build_absolute_uri("/").rstrip("/")


def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "landing.html", {"base_url": public_base_url(request)})


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Where login lands: the organization used last, else the first one."""
    orgs = selectors.organization_list_for_user(user=request.user)
    wanted = request.session.get(CURRENT_ORG_SESSION_KEY)
    org = next((o for o in orgs if str(o.id) == wanted), None) or orgs.first()
    if org is None:
        return redirect("org_create")
    return redirect("org_overview", org_id=org.id)


@login_required
def organization_create(request: HttpRequest) -> HttpResponse:
    form = OrganizationForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        # allauth's limiter, per person, in the shared cache (so it holds across processes).
        if not ratelimit.consume(request, action="create_organization", user=request.user):
            form.add_error(
                None,
                "You're creating organizations too quickly. Try again in a few minutes.",
            )
            status = 429
        else:
            try:
                org = services.organization_create(
                    user=request.user, name=form.cleaned_data["name"]
                )
            except AccountsError as error:
                form.add_error("name", error.message)
            else:
                messages.success(request, _created_message(org))
                return redirect("org_overview", org_id=org.id)
    return render(request, "accounts/organization_create.html", {"form": form}, status=status)


def _created_message(org: Organization) -> str:
    account = billing_services.billing_account_for(organization=org)
    if not account.plan.is_prepaid:
        return f"Created {org.name}."
    if account.balance_nanousd > 0:
        usd = Decimal(account.balance_nanousd) / NANO_PER_USD
        return f"Created {org.name}, with ${usd:,.2f} of free starting credit."
    return (
        f"Created {org.name}. It starts at $0: the free starting credit comes once per person, "
        "with their first organization. Add credit on its Billing page before calling the API."
    )


@org_view(Perm.VIEW)
def organization_settings(request: HttpRequest) -> HttpResponse:
    saving_origins = request.method == "POST" and request.POST.get("action") == "origins"
    form = OrganizationForm(
        request.POST if request.method == "POST" and not saving_origins else None,
        initial={"name": request.org.name},
    )
    origins_form = AllowedOriginsForm(
        request.POST if saving_origins else None,
        initial={"allowed_origins": "\n".join(request.org.allowed_origins or [])},
    )
    if saving_origins:
        if not can(request, Perm.MANAGE_ORG):
            raise PermissionDenied
        if origins_form.is_valid():
            try:
                services.organization_set_allowed_origins(
                    organization=request.org,
                    actor=request.user,
                    origins=split_origins(origins_form.cleaned_data["allowed_origins"]),
                )
            except AccountsError as error:
                origins_form.add_error("allowed_origins", error.message)
            else:
                messages.success(request, "Browser origins saved.")
                return redirect("org_settings", org_id=request.org.id)
    elif request.method == "POST":
        if not can(request, Perm.MANAGE_ORG):
            raise PermissionDenied
        if form.is_valid():
            services.organization_rename(
                organization=request.org, actor=request.user, name=form.cleaned_data["name"]
            )
            messages.success(request, "Organization renamed.")
            return redirect("org_settings", org_id=request.org.id)
    return render(
        request,
        "accounts/organization_settings.html",
        {
            "form": form,
            "origins_form": origins_form,
            "active_nav": "settings",
            "can_manage": can(request, Perm.MANAGE_ORG),
        },
    )


@org_view(Perm.VIEW)
@require_POST
def organization_leave(request: HttpRequest) -> HttpResponse:
    try:
        services.membership_leave(membership=request.membership)
    except AccountsError as error:
        messages.error(request, error.message)
        return redirect("org_settings", org_id=request.org.id)
    request.session.pop(CURRENT_ORG_SESSION_KEY, None)
    messages.success(request, f"You left {request.org.name}.")
    return redirect("dashboard")


@org_view(Perm.VIEW)
def api_keys(request: HttpRequest) -> HttpResponse:
    form = APIKeyCreateForm(request.POST or None)
    created = None
    if request.method == "POST":
        if not can(request, Perm.CREATE_KEYS):
            raise PermissionDenied
        if form.is_valid():
            try:
                key, secret = services.api_key_create(
                    organization=request.org, created_by=request.user, **form.service_kwargs()
                )
            except AccountsError as error:
                form.add_error(None, error.message)
            else:
                created = {"key": key, "secret": secret}
                form = APIKeyCreateForm()
    keys = selectors.api_key_list(organization=request.org)
    response = render(
        request,
        "accounts/api_keys.html",
        {
            "form": form,
            "keys": keys,
            "created": created,
            "base_url": public_base_url(request),
            "can_create": can(request, Perm.CREATE_KEYS),
            "can_revoke_any": can(request, Perm.REVOKE_ANY_KEY),
            "active_nav": "keys",
        },
    )
    if created:
        # The secret is on this page once; keep it out of every cache and the back button.
        response["Cache-Control"] = "no-store"
    return response


@org_view(Perm.VIEW)
@require_POST
def api_key_revoke(request: HttpRequest, key_id) -> HttpResponse:
    key = selectors.api_key_get(organization=request.org, key_id=key_id)
    own_key = key.created_by_id == request.user.pk and can(request, Perm.CREATE_KEYS)
    if not (can(request, Perm.REVOKE_ANY_KEY) or own_key):
        raise PermissionDenied
    services.api_key_revoke(api_key=key, actor=request.user)
    messages.success(request, f"Revoked {key.name}. It stops working everywhere within a second.")
    return redirect("api_keys", org_id=request.org.id)


@org_view(Perm.VIEW)
def members(request: HttpRequest) -> HttpResponse:
    form = InvitationForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if not can(request, Perm.MANAGE_MEMBERS):
            raise PermissionDenied
        if form.is_valid():
            role = form.cleaned_data["role"]
            if role == Role.OWNER and not can(request, Perm.MANAGE_OWNERS):
                form.add_error("role", "Only owners can invite owners.")
            elif not ratelimit.consume(
                request, action="invite_member", user=request.user, key=str(request.org.id)
            ):
                form.add_error(
                    None,
                    "Too many invitations sent in a short time, by you or this organization. "
                    "Try again later.",
                )
                status = 429
            else:
                try:
                    services.invitation_create(
                        organization=request.org,
                        invited_by=request.user,
                        email=form.cleaned_data["email"],
                        role=role,
                        base_url=public_base_url(request),
                    )
                except AccountsError as error:
                    field = None if error.code == "too_many_pending" else "email"
                    form.add_error(field, error.message)
                else:
                    messages.success(request, f"Invitation sent to {form.cleaned_data['email']}.")
                    return redirect("members", org_id=request.org.id)
    memberships = list(selectors.membership_list(organization=request.org))
    return render(
        request,
        "accounts/members.html",
        {
            "form": form,
            "memberships": memberships,
            "key_heirs": [m for m in memberships if role_can(m.role, Perm.REVOKE_ANY_KEY)],
            "invitations": selectors.invitation_list_pending(organization=request.org),
            "roles": Role.choices,
            "can_manage": can(request, Perm.MANAGE_MEMBERS),
            "can_manage_owners": can(request, Perm.MANAGE_OWNERS),
            "active_nav": "members",
        },
        status=status,
    )


def _check_can_touch(request: HttpRequest, role: str) -> None:
    if not can(request, Perm.MANAGE_MEMBERS):
        raise PermissionDenied
    if role == Role.OWNER and not can(request, Perm.MANAGE_OWNERS):
        raise PermissionDenied("Only owners can change owners.")


@org_view(Perm.VIEW)
@require_POST
def membership_role(request: HttpRequest, membership_id) -> HttpResponse:
    membership = selectors.membership_get(organization=request.org, membership_id=membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Pick a valid role.")
        return redirect("members", org_id=request.org.id)
    new_role = form.cleaned_data["role"]
    _check_can_touch(request, membership.role)
    _check_can_touch(request, new_role)
    try:
        services.membership_change_role(membership=membership, actor=request.user, role=new_role)
    except AccountsError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{membership.user.email} is now {new_role}.")
    return redirect("members", org_id=request.org.id)


@org_view(Perm.VIEW)
@require_POST
def membership_remove(request: HttpRequest, membership_id) -> HttpResponse:
    membership = selectors.membership_get(organization=request.org, membership_id=membership_id)
    if membership.user_id != request.user.pk:
        _check_can_touch(request, membership.role)
    # The form's choice for the keys they created: "revoke" (the default), or the membership
    # of the owner or admin who takes them over.
    keys_to = None
    choice = request.POST.get("keys", "revoke")
    if choice != "revoke":
        form = KeysHandOverForm({"heir": choice})
        if not form.is_valid():
            messages.error(request, "Pick who takes over their API keys.")
            return redirect("members", org_id=request.org.id)
        keys_to = selectors.membership_get(
            organization=request.org, membership_id=form.cleaned_data["heir"]
        ).user
    try:
        services.membership_remove(membership=membership, actor=request.user, keys_to=keys_to)
    except AccountsError as error:
        messages.error(request, error.message)
        return redirect("members", org_id=request.org.id)
    if membership.user_id == request.user.pk:
        request.session.pop(CURRENT_ORG_SESSION_KEY, None)
        return redirect("dashboard")
    handed = (
        f" Their API keys now belong to {keys_to.email}."
        if keys_to
        else (" Their API keys were revoked.")
    )
    messages.success(request, f"Removed {membership.user.email}.{handed}")
    return redirect("members", org_id=request.org.id)


@org_view(Perm.MANAGE_MEMBERS)
@require_POST
def invitation_revoke(request: HttpRequest, invitation_id) -> HttpResponse:
    invitation = selectors.invitation_get(organization=request.org, invitation_id=invitation_id)
    try:
        services.invitation_revoke(invitation=invitation, actor=request.user)
    except AccountsError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Invitation to {invitation.email} withdrawn.")
    return redirect("members", org_id=request.org.id)


@org_view(Perm.VIEW_AUDIT)
def audit_log(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "accounts/audit_log.html",
        {"entries": selectors.audit_log_list(organization=request.org), "active_nav": "settings"},
    )


def invitation_respond(request: HttpRequest, token: str) -> HttpResponse:
    """The link in an invitation email. Anyone may look; only the addressee may answer."""
    invitation = selectors.invitation_from_token(token=token)
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"{reverse('account_login')}?next={request.path}")
        try:
            if request.POST.get("answer") == "accept":
                services.invitation_accept(invitation=invitation, user=request.user)
                messages.success(request, f"Welcome to {invitation.organization.name}.")
                return redirect("org_overview", org_id=invitation.organization_id)
            services.invitation_decline(invitation=invitation, user=request.user)
            messages.info(request, "Invitation declined.")
            return redirect("dashboard")
        except AccountsError as error:
            messages.error(request, error.message)
    return render(
        request,
        "accounts/invitation_respond.html",
        {
            "invitation": invitation,
            "is_addressee": request.user.is_authenticated
            and request.user.email.lower() == invitation.email.lower(),
        },
    )
