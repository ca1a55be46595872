from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class PendingTask(models.Model):
    """A Celery task whose sending failed (the broker was down); beat sends it again."""

    task = models.CharField(max_length=200)
    args = models.JSONField(default=list, encoder=DjangoJSONEncoder)
    kwargs = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    # Sending options (queue, time limits); routes in CELERY_TASK_ROUTES apply again anyway.
    options = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.task} ({self.attempts} attempts)"
