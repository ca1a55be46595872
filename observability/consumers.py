"""The live WebSockets: the overview's /ws/orgs/<org_id>/live/, and the public pages'
/ws/platform/live/ (PlatformTotalsConsumer, at the end).

Only a logged-in member of the organization gets in (anyone else is refused with close code
4403 before the handshake completes). On joining, the member gets the current figures, then one
message per written batch of the organization's requests (observability.live). A member who is
removed is disconnected with 4403: at once (accounts sends to the member's session group), and
in any case by the membership re-check every LIVE_MEMBERSHIP_RECHECK_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from accounts.selectors import member_session_group, membership_find
from observability import live
from observability.selectors import overview_figures, platform_figures

CLOSE_FORBIDDEN = 4403
logger = logging.getLogger(__name__)


def _member_org_id(user, organization_id) -> str | None:
    membership = membership_find(user=user, organization_id=organization_id)
    return str(membership.organization_id) if membership is not None else None


def _figures(organization_id: str) -> dict:
    return overview_figures(organization_id=organization_id)


class LiveOverviewConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    member_group: str | None = None
    recheck: asyncio.Task | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        org_id = self.scope["url_route"]["kwargs"]["org_id"]
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        organization_id = await database_sync_to_async(_member_org_id)(user, org_id)
        if organization_id is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = live.group_for(organization_id)
        self.member_group = member_session_group(organization_id=organization_id, user_id=user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.channel_layer.group_add(self.member_group, self.channel_name)
        await self.accept()
        self.recheck = asyncio.create_task(self._recheck_membership(user, organization_id))
        figures = await database_sync_to_async(_figures)(organization_id)
        await self.send_json({"type": "snapshot", "figures": figures})

    async def _recheck_membership(self, user, organization_id: str) -> None:
        while True:
            await asyncio.sleep(settings.LIVE_MEMBERSHIP_RECHECK_SECONDS)
            try:
                member = await database_sync_to_async(_member_org_id)(user, organization_id)
            except Exception:
                # The database is away: the socket stays, the next round asks again.
                logger.warning("live membership re-check failed", exc_info=True)
                continue
            if member is None:
                await self.close(code=CLOSE_FORBIDDEN)
                return

    async def disconnect(self, code) -> None:
        if self.recheck is not None:
            self.recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.recheck
        for group in (self.group, self.member_group):
            if group is not None:
                await self.channel_layer.group_discard(group, self.channel_name)

    async def membership_revoked(self, event) -> None:
        """The member was removed from the organization (accounts.services.sessions)."""
        await self.close(code=CLOSE_FORBIDDEN)

    async def receive_json(self, content, **kwargs) -> None:
        """The stream is one-way; whatever the page sends is ignored."""

    async def overview_update(self, event) -> None:
        await self.send_json({"type": "update", **event["data"]})

    async def batch_progress(self, event) -> None:
        """A batch of the organization moved (routing.batches.live)."""
        await self.send_json({"type": "batch", "batch": event["data"]})


def _platform_totals() -> dict:
    figures = platform_figures()
    return {name: figures[name] for name in (*live.PLATFORM_COUNTS, "uptime")}


class PlatformTotalsConsumer(AsyncJsonWebsocketConsumer):
    """/ws/platform/live/: the public model pages' 30-day platform totals, for anyone.

    On joining: the totals; then, per written batch of anyone's requests, what it added
    (counts only: nothing about who made them)."""

    async def connect(self) -> None:
        # Joined before the totals are read, so no batch falls between the two.
        await self.channel_layer.group_add(live.PLATFORM_GROUP, self.channel_name)
        await self.accept()
        totals = await database_sync_to_async(_platform_totals)()
        await self.send_json({"type": "snapshot", "totals": totals})

    async def disconnect(self, code) -> None:
        await self.channel_layer.group_discard(live.PLATFORM_GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        """One-way, like the organization's stream."""

    async def platform_update(self, event) -> None:
        await self.send_json({"type": "update", **event["data"]})
