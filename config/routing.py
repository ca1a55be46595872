"""WebSocket routes. The live dashboard streams land here in a later step."""

from __future__ import annotations

websocket_urlpatterns: list = []
