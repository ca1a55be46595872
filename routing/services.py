"""Writes to the routing app: the catalog, stored responses."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, transaction
from django.utils import timezone

from routing.models import CatalogModel, CatalogVersion, Endpoint, Provider, StoredResponse
from routing.snapshot import CATALOG_VERSION_CACHE_KEY, MEASURED_HEALTH_CACHE_KEY

logger = logging.getLogger(__name__)

CATALOG_FILE = Path(__file__).resolve().parent / "catalog" / "catalog.json"
NANO_PER_USD = 1_000_000_000


def price_to_nano(value: str | int | float) -> int:
    """ "0.05" USD per 1M tokens → 50_000_000 nano-USD per 1M tokens (exact)."""
    nano = Decimal(str(value)) * NANO_PER_USD
    if nano != nano.to_integral_value():
        raise ValueError(f"price {value} has more precision than a nano-USD per 1M tokens")
    return int(nano)


@transaction.atomic
def catalog_bump_version() -> int:
    row, _ = CatalogVersion.objects.select_for_update().get_or_create(pk=1)
    row.version += 1
    row.updated_at = timezone.now()
    row.save(update_fields=["version", "updated_at"])
    version = row.version
    transaction.on_commit(lambda: cache.set(CATALOG_VERSION_CACHE_KEY, version, None))
    return version


@transaction.atomic
def catalog_load(*, data: dict[str, Any] | None = None) -> dict[str, int]:
    """Loads the catalog data file into the database. Idempotent: running it twice changes
    nothing the second time. Rows the file no longer lists are disabled, never deleted (logs and
    bills refer to them)."""
    data = data if data is not None else json.loads(CATALOG_FILE.read_text())
    counts = {"providers": 0, "models": 0, "endpoints": 0, "changed": 0}
    providers: dict[str, Provider] = {}
    for p in data["providers"]:
        values = {
            "name": p["name"],
            "wire": p["wire"],
            "base_url": p["base_url"],
            "auth": p.get("auth", "bearer"),
            "credentials_env": p.get("credentials_env", ""),
            "region": p.get("region", ""),
            "simulated_latency_ms": p.get("simulated", {}).get("latency_ms", 0),
            "simulated_tokens_per_second": p.get("simulated", {}).get("tokens_per_second", 0),
            "self_hosted": p.get("self_hosted", False),
        }
        providers[p["slug"]], changed = _upsert(Provider, {"slug": p["slug"]}, values)
        counts["providers"] += 1
        counts["changed"] += changed
    models: dict[str, CatalogModel] = {}
    for m in data["models"]:
        caps = m.get("capabilities", {})
        values = {
            "aliases": m.get("aliases", []),
            "name": m["name"],
            "description": m.get("description", ""),
            "context_window": m["context_window"],
            "max_output_tokens": m["max_output_tokens"],
            "input_modalities": m.get("input_modalities", ["text"]),
            "supports_tools": caps.get("tools", False),
            "supports_structured_output": caps.get("structured_output", False),
            "reasoning_levels": caps.get("reasoning_levels", []),
            "is_embedding": caps.get("embeddings", False),
        }
        models[m["id"]], changed = _upsert(CatalogModel, {"public_id": m["id"]}, values)
        counts["models"] += 1
        counts["changed"] += changed
    listed = set()
    for e in data["endpoints"]:
        prices = e["prices"]
        values = {
            "upstream_model": e["upstream_model"],
            "input_price": price_to_nano(prices["input"]),
            "cached_input_price": price_to_nano(prices.get("cached_input", prices["input"])),
            "cache_write_price": price_to_nano(prices.get("cache_write", prices["input"])),
            "cache_write_1h_price": price_to_nano(
                prices.get("cache_write_1h", prices.get("cache_write", prices["input"]))
            ),
            "output_price": price_to_nano(prices["output"]),
            "reasoning_price": price_to_nano(prices.get("reasoning", prices["output"])),
            "context_window": e["context_window"],
            "max_output_tokens": e["max_output_tokens"],
            "nominal_latency_ms": e.get("latency_ms", 0),
            "nominal_throughput_tps": e.get("throughput_tps", 0),
            "enabled": e.get("enabled", True),
        }
        endpoint, changed = _upsert(
            Endpoint,
            {"model": models[e["model"]], "provider": providers[e["provider"]]},
            values,
        )
        listed.add(endpoint.pk)
        counts["endpoints"] += 1
        counts["changed"] += changed
    counts["changed"] += (
        Endpoint.objects.exclude(pk__in=listed).filter(enabled=True).update(enabled=False)
    )
    if counts["changed"]:
        catalog_bump_version()
    CatalogVersion.objects.filter(pk=1).update(loaded_from=data.get("version", 0))
    return counts


def _upsert(model, lookup: dict, values: dict):
    obj = model.objects.filter(**lookup).first()
    if obj is None:
        return model.objects.create(**lookup, **values), 1
    changed = [f for f, v in values.items() if getattr(obj, f) != v]
    for field in changed:
        setattr(obj, field, values[field])
    if changed:
        obj.save(update_fields=changed)
    return obj, int(bool(changed))


def endpoint_health_publish(*, figures: dict[str, dict[str, Any]]) -> None:
    """Endpoint health measured from every process's traffic ({"<model>@<provider>":
    {"ttft_ms_p50", "ttft_ms_p95", "throughput_p50", "uptime_30m"}}): this process uses it at
    once, the others at their next catalog check (no query on the request path)."""
    from routing.health import health_book

    cache.set(MEASURED_HEALTH_CACHE_KEY, figures, 3600)
    health_book.set_measured(figures)


def stored_responses_create(*, rows: list[dict[str, Any]]) -> int:
    """Keep /v1/responses answers for retrieval and `previous_response_id`, in one INSERT;
    each row: response_id, organization_id, key_id, response (its JSON text), conversation,
    input_items. When the batch fails, each row is tried on its own, so one bad row (its
    organization deleted meanwhile) doesn't lose the others. Returns the rows written."""
    objects = [
        StoredResponse(
            id=row["response_id"],
            organization_id=row["organization_id"],
            key_id=row["key_id"],
            response=row["response"],
            conversation=row["conversation"],
            input_items=row["input_items"],
        )
        for row in rows
    ]
    try:
        with transaction.atomic():
            StoredResponse.objects.bulk_create(objects)
        return len(objects)
    except DatabaseError:
        if len(objects) == 1:
            raise
    written = 0
    for stored in objects:
        try:
            with transaction.atomic():
                stored.save(force_insert=True)
            written += 1
        except DatabaseError:
            logger.exception("could not store the response %s", stored.id)
    return written


@transaction.atomic
def stored_response_delete(*, stored: StoredResponse) -> None:
    stored.delete()


def stored_responses_purge(*, now: datetime | None = None) -> int:
    """Stored responses past RESPONSES_RETENTION_DAYS go, RESPONSES_PURGE_BATCH at a time (at
    most RESPONSES_PURGE_MAX_BATCHES per run, so a backlog never holds a long lock)."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.RESPONSES_RETENTION_DAYS)
    purged = 0
    for _ in range(settings.RESPONSES_PURGE_MAX_BATCHES):
        ids = list(
            StoredResponse.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[
                : settings.RESPONSES_PURGE_BATCH
            ]
        )
        if not ids:
            break
        purged += StoredResponse.objects.filter(pk__in=ids).delete()[0]
    return purged
