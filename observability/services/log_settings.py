from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import AuditLog, Organization, User
from accounts.services.audit import audit_log_record
from observability.models import OrganizationLogSettings


@transaction.atomic
def log_settings_update(
    *,
    organization: Organization,
    store_bodies: bool,
    max_body_bytes: int | None = None,
    actor: User | None = None,
) -> OrganizationLogSettings:
    """Turn the keeping of prompt and response bodies on or off for an organization (audited).
    The cap is clamped to OrganizationLogSettings' bounds. Each gateway process follows the
    change within observability.writer.buffer.BODY_ORGS_REFRESH_SECONDS."""
    row, _ = OrganizationLogSettings.objects.select_for_update().get_or_create(
        organization=organization
    )
    before = {"store_bodies": row.store_bodies, "max_body_bytes": row.max_body_bytes}
    row.store_bodies = store_bodies
    if max_body_bytes is not None:
        row.max_body_bytes = max(
            row.MIN_BODY_BYTES, min(max_body_bytes, row.MAX_BODY_BYTES_CEILING)
        )
    after = {"store_bodies": row.store_bodies, "max_body_bytes": row.max_body_bytes}
    row.updated_at = timezone.now()
    row.save()
    if after != before:
        audit_log_record(
            organization=organization,
            actor=actor,
            action=AuditLog.Action.LOG_SETTINGS_CHANGED,
            data={"before": before, "after": after},
        )
    return row
