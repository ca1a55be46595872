from __future__ import annotations

from django.conf import settings
from django.db import transaction

from accounts.exceptions import AccountsError
from accounts.models import APIKey, AuditLog, Membership, Organization, Role, User
from accounts.permissions import Perm, role_can
from accounts.services.api_keys import api_key_revoke
from accounts.services.audit import audit_log_record
from accounts.services.free_credit import free_credit_claim
from accounts.services.sessions import member_sessions_close


@transaction.atomic
def organization_create(*, user: User, name: str, is_personal: bool = False) -> Organization:
    name = name.strip()
    if not name:
        raise AccountsError("An organization needs a name.")
    # Locking the person serializes their concurrent creations, so the cap counts them all.
    User.objects.select_for_update().filter(pk=user.pk).first()
    limit = settings.ACCOUNTS_MAX_OWNED_ORGANIZATIONS
    if Membership.objects.filter(user=user, role=Role.OWNER).count() >= limit:
        raise AccountsError(
            f"You already own {limit} organizations, the most one person can own. Make "
            "someone else the owner of one you no longer run, or invite your team into an "
            "existing one.",
            code="organization_limit",
        )
    org = Organization.objects.create(name=name[:100], is_personal=is_personal, created_by=user)
    Membership.objects.create(organization=org, user=user, role=Role.OWNER)
    audit_log_record(
        organization=org, actor=user, action=AuditLog.Action.ORG_CREATED, target=org.name
    )
    # The first organization of a verified person carries their free credit; any later one
    # starts at $0 (billing grants once per person).
    free_credit_claim(user=user, organization=org)
    return org


@transaction.atomic
def organization_rename(*, organization: Organization, actor: User, name: str) -> Organization:
    name = name.strip()
    if not name:
        raise AccountsError("An organization needs a name.")
    old = organization.name
    organization.name = name[:100]
    organization.save(update_fields=["name"])
    audit_log_record(
        organization=organization,
        actor=actor,
        action=AuditLog.Action.ORG_RENAMED,
        target=organization.name,
        data={"from": old, "to": organization.name},
    )
    return organization


def _lock_owners(organization: Organization) -> list[Membership]:
    # Locking every owner row serializes concurrent demotions/removals, so two owners can't
    # each demote the other and leave nobody in charge.
    return list(
        Membership.objects.select_for_update()
        .filter(organization=organization, role=Role.OWNER)
        .order_by("id")
    )


def _lock_for_change(membership: Membership) -> tuple[Membership, list[Membership]]:
    # Owners first, then the member, always in that order: two owners demoting each other at
    # once queue up instead of deadlocking.
    owners = _lock_owners(membership.organization)
    return Membership.objects.select_for_update().get(pk=membership.pk), owners


def _ensure_not_last_owner(membership: Membership, owners: list[Membership], *, doing: str) -> None:
    if membership.role != Role.OWNER:
        return
    if len(owners) <= 1:
        raise AccountsError(
            f"The last owner can't {doing}. Make someone else an owner first.", code="last_owner"
        )


@transaction.atomic
def membership_change_role(*, membership: Membership, actor: User, role: str) -> Membership:
    if role not in Role.values:
        raise AccountsError("Unknown role.")
    membership, owners = _lock_for_change(membership)
    if membership.role == role:
        return membership
    if role != Role.OWNER:
        _ensure_not_last_owner(membership, owners, doing="be demoted")
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_log_record(
        organization=membership.organization,
        actor=actor,
        action=AuditLog.Action.MEMBER_ROLE_CHANGED,
        target=membership.user.email,
        data={"from": old, "to": role},
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: User, keys_to: User | None = None) -> None:
    """Removes a member. The API keys they created in the organization are revoked, or handed
    to `keys_to` (an owner or admin who stays); their live sessions there are closed."""
    membership, owners = _lock_for_change(membership)
    leaving = membership.user_id == actor.pk
    _ensure_not_last_owner(membership, owners, doing="leave" if leaving else "be removed")
    organization, user = membership.organization, membership.user
    if keys_to is not None:
        heir = Membership.objects.filter(organization=organization, user=keys_to).first()
        if keys_to.pk == user.pk or heir is None or not role_can(heir.role, Perm.REVOKE_ANY_KEY):
            raise AccountsError(
                "API keys can only be handed to an owner or admin who stays in the organization.",
                code="invalid_key_heir",
            )
    audit_log_record(
        organization=organization,
        actor=actor,
        action=AuditLog.Action.MEMBER_LEFT if leaving else AuditLog.Action.MEMBER_REMOVED,
        target=user.email,
        data={"role": membership.role, "keys": "revoked" if keys_to is None else keys_to.email},
    )
    membership.delete()
    _settle_keys(organization=organization, user=user, actor=actor, keys_to=keys_to)
    organization_id, user_id = organization.id, user.pk
    transaction.on_commit(
        lambda: member_sessions_close(organization_id=organization_id, user_id=user_id)
    )


def _settle_keys(
    *, organization: Organization, user: User, actor: User, keys_to: User | None
) -> None:
    # A person who left keeps no working key of the organization: it would keep spending its
    # money, under no member's name.
    keys = APIKey.objects.select_for_update().filter(
        organization=organization, created_by=user, revoked_at__isnull=True
    )
    for key in keys:
        if keys_to is None:
            api_key_revoke(api_key=key, actor=actor)
            continue
        key.created_by = keys_to
        key.save(update_fields=["created_by"])
        audit_log_record(
            organization=organization,
            actor=actor,
            action=AuditLog.Action.API_KEY_UPDATED,
            target=f"{key.name} ({key.masked})",
            data={
                "key_id": str(key.id),
                "fields": ["created_by"],
                "from": user.email,
                "to": keys_to.email,
            },
        )


def membership_leave(*, membership: Membership) -> None:
    membership_remove(membership=membership, actor=membership.user)


@transaction.atomic
def organization_set_rate_limits(
    *, organization: Organization, actor: User, rpm_limit: int | None, tpm_limit: int | None
) -> Organization:
    for value, label in ((rpm_limit, "requests per minute"), (tpm_limit, "tokens per minute")):
        if value is not None and value < 1:
            raise AccountsError(f"The {label} limit must be at least 1.")
    old = {"rpm": organization.rpm_limit, "tpm": organization.tpm_limit}
    organization.rpm_limit = rpm_limit
    organization.tpm_limit = tpm_limit
    organization.save(update_fields=["rpm_limit", "tpm_limit"])
    audit_log_record(
        organization=organization,
        actor=actor,
        action=AuditLog.Action.ORG_LIMITS_CHANGED,
        target=organization.name,
        data={"from": old, "to": {"rpm": rpm_limit, "tpm": tpm_limit}},
    )
    # Every key carries its organization's limits in the auth cache: refresh them all.
    from accounts.services.api_keys import publish_key

    for key in organization.api_keys.filter(revoked_at__isnull=True):
        key.organization = organization
        publish_key(key)
    return organization


@transaction.atomic
def organization_set_allowed_origins(
    *, organization: Organization, actor: User, origins: list[str]
) -> Organization:
    """The web origins whose pages may call the API with the organization's keys from a
    browser (keys with a list of their own keep it)."""
    from accounts.services.api_keys import origins_clean, publish_key

    cleaned = origins_clean(origins)
    old = list(organization.allowed_origins or [])
    organization.allowed_origins = cleaned
    organization.save(update_fields=["allowed_origins"])
    audit_log_record(
        organization=organization,
        actor=actor,
        action=AuditLog.Action.ORG_ORIGINS_CHANGED,
        target=organization.name,
        data={"from": old, "to": cleaned},
    )
    for key in organization.api_keys.filter(revoked_at__isnull=True):
        key.organization = organization
        publish_key(key)
    return organization
