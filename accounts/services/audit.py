from __future__ import annotations

from typing import Any

from accounts.models import AuditLog, Organization, User


def audit_log_record(
    *,
    organization: Organization,
    actor: User | None,
    action: AuditLog.Action,
    target: str = "",
    data: dict[str, Any] | None = None,
) -> AuditLog:
    """Called inside the service's own transaction, so the row and the change land together."""
    return AuditLog.objects.create(
        organization=organization, actor=actor, action=action, target=target, data=data or {}
    )
