"""Runs a batch's items through the same gateway path as live calls (routing, fallback,
health, prices, holds and settlement), concurrently under caps, with durable progress.

A runner holds the batch under a lease it renews; items are claimed in chunks under leases of
their own. A runner that dies (kill -9) leaves leases that run out: the sweep starts a new
runner, which takes back the expired items. Finished items are never run again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

from accounts.selectors import KeyRejected, api_key_authenticated_by_id
from config.db import run_db
from routing import gateway
from routing.batches import live, services
from routing.batches.models import Batch
from routing.errors import GatewayError
from routing.pricing import nano_to_usd
from routing.validation import parse_chat, parse_embeddings

logger = logging.getLogger(__name__)
RETRYABLE = {408, 409, 429, 500, 502, 503, 504}
# Generation ids of batch items: the same item and attempt always get the same id.
_ITEM_IDS = uuid.UUID("5d0c1a36-8f0e-4a55-9a55-6c1b0e3f7a10")

_global_lock = threading.Lock()
_global: dict[int, asyncio.Semaphore] = {}


def _global_slots() -> asyncio.Semaphore:
    """This process's cap on batch calls in flight, across every batch it runs."""
    loop_id = id(asyncio.get_running_loop())
    with _global_lock:
        sem = _global.get(loop_id)
        if sem is None:
            sem = _global[loop_id] = asyncio.Semaphore(settings.BATCH_GLOBAL_CONCURRENCY)
        return sem


class SharedSlots:
    """A cap shared by every worker process through the cache (Redis in production): a
    counter of calls in flight. A dead worker's slots come back when the counter's key
    expires (BATCH_LEASE_SECONDS after it was made), so a crash never blocks batches for
    good; until then the cap is merely stricter."""

    def __init__(self, key: str, cap: int) -> None:
        self.key = key
        self.cap = cap

    async def __aenter__(self) -> None:
        while True:
            await cache.aadd(self.key, 0, timeout=settings.BATCH_LEASE_SECONDS)
            try:
                taken = await cache.aincr(self.key)
            except ValueError:  # expired between add and incr
                continue
            if taken <= self.cap:
                return
            await self._give_back()
            await asyncio.sleep(0.02)

    async def __aexit__(self, *exc) -> None:
        await self._give_back()

    async def _give_back(self) -> None:
        try:
            await cache.adecr(self.key)
        except ValueError:
            pass  # the key expired meanwhile: nothing to give back


def org_slots(organization_id) -> SharedSlots:
    return SharedSlots(f"batches:inflight:{organization_id}", settings.BATCH_ORG_CONCURRENCY)


def all_slots() -> SharedSlots:
    return SharedSlots("batches:inflight:all", settings.BATCH_GLOBAL_CONCURRENCY)


# Upstream calls in flight in this process, and the most seen at once (bench/batches.py).
concurrency = {"now": 0, "max": 0}


@dataclass
class Outcome:
    item_id: int
    paused: str = ""  # set when the batch must wait (credit, spend limit)


def db(fn, /, **kwargs):
    # The ORM's one thread, as on the request path: one connection per runner, whatever
    # the concurrency (each call is short; the upstream calls are what run in parallel).
    return run_db(lambda: fn(**kwargs))


async def _call(
    key, endpoint: str, body: dict[str, Any], generation_id: str, *, free: bool = False
) -> tuple[dict[str, Any], int]:
    discount = 100 if free else settings.BATCH_DISCOUNT_PERCENT
    if endpoint == "/v1/embeddings":
        model, inputs, clean = parse_embeddings(body)
        answer, _ = await gateway.embed(
            key, model, inputs, clean, discount_percent=discount, generation_id=generation_id
        )
    else:
        chat = parse_chat({**body, "stream": False})
        admission = await gateway.admit_chat(key, chat, generation_id=generation_id)
        admission.discount_percent = discount
        answer = await gateway.complete(admission, chat)
    cost = gateway.fragment_nanousd(answer["usage"]["cost"])
    # Stored as plain JSON: the exact cost goes in as a decimal string.
    answer["usage"] = {**answer["usage"], "cost": format(nano_to_usd(cost), "f")}
    return answer, cost


def _error(error: GatewayError) -> dict[str, Any]:
    return {"code": error.error_code or "error", "message": error.message}


async def _run_item(key, batch: Batch, item: dict[str, Any], slots: asyncio.Semaphore) -> Outcome:
    # This runner's cap, this process's, then the organization's and the platform's across
    # every worker.
    async with slots, _global_slots(), org_slots(batch.organization_id), all_slots():
        # One generation id per item and attempt: a run cut short by a dead worker and run
        # again holds, settles and bills as the same generation.
        generation_id = f"gen-{uuid.uuid5(_ITEM_IDS, f'{item["id"]}:{item["attempts"]}').hex}"
        concurrency["now"] += 1
        concurrency["max"] = max(concurrency["max"], concurrency["now"])
        try:
            try:
                answer, cost = await _call(key, batch.endpoint, item["body"], generation_id)
            except GatewayError as error:
                if (
                    error.status_code != 402
                    or (error.metadata or {}).get("limit") != "hold_id_used"
                ):
                    raise
                # This attempt ran before in a worker that died after it was billed but before
                # its answer was saved: run it again, without billing it a second time.
                answer, cost = await _call(
                    key, batch.endpoint, item["body"], f"{generation_id[:-8]}{'f' * 8}", free=True
                )
        except GatewayError as error:
            failure = error
        else:
            failure = None
        finally:
            concurrency["now"] -= 1
        if failure is not None:
            error = failure
            if error.status_code == 402:
                await db(services.item_give_back, item_ids=[item["id"]])
                return Outcome(item["id"], paused=error.message)
            attempts = item["attempts"] + 1
            if error.status_code in RETRYABLE and attempts < settings.BATCH_MAX_ATTEMPTS:
                delay = settings.BATCH_RETRY_BASE_SECONDS * 2 ** (attempts - 1)
                await db(services.item_retry_later, item_id=item["id"], delay_seconds=delay)
                return Outcome(item["id"])
            await db(
                services.item_finish,
                item_id=item["id"],
                succeeded=False,
                status_code=error.status_code,
                response={"error": _error(error)},
                error=_error(error),
                generation_id="",
                cost_nanousd=0,
            )
            return Outcome(item["id"])
    await db(
        services.item_finish,
        item_id=item["id"],
        succeeded=True,
        status_code=200,
        response=answer,
        error=None,
        generation_id=answer.get("id", ""),
        cost_nanousd=cost,
    )
    return Outcome(item["id"])


async def run_batch(batch_id: str) -> str:
    """Run the batch until it is finished, paused or cancelled; returns its status after."""
    lease = settings.BATCH_LEASE_SECONDS
    status = await db(services.batch_runner_claim, batch_id=batch_id, lease_seconds=lease)
    if status is None:
        batch = await Batch.objects.aget(pk=batch_id)
        return batch.status
    batch = await Batch.objects.aget(pk=batch_id)
    paused = ""
    try:
        try:
            key = await db(api_key_authenticated_by_id, key_id=batch.key_id)
        except KeyRejected as rejected:
            paused = f"The batch's API key can't be used: {rejected.reason}"
            return batch.status
        slots = asyncio.Semaphore(settings.BATCH_ORG_CONCURRENCY)
        while True:
            status = await db(services.batch_runner_renew, batch_id=batch_id, lease_seconds=lease)
            if status != Batch.Status.IN_PROGRESS:
                break
            items = await db(
                services.items_claim,
                batch_id=batch_id,
                limit=settings.BATCH_CLAIM_SIZE,
                lease_seconds=lease,
            )
            if not items:
                left, wait = await db(services.items_waiting, batch_id=batch_id)
                if not left:
                    break
                await asyncio.sleep(min(max(wait or 0.05, 0.05), 1.0))
                continue
            outcomes = await asyncio.gather(*(_run_item(key, batch, i, slots) for i in items))
            await live.publish(batch_id)
            paused = next((o.paused for o in outcomes if o.paused), "")
            if paused:
                return Batch.Status.IN_PROGRESS
        batch = await db(services.batch_finalize, batch_id=batch_id)
        return batch.status
    finally:
        await db(services.batch_runner_release, batch_id=batch_id, paused_reason=paused)
        await live.publish(batch_id)
