from __future__ import annotations

from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"

    def ready(self) -> None:
        from billing import services as billing
        from routing import (
            checks,  # noqa: F401  (registers the system checks)
            events,
        )

        # Streams cut by their server dying are logged by whichever process settles them.
        billing.orphans_subscribe(events.generation_orphaned)
