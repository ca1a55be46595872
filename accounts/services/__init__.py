"""Every write to accounts goes through here."""

from __future__ import annotations

from accounts.services.api_keys import api_key_create, api_key_revoke, api_key_update
from accounts.services.audit import audit_log_record
from accounts.services.free_credit import free_credit_claim
from accounts.services.invitations import (
    invitation_accept,
    invitation_create,
    invitation_decline,
    invitation_revoke,
    invitation_token,
)
from accounts.services.organizations import (
    membership_change_role,
    membership_leave,
    membership_remove,
    organization_create,
    organization_rename,
    organization_set_allowed_origins,
    organization_set_rate_limits,
)
from accounts.services.users import (
    user_email_verified,
    user_get_or_create_verified,
    user_signed_up,
)

__all__ = [
    "api_key_create",
    "api_key_revoke",
    "api_key_update",
    "audit_log_record",
    "free_credit_claim",
    "invitation_accept",
    "invitation_create",
    "invitation_decline",
    "invitation_revoke",
    "invitation_token",
    "membership_change_role",
    "membership_leave",
    "membership_remove",
    "organization_create",
    "organization_rename",
    "organization_set_allowed_origins",
    "organization_set_rate_limits",
    "user_email_verified",
    "user_get_or_create_verified",
    "user_signed_up",
]
