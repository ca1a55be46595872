"""Every read from accounts goes through here. Tenant reads take the organization first."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core import signing
from django.db.models import QuerySet
from django.http import Http404

from accounts import keyformat
from accounts.api_key_auth import AuthenticatedKey, KeyRejected, aauthenticate, authenticate
from accounts.models import APIKey, AuditLog, Invitation, Membership, Organization, User
from accounts.services.invitations import TOKEN_SALT
from accounts.services.sessions import member_session_group

__all__ = [
    "AuthenticatedKey",
    "KeyRejected",
    "api_key_authenticate",
    "api_key_authenticate_async",
    "api_key_authenticated_by_id",
    "api_key_get",
    "api_key_well_formed",
    "api_key_list",
    "audit_log_list",
    "invitation_from_token",
    "invitation_get",
    "invitation_list_pending",
    "member_session_group",
    "membership_find",
    "membership_for_user",
    "membership_get",
    "membership_list",
    "organization_list_for_user",
]


def api_key_authenticate(*, raw_key: str) -> AuthenticatedKey:
    """The gateway's door: a bearer token in, the key and its organization out, or
    KeyRejected. Zero queries when the key is warm."""
    return authenticate(raw_key)


def api_key_well_formed(raw_key: str) -> bool:
    """Shape and checksum of a bearer token, without a query or a cache lookup: cheap enough to
    refuse junk before a request's body is read."""
    return bool(raw_key) and keyformat.is_well_formed(raw_key)


async def api_key_authenticate_async(*, raw_key: str) -> AuthenticatedKey:
    return await aauthenticate(raw_key)


def api_key_authenticated_by_id(*, key_id: uuid.UUID | str) -> AuthenticatedKey:
    """A stored key as the gateway sees it, for work done later on the caller's behalf (a
    batch's items); KeyRejected when it is gone, revoked or expired."""
    key = APIKey.objects.select_related("organization").filter(id=key_id).first()
    if key is None:
        raise KeyRejected("This API key no longer exists.")
    authenticated = AuthenticatedKey.from_instance(key)
    if authenticated.revoked:
        raise KeyRejected("This API key has been revoked.", code="revoked_api_key")
    return authenticated


def organization_list_for_user(*, user: User) -> QuerySet[Organization]:
    return Organization.objects.filter(memberships__user=user).order_by(
        "-is_personal", "name", "created_at"
    )


def membership_find(*, user: User, organization_id: uuid.UUID | str) -> Membership | None:
    if not getattr(user, "is_authenticated", False):
        return None
    return (
        Membership.objects.select_related("organization")
        .filter(user=user, organization_id=organization_id)
        .first()
    )


def membership_for_user(*, user: User, organization_id: uuid.UUID | str) -> Membership:
    """The one tenant gate: a membership, or 404 for anyone who isn't a member."""
    membership = membership_find(user=user, organization_id=organization_id)
    if membership is None:
        raise Http404
    return membership


def membership_list(*, organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organization=organization)
        .select_related("user")
        .order_by("created_at")
    )


def membership_get(*, organization: Organization, membership_id: uuid.UUID) -> Membership:
    membership = (
        Membership.objects.select_related("user", "organization")
        .filter(organization=organization, id=membership_id)
        .first()
    )
    if membership is None:
        raise Http404
    return membership


def invitation_list_pending(*, organization: Organization) -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        organization=organization, status=Invitation.Status.PENDING
    ).select_related("invited_by")


def invitation_get(*, organization: Organization, invitation_id: uuid.UUID) -> Invitation:
    invitation = Invitation.objects.filter(organization=organization, id=invitation_id).first()
    if invitation is None:
        raise Http404
    return invitation


def invitation_from_token(*, token: str) -> Invitation:
    """A link from an invitation email. Tampered or too old: 404, like any unknown id."""
    max_age = settings.INVITATION_MAX_AGE_DAYS * 24 * 3600
    try:
        invitation_id = signing.loads(token, salt=TOKEN_SALT, max_age=max_age)
    except signing.BadSignature:
        raise Http404 from None
    invitation = (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(id=invitation_id)
        .first()
    )
    if invitation is None:
        raise Http404
    return invitation


def api_key_list(*, organization: Organization) -> QuerySet[APIKey]:
    return APIKey.objects.filter(organization=organization).select_related("created_by")


def api_key_get(*, organization: Organization, key_id: uuid.UUID) -> APIKey:
    key = APIKey.objects.filter(organization=organization, id=key_id).first()
    if key is None:
        raise Http404
    return key


def audit_log_list(*, organization: Organization, limit: int = 200) -> QuerySet[AuditLog]:
    return AuditLog.objects.filter(organization=organization).select_related("actor")[:limit]
