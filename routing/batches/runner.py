"""Runs a batch's items through the same gateway path as live calls (routing, fallback,
health, prices, holds and settlement), concurrently under caps, with durable progress.

A runner holds the batch under a lease it renews; items are claimed in chunks under leases of
their own. A runner that dies (kill -9) leaves leases that run out: the sweep starts a new
runner, which takes back the expired items. Finished items are never run again.

A runner works within a time budget (Budget) rather than until Celery's soft time limit cuts it
wherever it is: past the budget it starts no item (claimed ones go back to the queue), gives the
calls in flight a drain period, and leaves the rest to its successor. A call cut short, by the
drain's end or by the soft limit all the same, may have run upstream: its hold is billed for at
least the prompt, and the item runs again under a new generation id, billed in full.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from accounts.selectors import KeyRejected, api_key_authenticated_by_id
from billing import services as billing
from config.db import run_db
from routing import events, gateway
from routing.batches import live, services
from routing.batches.models import Batch
from routing.errors import GatewayError
from routing.pricing import cost_nanousd, nano_to_usd
from routing.providers.base import Usage
from routing.snapshot import catalog
from routing.tokens import estimate_embedding_tokens
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
    stopped: bool = False  # not run: the batch's key can't be used any more


@dataclass
class Budget:
    """A runner's time, on the monotonic clock: no item starts after `stop_at`; calls still
    in flight at `cut_at` are cut short. `ran_out` says the runner left work for the next."""

    stop_at: float = math.inf
    cut_at: float = math.inf
    ran_out: bool = False

    @classmethod
    def starting_now(cls, *, run_seconds: float, drain_seconds: float) -> Budget:
        now = time.monotonic()
        return cls(stop_at=now + run_seconds, cut_at=now + run_seconds + drain_seconds)

    def spent(self) -> bool:
        return time.monotonic() >= self.stop_at

    def until_cut(self) -> float | None:
        return None if self.cut_at == math.inf else max(self.cut_at - time.monotonic(), 0.0)


class KeyWatch:
    """The batch's key, looked up again every BATCH_KEY_RECHECK_SECONDS while the batch runs
    (and its expiry checked before every item): revoked, expired or deleted, it stops the
    batch, and no item starts after that."""

    def __init__(self, key, *, every: float | None = None) -> None:
        self.key = key
        self.every = settings.BATCH_KEY_RECHECK_SECONDS if every is None else every
        self.rejected: KeyRejected | None = None
        self._checked_at = time.monotonic()
        self._lock = asyncio.Lock()

    def _expired(self) -> bool:
        expires_at = self.key.expires_at
        if expires_at is not None and expires_at <= timezone.now():
            self.rejected = KeyRejected("This API key has expired.", code="expired_api_key")
        return self.rejected is not None

    async def usable(self) -> bool:
        if self._expired():
            return False
        if time.monotonic() - self._checked_at >= self.every:
            async with self._lock:  # one lookup for every item waiting on it
                if self.rejected is None and time.monotonic() - self._checked_at >= self.every:
                    try:
                        self.key = await db(api_key_authenticated_by_id, key_id=self.key.key_id)
                    except KeyRejected as rejected:
                        self.rejected = rejected
                    self._checked_at = time.monotonic()
        return not self._expired()


@dataclass
class _Attempt:
    """What the runner knows of an item's call in progress, for when it is cut short."""

    generation_id: str = ""
    admission: gateway.Admission | None = None
    body: dict[str, Any] = field(default_factory=dict)
    free: bool = False
    held: bool = False  # a hold was placed: the call may have reached a provider
    done: bool = False  # the call finished and settled its hold itself


def db(fn, /, **kwargs):
    # The ORM's one thread, as on the request path: one connection per runner, whatever
    # the concurrency (each call is short; the upstream calls are what run in parallel).
    return run_db(lambda: fn(**kwargs))


def _generation_id(item: dict[str, Any], n: int) -> str:
    """The same item, attempt and re-run number always get the same id (n = 0 is the id
    items had before re-runs were numbered)."""
    name = f"{item['id']}:{item['attempts']}" + (f":{n}" if n else "")
    return f"gen-{uuid.uuid5(_ITEM_IDS, name).hex}"


async def _call(
    key, endpoint: str, body: dict[str, Any], attempt: _Attempt
) -> tuple[dict[str, Any], int]:
    discount = 100 if attempt.free else settings.BATCH_DISCOUNT_PERCENT
    attempt.admission, attempt.held = None, False
    if endpoint == "/v1/embeddings":
        model, inputs, clean = parse_embeddings(body)
        # embed() holds and calls in one step: count the call as possibly made from here.
        attempt.held = True
        answer, _ = await gateway.embed(
            key,
            model,
            inputs,
            clean,
            discount_percent=discount,
            generation_id=attempt.generation_id,
            rate_limited=False,
        )
    else:
        chat = parse_chat({**body, "stream": False})
        # Not under the RPM/TPM limits sized for interactive traffic (a big batch would use up
        # the minute and fail its items): the batch caps on calls in flight bound it instead.
        admission = await gateway.admit_chat(
            key, chat, generation_id=attempt.generation_id, rate_limited=False
        )
        admission.discount_percent = discount
        attempt.admission, attempt.held = admission, True
        answer = await gateway.complete(admission, chat)
    attempt.done = True
    cost = gateway.fragment_nanousd(answer["usage"]["cost"])
    # Stored as plain JSON: the exact cost goes in as a decimal string.
    answer["usage"] = {**answer["usage"], "cost": format(nano_to_usd(cost), "f")}
    return answer, cost


# Re-runs of one attempt (each a hold id that ended unbilled) before the item fails.
_MAX_RERUNS = 8


async def _call_billed_once(
    key, batch: Batch, item: dict[str, Any], attempt: _Attempt
) -> tuple[dict[str, Any], int]:
    """Run the item's attempt so that what it serves is billed exactly once. Its generation
    id may have been used by a runner that was stopped: if that hold was settled, the work
    was billed and is run again free (its answer was lost); if it was released or expired,
    nothing was billed under it, and the run takes the next id and is billed in full."""
    for n in range(_MAX_RERUNS):
        attempt.generation_id = _generation_id(item, n)
        try:
            return await _call(key, batch.endpoint, item["body"], attempt)
        except GatewayError as error:
            meta = error.metadata or {}
            if error.status_code != 402 or meta.get("limit") != "hold_id_used":
                raise
            if meta.get("ended_as", "settled") == "settled":
                attempt.free = True
    raise GatewayError(
        409, "This request was interrupted too many times.", code="batch_item_interrupted"
    )


async def _interrupted_charge(attempt: _Attempt) -> int:
    """The least an interrupted call costs: its prompt, at the priciest endpoint it may have
    been sent to (the hold covered that one too), less the batch discount."""
    admission = attempt.admission
    if admission is not None:
        prompt = Usage(prompt_tokens=admission.prompt_tokens)
        return admission.charge(max(cost_nanousd(e, prompt) for e in admission.candidates))
    model = (await catalog.aget()).resolve(str(attempt.body.get("model")))
    if model is None or not model.endpoints:
        return 0
    _, inputs, _ = parse_embeddings(attempt.body)
    prompt = Usage(prompt_tokens=estimate_embedding_tokens(inputs))
    cost = max(cost_nanousd(e, prompt) for e in model.endpoints)
    discount = 100 if attempt.free else settings.BATCH_DISCOUNT_PERCENT
    return cost * (100 - discount) // 100


async def _cut_short(key, batch: Batch, item: dict[str, Any], attempt: _Attempt) -> None:
    """The item's call was cancelled (the budget's drain ended, or the soft time limit).
    A call that may have reached a provider is billed at least its prompt (a settle after
    the gateway settled it changes nothing) and the item runs again under its next attempt
    number; one that never held anything simply goes back to the queue."""
    if attempt.held and not attempt.done:
        # The item first, then the hold: should the settle fail, the hold stays released
        # (the prompt goes unbilled); the other way round, a lost item update would have
        # the next runner take the settled hold for the whole answer and run the item free.
        if item["attempts"] + 1 >= settings.BATCH_MAX_ATTEMPTS:
            error = {"code": "timeout", "message": "The provider did not answer in time."}
            await db(
                services.item_finish,
                item_id=item["id"],
                succeeded=False,
                status_code=504,
                response={"error": error},
                error=error,
                generation_id="",
                cost_nanousd=0,
            )
        else:
            await db(services.item_retry_later, item_id=item["id"], delay_seconds=0)
        try:
            cost = await _interrupted_charge(attempt)
        except Exception:
            logger.exception("could not price the interrupted call %s", attempt.generation_id)
            cost = 0
        billed = await billing.hold_settle(
            hold_id=attempt.generation_id,
            actual_nanousd=cost,
            organization_id=batch.organization_id,
            key_id=key.key_id,
            description="Batch request interrupted",
        )
        admission = attempt.admission
        if billed and admission is not None and admission.candidates:
            # What is billed is logged: the request log says what the interrupted call cost.
            prompt = Usage(prompt_tokens=admission.prompt_tokens)
            endpoint = max(admission.candidates, key=lambda e: cost_nanousd(e, prompt))
            events.generation_finished(
                admission, endpoint, prompt, cost, [], streamed=False, error="batch_interrupted"
            )
        return
    # Not started, or finished and billed before its answer could be saved (the re-run
    # finds the settled hold and runs free).
    await db(services.item_give_back, item_ids=[item["id"]])


def _error(error: GatewayError) -> dict[str, Any]:
    return {"code": error.error_code or "error", "message": error.message}


async def _run_item(
    watch: KeyWatch, batch: Batch, item: dict[str, Any], slots: asyncio.Semaphore, budget: Budget
) -> Outcome:
    attempt = _Attempt(body=item["body"])
    try:
        return await _run_item_now(watch, batch, item, slots, budget, attempt)
    except BaseException:
        # Cancelled (the budget's drain ended, or the soft time limit): leave the item and
        # its hold as the next runner needs them, then let the cancellation through.
        await _cut_short(watch.key, batch, item, attempt)
        raise


async def _run_item_now(
    watch: KeyWatch,
    batch: Batch,
    item: dict[str, Any],
    slots: asyncio.Semaphore,
    budget: Budget,
    attempt: _Attempt,
) -> Outcome:
    # This runner's cap, this process's, then the organization's and the platform's across
    # every worker.
    async with slots, _global_slots(), org_slots(batch.organization_id), all_slots():
        if budget.spent():  # too late to start: the next runner takes it
            await db(services.item_give_back, item_ids=[item["id"]])
            return Outcome(item["id"])
        if not await watch.usable():  # the run stops: the item fails with the others
            await db(services.item_give_back, item_ids=[item["id"]])
            return Outcome(item["id"], stopped=True)
        key = watch.key
        concurrency["now"] += 1
        concurrency["max"] = max(concurrency["max"], concurrency["now"])
        try:
            try:
                answer, cost = await _call_billed_once(key, batch, item, attempt)
            finally:
                concurrency["now"] -= 1
        except GatewayError as error:
            failure = error
        else:
            failure = None
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


async def _run_chunk(
    watch: KeyWatch,
    batch: Batch,
    items: list[dict[str, Any]],
    slots: asyncio.Semaphore,
    budget: Budget,
) -> list[Outcome]:
    """Run claimed items; those still in flight when the budget's drain ends are cut short."""
    tasks = [asyncio.ensure_future(_run_item(watch, batch, i, slots, budget)) for i in items]
    try:
        _, pending = await asyncio.wait(tasks, timeout=budget.until_cut())
    except BaseException:
        # This runner is being stopped. An item cancelled already (asyncio.run cancels every
        # task at once) is not cancelled again: that would cut its billing short.
        for task in tasks:
            if not task.done() and not task.cancelling():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    if pending:
        budget.ran_out = True
        for task in pending:
            task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    outcomes = []
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, BaseException):
            if task in pending and isinstance(result, asyncio.CancelledError):
                continue
            raise result
        outcomes.append(result)
    return outcomes


async def _stop_for_key(batch_id: str, rejected: KeyRejected) -> str:
    """The key was revoked, expired or deleted: what is left fails with the reason."""
    code = {"invalid_api_key": "api_key_unusable"}.get(rejected.code, rejected.code)
    batch = await db(
        services.batch_fail_unrun,
        batch_id=batch_id,
        code=code,
        message=f"The batch stopped: its API key can't be used any more. {rejected.reason}",
    )
    return batch.status


async def run_batch(batch_id: str, *, budget: Budget | None = None) -> str:
    """Run the batch until it is finished, paused or cancelled, or until its budget runs out
    (then `budget.ran_out` is set and the batch stays in progress for the next runner);
    returns its status after."""
    budget = budget or Budget()
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
            return await _stop_for_key(batch_id, rejected)
        watch = KeyWatch(key)
        slots = asyncio.Semaphore(settings.BATCH_ORG_CONCURRENCY)
        while True:
            status = await db(services.batch_runner_renew, batch_id=batch_id, lease_seconds=lease)
            if status != Batch.Status.IN_PROGRESS:
                break
            if budget.spent():
                budget.ran_out = True
                return status
            if not await watch.usable():
                return await _stop_for_key(batch_id, watch.rejected)
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
            outcomes = await _run_chunk(watch, batch, items, slots, budget)
            await live.publish(batch_id)
            if watch.rejected is not None:
                return await _stop_for_key(batch_id, watch.rejected)
            paused = next((o.paused for o in outcomes if o.paused), "")
            if paused:
                return Batch.Status.IN_PROGRESS
            if budget.ran_out:
                return Batch.Status.IN_PROGRESS
        batch = await db(services.batch_finalize, batch_id=batch_id)
        return batch.status
    finally:
        await db(services.batch_runner_release, batch_id=batch_id, paused_reason=paused)
        await live.publish(batch_id)
