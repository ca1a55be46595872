from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts import keyformat
from accounts.api_key_auth import AuthenticatedKey, key_cache
from accounts.exceptions import AccountsError
from accounts.models import APIKey, AuditLog, Organization, User
from accounts.services.audit import audit_log_record


def _validate_limits(
    *,
    spend_limit_nanousd: int | None,
    spend_limit_period: str,
    rpm_limit: int | None,
    tpm_limit: int | None,
    allowed_models: list[str],
) -> None:
    if spend_limit_nanousd is not None and spend_limit_nanousd < 0:
        raise AccountsError("A spend limit can't be negative.")
    if spend_limit_period not in APIKey.SpendPeriod.values:
        raise AccountsError("Unknown spend limit period.")
    for value, label in ((rpm_limit, "requests per minute"), (tpm_limit, "tokens per minute")):
        if value is not None and value < 1:
            raise AccountsError(f"The {label} limit must be at least 1.")
    if not all(isinstance(m, str) and m.strip() for m in allowed_models):
        raise AccountsError("Allowed models must be model ids.")


_ORIGIN = re.compile(r"https?://[a-z0-9.-]+(:[0-9]{1,5})?")


def origins_clean(origins: list[str] | None) -> list[str]:
    """Browser origins as the Origin header spells them (scheme://host[:port], lowercase, no
    path), or "*" for any; raises AccountsError naming the first one that isn't."""
    cleaned: list[str] = []
    for raw in origins or []:
        origin = raw.strip().lower().rstrip("/")
        if not origin:
            continue
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise AccountsError(
                f"{raw.strip()!r} is not an origin: write it as https://app.example.com "
                "(scheme, host and port only), or * for any."
            )
        if origin not in cleaned:
            cleaned.append(origin)
    if len(cleaned) > 50:
        raise AccountsError("At most 50 origins.")
    return cleaned


@transaction.atomic
def api_key_create(
    *,
    organization: Organization,
    created_by: User | None,
    name: str,
    expires_at: datetime | None = None,
    spend_limit_nanousd: int | None = None,
    spend_limit_period: str = APIKey.SpendPeriod.MONTHLY,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    allowed_models: list[str] | None = None,
    allowed_origins: list[str] | None = None,
) -> tuple[APIKey, str]:
    """Returns the key and its secret. The secret exists only in this return value: show it
    once and forget it."""
    name = name.strip()
    if not name:
        raise AccountsError("A key needs a name.")
    if expires_at is not None and expires_at <= timezone.now():
        raise AccountsError("The expiry must be in the future.")
    allowed_models = [m.strip() for m in (allowed_models or [])]
    _validate_limits(
        spend_limit_nanousd=spend_limit_nanousd,
        spend_limit_period=spend_limit_period,
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
        allowed_models=allowed_models,
    )
    raw = keyformat.generate()
    key = APIKey.objects.create(
        organization=organization,
        name=name[:100],
        hashed_key=keyformat.hash_key(raw),
        prefix=keyformat.display_prefix(raw),
        last4=keyformat.last4(raw),
        created_by=created_by,
        expires_at=expires_at,
        spend_limit_nanousd=spend_limit_nanousd,
        spend_limit_period=spend_limit_period,
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
        allowed_models=allowed_models,
        allowed_origins=origins_clean(allowed_origins),
    )
    audit_log_record(
        organization=organization,
        actor=created_by,
        action=AuditLog.Action.API_KEY_CREATED,
        target=f"{key.name} ({key.masked})",
        data={"key_id": str(key.id), "expires_at": expires_at.isoformat() if expires_at else None},
    )
    return key, raw


def publish_key(key: APIKey) -> None:
    record = AuthenticatedKey.from_instance(key)
    transaction.on_commit(lambda: key_cache.replace(key.hashed_key, record))


@transaction.atomic
def api_key_update(*, api_key: APIKey, actor: User, **changes: Any) -> APIKey:
    allowed = {
        "name",
        "expires_at",
        "spend_limit_nanousd",
        "spend_limit_period",
        "rpm_limit",
        "tpm_limit",
        "allowed_models",
        "allowed_origins",
    }
    unknown = set(changes) - allowed
    if unknown:
        raise AccountsError(f"Can't change {', '.join(sorted(unknown))}.")
    if changes.get("expires_at") is not None and changes["expires_at"] <= timezone.now():
        raise AccountsError("The expiry must be in the future.")
    if "allowed_origins" in changes:
        changes["allowed_origins"] = origins_clean(changes["allowed_origins"])
    if "allowed_models" in changes:
        changes["allowed_models"] = [m.strip() for m in changes["allowed_models"] or []]
    key = APIKey.objects.select_for_update().get(pk=api_key.pk)
    for field, value in changes.items():
        setattr(key, field, value)
    key.name = key.name.strip()
    if not key.name:
        raise AccountsError("A key needs a name.")
    _validate_limits(
        spend_limit_nanousd=key.spend_limit_nanousd,
        spend_limit_period=key.spend_limit_period,
        rpm_limit=key.rpm_limit,
        tpm_limit=key.tpm_limit,
        allowed_models=key.allowed_models,
    )
    key.save(update_fields=sorted(changes))
    audit_log_record(
        organization=key.organization,
        actor=actor,
        action=AuditLog.Action.API_KEY_UPDATED,
        target=f"{key.name} ({key.masked})",
        data={"key_id": str(key.id), "fields": sorted(changes)},
    )
    publish_key(key)
    return key


@transaction.atomic
def api_key_revoke(*, api_key: APIKey, actor: User | None) -> APIKey:
    key = APIKey.objects.select_for_update().get(pk=api_key.pk)
    if key.revoked_at is not None:
        return key
    key.revoked_at = timezone.now()
    key.revoked_by = actor
    key.save(update_fields=["revoked_at", "revoked_by"])
    audit_log_record(
        organization=key.organization,
        actor=actor,
        action=AuditLog.Action.API_KEY_REVOKED,
        target=f"{key.name} ({key.masked})",
        data={"key_id": str(key.id)},
    )
    publish_key(key)
    return key
