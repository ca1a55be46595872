"""What each role may do, as data: views ask `role_can(role, perm)`, never branch on role names."""

from __future__ import annotations

from enum import StrEnum

from accounts.models import Role


class Perm(StrEnum):
    VIEW = "view"
    CREATE_KEYS = "create_keys"
    REVOKE_ANY_KEY = "revoke_any_key"
    MANAGE_MEMBERS = "manage_members"
    MANAGE_OWNERS = "manage_owners"
    MANAGE_ORG = "manage_org"
    VIEW_AUDIT = "view_audit"
    MANAGE_BILLING = "manage_billing"


ROLE_PERMISSIONS: dict[str, frozenset[Perm]] = {
    Role.OWNER: frozenset(Perm),
    Role.ADMIN: frozenset(
        {
            Perm.VIEW,
            Perm.CREATE_KEYS,
            Perm.REVOKE_ANY_KEY,
            Perm.MANAGE_MEMBERS,
            Perm.MANAGE_ORG,
            Perm.VIEW_AUDIT,
        }
    ),
    # Developers create keys and revoke the ones they created.
    Role.DEVELOPER: frozenset({Perm.VIEW, Perm.CREATE_KEYS}),
    Role.BILLING: frozenset({Perm.VIEW, Perm.MANAGE_BILLING}),
    Role.VIEWER: frozenset({Perm.VIEW}),
}


def role_can(role: str, perm: Perm) -> bool:
    return perm in ROLE_PERMISSIONS.get(role, frozenset())
