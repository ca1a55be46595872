from __future__ import annotations

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        from django.core import checks

        from billing.checks import redis_persistence_check

        checks.register(redis_persistence_check, "billing")
