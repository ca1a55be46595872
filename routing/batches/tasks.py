"""Celery tasks for batches: each takes ids and is safe to run twice."""

from __future__ import annotations

import asyncio
import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import close_old_connections

from outbox.services import task_dispatch, task_send
from routing.batches import services
from routing.batches.runner import Budget, run_batch
from routing.http import close_client

logger = logging.getLogger(__name__)

# The runner stops itself within its budget; these limits are only the backstop, and they are
# the task's own, not the workers' default (which would cut a runner mid-call).
SOFT_TIME_LIMIT = settings.BATCH_RUN_SECONDS + settings.BATCH_DRAIN_SECONDS + 10
TIME_LIMIT = SOFT_TIME_LIMIT + 30


def runner_budget(soft_time_limit: float | None) -> Budget:
    """Start items for BATCH_RUN_SECONDS, then let the calls in flight finish for
    BATCH_DRAIN_SECONDS; both shrink to fit under a shorter soft time limit, leaving a fifth
    of it (1 to 10 s) to write down the items cut short and hand over."""
    run, drain = settings.BATCH_RUN_SECONDS, settings.BATCH_DRAIN_SECONDS
    if soft_time_limit:
        margin = min(max(soft_time_limit / 5, 1.0), 10.0)
        usable = max(soft_time_limit - margin, soft_time_limit / 2)
        if run + drain > usable:
            drain = min(drain, usable / 2)
            run = min(run, usable - drain)
    return Budget.starting_now(run_seconds=run, drain_seconds=drain)


async def _run(batch_id: str, budget: Budget) -> str:
    try:
        return await run_batch(batch_id, budget=budget)
    finally:
        await close_client()  # the pooled upstream client belongs to this event loop


@shared_task(
    bind=True,
    ignore_result=True,
    acks_late=True,
    soft_time_limit=SOFT_TIME_LIMIT,
    time_limit=TIME_LIMIT,
)
def batch_run(self, batch_id: str) -> str:
    hard, soft = self.request.timelimit or (None, None)
    # Called in-process (a shell, a test, eager mode) no time limit applies: run to the end.
    outside = self.request.called_directly or self.request.is_eager
    budget = Budget() if outside else runner_budget(soft or self.soft_time_limit)
    try:
        status = asyncio.run(_run(batch_id, budget))
    except SoftTimeLimitExceeded:
        # The budget should have stopped the runner first; what was in flight is billed and
        # queued again, and the sweep restarts the batch.
        logger.warning("batch %s: runner stopped by the soft time limit", batch_id)
        raise
    finally:
        close_old_connections()
    if budget.ran_out and status in (services.S.IN_PROGRESS, services.S.CANCELLING):
        # Work is left: the next runner goes where this one came from, under the same limits.
        queue = (self.request.delivery_info or {}).get("routing_key")
        task_send(
            task=batch_run,
            args=(batch_id,),
            options={
                **({"queue": queue} if queue else {}),
                **({"soft_time_limit": soft, "time_limit": hard} if soft else {}),
            },
        )
    return status


@shared_task(ignore_result=True)
def batch_sweep() -> int:
    """Expire batches past their window; restart batches nobody runs (a worker died, or a
    paused batch whose credit may have been topped up)."""
    services.batches_expire()
    ids = services.batches_to_resume()
    for batch_id in ids:
        task_dispatch(batch_run, batch_id)
    return len(ids)
