"""A member's live sessions (the dashboard's WebSockets) in one organization: each joins the
Channels group named here, and removing the member closes them all."""

from __future__ import annotations

import logging
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

MEMBERSHIP_REVOKED = "membership.revoked"


def member_session_group(*, organization_id: uuid.UUID | str, user_id: int | str) -> str:
    return f"member.{organization_id}.{user_id}"


def member_sessions_close(*, organization_id: uuid.UUID | str, user_id: int | str) -> None:
    """Best effort: a socket this misses (channel layer down) finds out at its next
    membership re-check (LIVE_MEMBERSHIP_RECHECK_SECONDS)."""
    layer = get_channel_layer()
    if layer is None:
        return
    group = member_session_group(organization_id=organization_id, user_id=user_id)
    try:
        async_to_sync(layer.group_send)(group, {"type": MEMBERSHIP_REVOKED})
    except Exception:
        logger.warning("could not close the live sessions of a removed member", exc_info=True)
