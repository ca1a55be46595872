"""What observability keeps: one row per generation and per upstream attempt, hourly rollups,
the durable queue of the embedded default, and each organization's log settings.

Rows are written only by the batch writer (observability.services.logs), never on the request
path. Ids of other apps' rows (API keys, catalog endpoints) are plain columns, not foreign keys:
a log outlives a revoked key or a reloaded catalog, and the playground has no key row at all.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from accounts.models import Organization

# The rollups' latency histogram: upper bounds in ms of each bucket, the last one open-ended.
LATENCY_BUCKETS_MS: tuple[int, ...] = (250, 500, 1000, 2500, 5000, 10000, 30000)
LATENCY_BUCKET_FIELDS: tuple[str, ...] = (
    "lat_le_250ms",
    "lat_le_500ms",
    "lat_le_1s",
    "lat_le_2500ms",
    "lat_le_5s",
    "lat_le_10s",
    "lat_le_30s",
    "lat_gt_30s",
)
# A rollup row's key dimension when a generation had no key.
NO_KEY = uuid.UUID(int=0)


class RequestStatus:
    """A log's status: "ok", "client_disconnected", or the error kind that ended it."""

    OK = "ok"
    CLIENT_DISCONNECTED = "client_disconnected"
    # Refusals by a provider's rate limit: not counted against uptime.
    RATE_LIMITED = ("rate_limited", "upstream_rate_limited")


class RequestLog(models.Model):
    id = models.BigAutoField(primary_key=True)
    generation_id = models.CharField(max_length=64, unique=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    key_id = models.UUIDField(null=True, blank=True)
    requested_model = models.CharField(max_length=120)
    model = models.CharField(max_length=120)
    provider = models.CharField(max_length=64)
    endpoint_id = models.IntegerField(null=True, blank=True)
    status = models.CharField(max_length=40)
    error_kind = models.CharField(max_length=40, blank=True)
    streamed = models.BooleanField(default=False)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    cost_nanousd = models.BigIntegerField(default=0)
    received_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    # Milliseconds: in the gateway before the first upstream request went out, from that
    # request to the first token of the answer that was served, and end to end.
    gateway_ms = models.FloatField(null=True, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField()
    tokens_per_second = models.FloatField(null=True, blank=True)
    attempt_count = models.PositiveSmallIntegerField(default=1)
    # Only when the organization opted in (OrganizationLogSettings), capped in size.
    prompt_body = models.TextField(null=True, blank=True)
    response_body = models.TextField(null=True, blank=True)
    written_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # The explorer's filters, each newest first (keyset pagination on received_at, id).
            models.Index(fields=["organization", "-received_at", "-id"], name="obs_log_org_time"),
            # Retention finds the oldest logs of every organization at once.
            models.Index(fields=["received_at"], name="obs_log_received"),
            models.Index(
                fields=["organization", "model", "-received_at"], name="obs_log_org_model"
            ),
            models.Index(fields=["organization", "key_id", "-received_at"], name="obs_log_org_key"),
            models.Index(
                fields=["organization", "status", "-received_at"], name="obs_log_org_status"
            ),
            models.Index(
                fields=["organization", "provider", "-received_at"], name="obs_log_org_provider"
            ),
        ]

    def __str__(self) -> str:
        return self.generation_id

    @property
    def ok(self) -> bool:
        return self.status == RequestStatus.OK

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class RequestAttempt(models.Model):
    """One upstream call of a generation: a fallback shows as several, in order."""

    id = models.BigAutoField(primary_key=True)
    log = models.ForeignKey(RequestLog, on_delete=models.CASCADE, related_name="attempts")
    index = models.PositiveSmallIntegerField()
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=120)
    outcome = models.CharField(max_length=40)  # "ok", an error kind, or "cancelled"
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    message = models.CharField(max_length=300, blank=True)
    # From the generation's arrival to this attempt's start (when the gateway reports it).
    offset_ms = models.FloatField(null=True, blank=True)
    duration_ms = models.FloatField(default=0)
    ttft_ms = models.FloatField(null=True, blank=True)
    hedged = models.BooleanField(default=False)

    class Meta:
        ordering = ["log_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["log", "index"], name="obs_attempt_log_index_unique")
        ]

    def __str__(self) -> str:
        return f"{self.log_id}#{self.index} {self.provider} {self.outcome}"


class UsageRollup(models.Model):
    """Per organization x key x model x provider x hour: what every 30-day figure is read from.

    Kept by the writer with additive upserts in the same transaction as the log rows, so a
    rollup never counts a generation whose log row isn't there, or twice.
    """

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    hour = models.DateTimeField()
    key_id = models.UUIDField(default=NO_KEY)
    model = models.CharField(max_length=120)
    provider = models.CharField(max_length=64)
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)  # failures, rate limits not included
    rate_limited = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cost_nanousd = models.BigIntegerField(default=0)
    latency_ms_sum = models.FloatField(default=0)
    ttft_ms_sum = models.FloatField(default=0)
    ttft_count = models.BigIntegerField(default=0)
    lat_le_250ms = models.BigIntegerField(default=0)
    lat_le_500ms = models.BigIntegerField(default=0)
    lat_le_1s = models.BigIntegerField(default=0)
    lat_le_2500ms = models.BigIntegerField(default=0)
    lat_le_5s = models.BigIntegerField(default=0)
    lat_le_10s = models.BigIntegerField(default=0)
    lat_le_30s = models.BigIntegerField(default=0)
    lat_gt_30s = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "hour", "model", "provider", "key_id"],
                name="obs_rollup_grain_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.organization_id} {self.hour:%Y-%m-%d %H}h {self.model} {self.provider}"


class LogQueueItem(models.Model):
    """The request logs' durable queue (with or without Redis): one row per pushed batch of
    encoded generation events, deleted in the transaction that writes their logs."""

    id = models.BigAutoField(primary_key=True)
    payload = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"log batch {self.id}"


class OrganizationLogSettings(models.Model):
    """Per organization: whether prompt and response bodies are kept (off by default)."""

    MIN_BODY_BYTES = 1024
    MAX_BODY_BYTES_CEILING = 64 * 1024

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    store_bodies = models.BooleanField(default=False)
    max_body_bytes = models.PositiveIntegerField(default=16 * 1024)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "organization log settings"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(max_body_bytes__lte=64 * 1024),
                name="obs_log_settings_body_cap",
            )
        ]

    def __str__(self) -> str:
        return f"log settings of {self.organization_id}"


# Fixed histogram buckets for endpoint health: a percentile is reported as the upper bound of
# the bucket it falls in (the last bucket reports its lower bound, "at least").
TTFT_BOUNDS_MS = (100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000)
TPS_BOUNDS = (10, 25, 50, 75, 100, 150, 200, 300, 500)


class EndpointHealthMinute(models.Model):
    """One endpoint (provider x model) in one minute of real traffic, counted by attempt:
    what its uptime, time to first token and throughput are read from (never the logs)."""

    id = models.BigAutoField(primary_key=True)
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=120)
    minute = models.DateTimeField()
    ok = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    rate_limited = models.PositiveIntegerField(default=0)  # not counted in uptime
    # len(BOUNDS) + 1 buckets each, as JSON lists of counts (merged in Python on write).
    ttft = models.JSONField(default=list)
    tps = models.JSONField(default=list)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model", "minute"], name="obs_health_endpoint_minute"
            )
        ]
        indexes = [models.Index(fields=["minute"], name="obs_health_minute")]

    def __str__(self) -> str:
        return f"{self.model}@{self.provider} {self.minute:%Y-%m-%d %H:%M}"
