"""Sending Celery tasks without ever failing the request that sends them.

A request that was served (and billed) must not answer 500 because the broker is down when an
on_commit hook queues its side effects. `task_dispatch` tries the broker once, briefly, and on
any failure keeps the task in the database (PendingTask); `pending_tasks_send` (beat, every 10 s)
sends what was kept once the broker is back. After a failure this process goes straight to the
database for a few seconds instead of waiting on a broker it just found down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from celery import Task, current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.pools import producers

from outbox.models import PendingTask

logger = logging.getLogger(__name__)

_state = threading.Lock()
_down_until = 0.0  # monotonic: until then the broker counts as down in this process


def _broker_down() -> bool:
    return time.monotonic() < _down_until


def _mark_down() -> None:
    global _down_until
    with _state:
        _down_until = time.monotonic() + settings.OUTBOX_BROKER_DOWN_SECONDS


def _publish(name: str, args: Sequence[Any], kwargs: dict[str, Any], options: dict) -> None:
    """One try, bounded by OUTBOX_SEND_TIMEOUT_SECONDS; raises whatever the broker raised."""
    app = current_app
    timeout = settings.OUTBOX_SEND_TIMEOUT_SECONDS
    # No retries (kombu would otherwise reconnect for as long as it takes), short sockets.
    connection = app.connection_for_write(
        connect_timeout=timeout,
        transport_options={
            "max_retries": 0,
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
        },
    )
    with producers[connection].acquire(block=True, timeout=timeout) as producer:
        app.send_task(
            name, args=list(args), kwargs=kwargs, producer=producer, retry=False, **options
        )


def task_send(
    *,
    task: Task,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    keep: bool = True,
) -> bool:
    """Send `task` to the broker; True when it was sent (or ran, in eager mode). When the
    broker can't take it, the task is kept for beat to send later (`keep`) or dropped (a
    nudge that a periodic task repeats anyway). Never raises."""
    kwargs = kwargs or {}
    options = options or {}
    if task.app.conf.task_always_eager:
        # Tests and shells run the task in place; its own errors are theirs to see.
        task.apply_async(args, kwargs, **options)
        return True
    error = "the broker was down moments ago"
    if not _broker_down():
        try:
            _publish(task.name, args, kwargs, options)
            return True
        except Exception as exc:  # any broker or connection error
            _mark_down()
            error = f"{type(exc).__name__}: {exc}"[:500]
            logger.warning("could not send task %s: %s", task.name, error)
    if not keep:
        return False
    try:
        PendingTask.objects.create(
            task=task.name, args=list(args), kwargs=kwargs, options=options, last_error=error
        )
    except Exception:
        logger.exception("task %s lost: neither the broker nor the database took it", task.name)
    return False


def task_dispatch(task: Task, *args: Any, **kwargs: Any) -> bool:
    """`task.delay(*args, **kwargs)` that never raises: kept in the database if the broker is
    down, and sent by beat once it is back."""
    return task_send(task=task, args=args, kwargs=kwargs)


def pending_tasks_send(*, limit: int = 500) -> int:
    """Send the kept tasks, oldest first; give up on those older than OUTBOX_GIVE_UP_SECONDS.
    Stops at the first broker failure (the rest waits for the next run). Returns how many
    were sent."""
    give_up_before = timezone.now() - timedelta(seconds=settings.OUTBOX_GIVE_UP_SECONDS)
    sent = 0
    with transaction.atomic():
        # Two beat runs never send the same row (PostgreSQL; SQLite serializes writers).
        rows = list(PendingTask.objects.select_for_update(skip_locked=True).order_by("id")[:limit])
        for row in rows:
            if row.created_at < give_up_before:
                logger.error(
                    "gave up on task %s (args %s) kept since %s after %d attempts: %s",
                    row.task,
                    row.args,
                    row.created_at.isoformat(),
                    row.attempts,
                    row.last_error,
                )
                row.delete()
                continue
            try:
                _publish(row.task, row.args, row.kwargs, row.options)
            except Exception as exc:
                row.attempts += 1
                row.last_error = f"{type(exc).__name__}: {exc}"[:500]
                row.save(update_fields=["attempts", "last_error"])
                logger.warning("the broker is still down: %d tasks wait", len(rows) - sent)
                break
            row.delete()
            sent += 1
    if sent:
        logger.info("sent %d kept tasks", sent)
    return sent
