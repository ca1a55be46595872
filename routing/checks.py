"""System checks: where providers are never simulated (production), every enabled endpoint's
provider must have its credentials, or the process refuses to start."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import DatabaseError


@checks.register()
def providers_have_credentials(
    app_configs: Any = None, databases: Iterable[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    if settings.ROUTING_SIMULATE_MISSING_PROVIDERS:
        return []
    if settings.ROUTING_FORCE_SIMULATOR:
        return [
            checks.Warning(
                "Every provider is played by the provider simulator "
                "(LLMAPI_FORCE_SIMULATOR): no answer comes from a real model, and no "
                "generation is billed.",
                id="routing.W001",
            )
        ]
    from routing.models import Endpoint, Provider
    from routing.services import CATALOG_FILE
    from routing.snapshot import provider_configured

    # The catalog data file is what `load_catalog` deploys; the database may say more (an
    # endpoint enabled by hand), when the check is given one (migrate, check --database).
    used: dict[str, Provider] = {}
    data = json.loads(CATALOG_FILE.read_text())
    enabled = {e["provider"] for e in data["endpoints"] if e.get("enabled", True)}
    for p in data["providers"]:
        if p["slug"] in enabled:
            used[p["slug"]] = Provider(
                slug=p["slug"],
                base_url=p["base_url"],
                credentials_env=p.get("credentials_env", ""),
            )
    if databases and "default" in databases:
        try:
            for e in Endpoint.objects.filter(enabled=True).select_related("provider"):
                used.setdefault(e.provider.slug, e.provider)
        except DatabaseError:
            pass  # not migrated yet: the file is all there is
    return [
        checks.Error(
            f"Provider '{slug}' serves enabled endpoints but has no credentials "
            f"({provider.credentials_env or 'no credentials variable'} unset, or a {{VAR}} "
            "of its base URL): its endpoints are disabled, never simulated, here.",
            hint=f"Set {provider.credentials_env or 'its credentials'}, or disable its "
            'endpoints ("enabled": false in the catalog file, then manage.py load_catalog).',
            obj=slug,
            id="routing.E001",
        )
        for slug, provider in sorted(used.items())
        if not provider_configured(provider)
    ]
