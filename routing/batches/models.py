"""Files and batches, OpenAI-compatible: an uploaded JSONL file, a batch over it, one item per
line. Item state is durable so a killed worker resumes without losing or repeating an item."""

from __future__ import annotations

import secrets

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization


def file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


def batch_id() -> str:
    return f"batch_{secrets.token_hex(12)}"


class BatchFile(models.Model):
    class Purpose(models.TextChoices):
        BATCH = "batch", "Batch input"
        BATCH_OUTPUT = "batch_output", "Batch output"

    id = models.CharField(primary_key=True, max_length=40, default=file_id, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    filename = models.CharField(max_length=255)
    bytes = models.BigIntegerField(default=0)
    lines = models.PositiveIntegerField(default=0)
    storage_name = models.CharField(max_length=300)
    endpoint = models.CharField(max_length=40, blank=True)  # the url every line calls
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return self.id


class Batch(models.Model):
    class Status(models.TextChoices):
        VALIDATING = "validating"
        IN_PROGRESS = "in_progress"
        FINALIZING = "finalizing"
        COMPLETED = "completed"
        FAILED = "failed"
        EXPIRED = "expired"
        CANCELLING = "cancelling"
        CANCELLED = "cancelled"

    FINISHED = ("completed", "failed", "expired", "cancelled")

    id = models.CharField(primary_key=True, max_length=40, default=batch_id, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    # The key the batch was created with: its items spend under its limits. No foreign key:
    # a deleted key stops the batch, the books keep the id.
    key_id = models.UUIDField()
    endpoint = models.CharField(max_length=40)
    completion_window = models.CharField(max_length=8, default="24h")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.VALIDATING)
    input_file = models.ForeignKey(BatchFile, on_delete=models.PROTECT, related_name="+")
    output_file = models.ForeignKey(
        BatchFile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error_file = models.ForeignKey(
        BatchFile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    metadata = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(null=True, blank=True)
    total = models.PositiveIntegerField(default=0)
    completed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    cost_nanousd = models.BigIntegerField(default=0)
    # Why a batch waits: out of credit or over a spend limit; cleared when it resumes.
    paused_reason = models.CharField(max_length=300, blank=True)
    # A runner holds the batch while this is in the future; the sweep restarts it after.
    runner_lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    in_progress_at = models.DateTimeField(null=True, blank=True)
    finalizing_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    cancelling_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            models.Index(fields=["status", "expires_at"]),
        ]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return self.id


class BatchItem(models.Model):
    """One line of the input file. Lines with the same body share one execution: the first
    of them (the leader) runs, the others copy its result."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        DUPLICATE = "duplicate"  # answered with its leader's result

    id = models.BigAutoField(primary_key=True)
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    line = models.PositiveIntegerField()
    custom_id = models.CharField(max_length=512)
    body_hash = models.CharField(max_length=64)
    body = models.JSONField(null=True, blank=True)  # only the leader keeps it
    leader = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE)
    copies = models.PositiveIntegerField(default=1)  # lines a leader answers, itself included
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)  # retry backoff
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    generation_id = models.CharField(max_length=64, blank=True)
    cost_nanousd = models.BigIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["line"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "line"], name="routing_batchitem_line"),
            models.UniqueConstraint(
                fields=["batch", "custom_id"], name="routing_batchitem_custom_id"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "running", "succeeded", "failed", "duplicate"]),
                name="routing_batchitem_status_valid",
            ),
        ]
        indexes = [models.Index(fields=["batch", "status", "lease_until"])]

    def __str__(self) -> str:
        return f"{self.batch_id} line {self.line}"
