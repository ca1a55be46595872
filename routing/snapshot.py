"""An in-memory, immutable snapshot of the catalog, rebuilt only when the catalog changes.

The hot path reads models and endpoints from here: no query per request. A process checks the
shared catalog version (one cache read) at most every CATALOG_REFRESH_SECONDS.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError

from config.db import run_db
from config.localcache import process_cache as cache
from routing.models import CatalogModel, CatalogVersion, Endpoint, Provider
from routing.providers.base import Target

logger = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{([A-Z0-9_]+)\}")


@dataclass(frozen=True, slots=True)
class EndpointSnap:
    id: int
    model_id: str
    provider: str
    provider_name: str
    region: str
    wire: str
    target: Target
    simulated: bool
    # nano-USD per 1M tokens
    input_price: int
    cached_input_price: int
    cache_write_price: int
    cache_write_1h_price: int
    output_price: int
    reasoning_price: int
    context_window: int
    max_output_tokens: int
    nominal_latency_ms: int
    nominal_throughput_tps: int
    # Image URLs are fetched by us and inlined before it is called (routing.imagefetch).
    self_hosted: bool = False

    @property
    def key(self) -> str:
        return f"{self.model_id}@{self.provider}"

    @property
    def blended_price(self) -> int:
        """3:1 input:output, the usual way to quote one price per 1M tokens."""
        return (3 * self.input_price + self.output_price) // 4


@dataclass(frozen=True, slots=True)
class ModelSnap:
    id: str
    name: str
    description: str
    aliases: tuple[str, ...]
    context_window: int
    max_output_tokens: int
    input_modalities: tuple[str, ...]
    supports_tools: bool
    supports_structured_output: bool
    reasoning_levels: tuple[str, ...]
    is_embedding: bool
    created: int
    endpoints: tuple[EndpointSnap, ...]


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    version: int
    models: tuple[ModelSnap, ...]
    by_name: dict[str, ModelSnap]

    def resolve(self, name: str) -> ModelSnap | None:
        return self.by_name.get(name.strip().lower())

    def suggest(self, name: str, n: int = 3) -> list[str]:
        ids = [m.id for m in self.models]
        close = difflib.get_close_matches(
            name.strip().lower(), list(self.by_name), n=n * 2, cutoff=0.4
        )
        seen: list[str] = []
        for candidate in close:
            model_id = self.by_name[candidate].id
            if model_id not in seen:
                seen.append(model_id)
        return seen[:n] or ids[:n]


def _fill(template: str) -> str | None:
    """`{VAR}` placeholders from the environment; None when one is missing."""
    missing = False

    def sub(match: re.Match) -> str:
        nonlocal missing
        value = os.environ.get(match.group(1), "")
        missing = missing or not value
        return value

    filled = _PLACEHOLDER.sub(sub, template)
    return None if missing else filled.rstrip("/")


def _simulator_base(provider: Provider) -> str:
    root = f"{settings.SIMULATOR_URL.rstrip('/')}/{provider.slug}"
    if provider.wire == "openai":
        return f"{root}/v1"
    if provider.wire == "gemini":
        if provider.auth == "bearer":  # Vertex AI's URL shape
            region = provider.region or "us-central1"
            return f"{root}/v1/projects/simulated/locations/{region}/publishers/google"
        return f"{root}/v1beta"
    return root


def provider_configured(provider: Provider) -> bool:
    """Are this provider's credentials (and any {VAR} of its URL) in the environment?"""
    api_key = os.environ.get(provider.credentials_env, "") if provider.credentials_env else ""
    return bool(api_key) and _fill(provider.base_url) is not None


def _target(provider: Provider, upstream_model: str) -> tuple[Target, bool] | None:
    """How to call this provider, and whether the simulator plays it; None when it can't be
    called at all (no credentials where providers are never simulated: production)."""
    api_key = os.environ.get(provider.credentials_env, "") if provider.credentials_env else ""
    base_url = _fill(provider.base_url)
    configured = bool(api_key and base_url)
    if not configured and not settings.ROUTING_SIMULATE_MISSING_PROVIDERS:
        if not settings.ROUTING_FORCE_SIMULATOR:
            return None
    if settings.ROUTING_FORCE_SIMULATOR or not configured:
        # No credentials: the provider simulator plays this provider, with its profile.
        return (
            Target(
                provider=provider.slug,
                wire=provider.wire,
                base_url=_simulator_base(provider),
                api_key="simulated",
                upstream_model=upstream_model,
                auth=provider.auth,
            ),
            True,
        )
    return (
        Target(
            provider=provider.slug,
            wire=provider.wire,
            base_url=base_url,
            api_key=api_key,
            upstream_model=upstream_model,
            auth=provider.auth,
        ),
        False,
    )


def build_snapshot() -> CatalogSnapshot:
    version = CatalogVersion.objects.filter(pk=1).values_list("version", flat=True).first() or 0
    endpoints_by_model: dict[int, list[EndpointSnap]] = {}
    for e in Endpoint.objects.filter(enabled=True).select_related("provider", "model"):
        called = _target(e.provider, e.upstream_model)
        if called is None:
            continue  # disabled: no credentials, and never simulated here
        target, simulated = called
        endpoints_by_model.setdefault(e.model_id, []).append(
            EndpointSnap(
                id=e.id,
                model_id=e.model.public_id,
                provider=e.provider.slug,
                provider_name=e.provider.name,
                region=e.provider.region,
                wire=e.provider.wire,
                target=target,
                simulated=simulated,
                input_price=e.input_price,
                cached_input_price=e.cached_input_price,
                cache_write_price=e.cache_write_price,
                cache_write_1h_price=e.cache_write_1h_price,
                output_price=e.output_price,
                reasoning_price=e.reasoning_price,
                context_window=e.context_window,
                max_output_tokens=e.max_output_tokens,
                nominal_latency_ms=e.nominal_latency_ms,
                nominal_throughput_tps=e.nominal_throughput_tps,
                self_hosted=e.provider.self_hosted,
            )
        )
    models = []
    by_name: dict[str, ModelSnap] = {}
    for m in CatalogModel.objects.all():
        snap = ModelSnap(
            id=m.public_id,
            name=m.name,
            description=m.description,
            aliases=tuple(m.aliases),
            context_window=m.context_window,
            max_output_tokens=m.max_output_tokens,
            input_modalities=tuple(m.input_modalities),
            supports_tools=m.supports_tools,
            supports_structured_output=m.supports_structured_output,
            reasoning_levels=tuple(m.reasoning_levels),
            is_embedding=m.is_embedding,
            created=int(m.created_at.timestamp()),
            endpoints=tuple(endpoints_by_model.get(m.pk, ())),
        )
        models.append(snap)
        for name in (m.public_id, *m.aliases):
            by_name[name.lower()] = snap
    return CatalogSnapshot(version=version, models=tuple(models), by_name=by_name)


class SnapshotHolder:
    def __init__(self) -> None:
        self._snapshot: CatalogSnapshot | None = None
        self._checked_at = 0.0

    def invalidate(self) -> None:
        self._snapshot = None

    def get(self) -> CatalogSnapshot:
        now = time.monotonic()
        if self._snapshot is not None and now - self._checked_at < settings.CATALOG_REFRESH_SECONDS:
            return self._snapshot
        version = cache.get(CATALOG_VERSION_CACHE_KEY)
        if self._snapshot is None or version is None or version != self._snapshot.version:
            try:
                self._snapshot = build_snapshot()
            except DatabaseError:
                if self._snapshot is None:
                    raise
                logger.warning("catalog not refreshed (database unavailable): serving the last")
            else:
                cache.set(CATALOG_VERSION_CACHE_KEY, self._snapshot.version, None)
        self._checked_at = now
        return self._snapshot

    async def aget(self) -> CatalogSnapshot:
        now = time.monotonic()
        snapshot = self._snapshot
        if snapshot is not None and now - self._checked_at < settings.CATALOG_REFRESH_SECONDS:
            return snapshot
        if snapshot is not None:
            # One request checks; the others in flight meanwhile go on with the snapshot they
            # have instead of all asking the shared cache at once.
            self._checked_at = now
        version = await cache.aget(CATALOG_VERSION_CACHE_KEY)
        measured = await cache.aget(MEASURED_HEALTH_CACHE_KEY)
        if measured is not None:
            from routing.health import health_book

            health_book.set_measured(measured)
        if snapshot is None or version is None or version != snapshot.version:
            try:
                fresh = await run_db(build_snapshot)
            except DatabaseError:
                # The database is down: the last copy keeps serving (a cold process has none).
                if snapshot is None:
                    raise
                logger.warning("catalog not refreshed (database unavailable): serving the last")
            else:
                snapshot = self._snapshot = fresh
                await cache.aset(CATALOG_VERSION_CACHE_KEY, snapshot.version, None)
        self._checked_at = now
        return snapshot


CATALOG_VERSION_CACHE_KEY = "routing:catalog-version"
# Endpoint health measured from all traffic (routing.services.endpoint_health_publish).
MEASURED_HEALTH_CACHE_KEY = "routing:measured-health"
catalog = SnapshotHolder()
