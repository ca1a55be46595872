from __future__ import annotations

from outbox.models import PendingTask


def pending_task_count() -> int:
    return PendingTask.objects.count()
