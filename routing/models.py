from __future__ import annotations

from django.db import models
from django.utils import timezone


class WireFormat(models.TextChoices):
    OPENAI = "openai", "OpenAI-compatible"
    ANTHROPIC = "anthropic", "Anthropic Messages"
    GEMINI = "gemini", "Google Gemini"


class Provider(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    wire = models.CharField(max_length=16, choices=WireFormat.choices)
    # May hold {ENV_VAR} placeholders, filled from the environment (a project id, a host).
    base_url = models.CharField(max_length=300)
    auth = models.CharField(max_length=32, default="bearer")
    # The credential is never stored: only the name of the environment variable holding it.
    credentials_env = models.CharField(max_length=64, blank=True)
    region = models.CharField(max_length=64, blank=True)
    simulated_latency_ms = models.PositiveIntegerField(default=0)
    simulated_tokens_per_second = models.PositiveIntegerField(default=0)
    # Our own deployment (vLLM and the like): it may reach internal addresses, so image URLs
    # sent to it are fetched by us (routing.imagefetch) and inlined, never passed on.
    self_hosted = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(wire__in=["openai", "anthropic", "gemini"]),
                name="routing_provider_wire_valid",
            )
        ]

    def __str__(self) -> str:
        return self.name


class CatalogModel(models.Model):
    """A model as clients name it (`google/gemini-3.1-flash-lite`), whoever serves it."""

    public_id = models.CharField(max_length=128, unique=True)
    aliases = models.JSONField(default=list, blank=True)
    name = models.CharField(max_length=128)
    description = models.TextField(blank=True)
    context_window = models.PositiveIntegerField()
    max_output_tokens = models.PositiveIntegerField()
    input_modalities = models.JSONField(default=list, blank=True)
    supports_tools = models.BooleanField(default=False)
    supports_structured_output = models.BooleanField(default=False)
    reasoning_levels = models.JSONField(default=list, blank=True)
    is_embedding = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["public_id"]
        verbose_name = "model"

    def __str__(self) -> str:
        return self.public_id


class Endpoint(models.Model):
    """One provider serving one model, at its own prices and limits.

    Prices are integer nano-USD per 1M tokens ($0.05 per 1M tokens = 50_000_000), so a cost is
    exact integer arithmetic: tokens × price // 1M, rounded once per request.
    """

    model = models.ForeignKey(CatalogModel, on_delete=models.CASCADE, related_name="endpoints")
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="endpoints")
    upstream_model = models.CharField(max_length=128)
    input_price = models.BigIntegerField()
    cached_input_price = models.BigIntegerField()
    # Prompt tokens written to the provider's cache (Anthropic `cache_control`): 1.25x the
    # input price for the 5-minute cache, 2x for the 1-hour one. Equal to input_price where
    # writing to the cache costs nothing extra.
    cache_write_price = models.BigIntegerField()
    cache_write_1h_price = models.BigIntegerField()
    output_price = models.BigIntegerField()
    reasoning_price = models.BigIntegerField()
    context_window = models.PositiveIntegerField()
    max_output_tokens = models.PositiveIntegerField()
    # Nominal figures from the catalog, shown until traffic measures the real ones.
    nominal_latency_ms = models.PositiveIntegerField(default=0)
    nominal_throughput_tps = models.PositiveIntegerField(default=0)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["model", "provider"]
        constraints = [
            models.UniqueConstraint(fields=["model", "provider"], name="routing_endpoint_unique"),
            models.CheckConstraint(
                condition=models.Q(input_price__gte=0)
                & models.Q(cached_input_price__gte=0)
                & models.Q(cache_write_price__gte=0)
                & models.Q(cache_write_1h_price__gte=0)
                & models.Q(output_price__gte=0)
                & models.Q(reasoning_price__gte=0),
                name="routing_endpoint_prices_nonnegative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.public_id} @ {self.provider.slug}"


class CatalogVersion(models.Model):
    """Bumped on every catalog change, so each process knows when its snapshot is stale."""

    version = models.PositiveIntegerField(default=0)
    loaded_from = models.PositiveIntegerField(default=0, help_text="Version of the data file.")
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"catalog v{self.version}"


class RoutingStrategy(models.TextChoices):
    PRICE = "price", "Price"
    LATENCY = "latency", "Latency"
    THROUGHPUT = "throughput", "Throughput"


class RoutingPolicy(models.Model):
    """An organization's default routing: what applies when a request doesn't say otherwise."""

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.CASCADE, related_name="routing_policy"
    )
    strategy = models.CharField(
        max_length=16, choices=RoutingStrategy.choices, default=RoutingStrategy.PRICE
    )
    # Provider slugs, best first; tried before the strategy's own order.
    provider_order = models.JSONField(default=list, blank=True)
    ignored_providers = models.JSONField(default=list, blank=True)
    allow_fallbacks = models.BooleanField(default=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "routing policies"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(strategy__in=["price", "latency", "throughput"]),
                name="routing_policy_strategy_valid",
            )
        ]

    def __str__(self) -> str:
        return f"routing policy of {self.organization_id}"


class StoredResponse(models.Model):
    """A /v1/responses answer kept (`store`, the default) so it can be retrieved and continued
    with `previous_response_id`, for RESPONSES_RETENTION_DAYS. Its id is its generation's
    (`resp_<hex>` for `gen-<hex>`): request logs and the ledger name the same call."""

    id = models.CharField(primary_key=True, max_length=64, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )
    # The key that created it (no foreign key: a deleted key leaves its responses readable).
    key_id = models.UUIDField()
    # The Response object as it was answered, JSON text: its cost stays an exact decimal.
    response = models.TextField()
    # The conversation up to and including this answer, as chat messages (instructions aside,
    # as OpenAI doesn't carry them over): what previous_response_id continues from.
    conversation = models.JSONField(default=list)
    # This request's input, as Responses items (GET .../input_items).
    input_items = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return self.id


from routing.batches.models import Batch, BatchFile, BatchItem  # noqa: E402,F401
