from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from observability.models import OrganizationLogSettings


@transaction.atomic
def log_settings_update(
    *, organization: Organization, store_bodies: bool, max_body_bytes: int | None = None
) -> OrganizationLogSettings:
    """Turn the keeping of prompt and response bodies on or off for an organization."""
    row, _ = OrganizationLogSettings.objects.select_for_update().get_or_create(
        organization=organization
    )
    row.store_bodies = store_bodies
    if max_body_bytes is not None:
        row.max_body_bytes = max(0, min(max_body_bytes, row.MAX_BODY_BYTES_CEILING))
    row.updated_at = timezone.now()
    row.save()
    return row
