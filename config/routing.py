"""WebSocket routes (Channels): the live dashboard streams."""

from __future__ import annotations

from django.urls import path

from observability.consumers import LiveOverviewConsumer, PlatformTotalsConsumer

websocket_urlpatterns: list = [
    path("ws/orgs/<uuid:org_id>/live/", LiveOverviewConsumer.as_asgi(), name="ws_org_live"),
    path("ws/platform/live/", PlatformTotalsConsumer.as_asgi(), name="ws_platform_live"),
]
