from __future__ import annotations

from celery import shared_task

from outbox import services


@shared_task(ignore_result=True)
def send_pending_tasks() -> int:
    return services.pending_tasks_send()
