"""Spend holds: the hot path's side of billing.

Before a request reaches any provider, its worst-case cost is reserved in one atomic step
against every limit that applies: the key's limit for its period (daily, weekly, monthly or
total), the organization's monthly limit, and for prepaid plans the balance (credits minus all
usage minus active holds). If any of them can't take it, nothing is reserved and the request is
refused. When the generation ends the hold is settled exactly once: the reservation becomes the
real cost on the counters and one usage record is queued for the ledger; or it is released
(nothing was spent), or it expires (its process died) and the periodic job releases it.

Why Redis and not a PostgreSQL conditional UPDATE: both are atomic across processes, but on
this machine a hold in Redis (one EVALSHA of a Lua script) cost ~0.25 ms per request against
~0.55 ms (p99 +2 ms) for `UPDATE ... WHERE spent + held + :amount <= limit`, and the UPDATE is a
synchronous database write on every request, which the hot path must not have (DESIGN.md).
PostgreSQL stays the book of record: the counters are a mirror of the ledger's usage entries,
seeded from them whenever a counter is cold (first use, Redis restarted), settled usage reaches
the ledger in idempotent batches (billing.tasks.flush_usage), and `billing_check` proves the
ledger's sums. When Redis is down nothing is admitted (HoldUnavailable, a 503): fail closed.
Without REDIS_URL (the embedded default: one process) the same logic runs in this process.

Guarantee: spent <= limit + the estimation error of the requests in flight (a request is
reserved at its worst case, and is billed its real cost even when that came out higher).
Periods are named by their start, so nothing resets: a charge lands in the period in which its
generation started, whenever it settles.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from billing.holds.redis_store import RedisHoldStore
from billing.holds.snapshot import (
    OrgBillingSnapshot,
    OrgSnapshotCache,
    org_snapshots,
    single_flight,
)
from billing.holds.store import (
    BALANCE,
    KEY,
    ORG,
    HoldStore,
    HoldUnavailable,
    InFlight,
    InProcessHoldStore,
    Part,
    UsageRecord,
    orphans_subscribe,
    orphans_unsubscribe,
)
from billing.models import NANO_PER_USD
from billing.periods import MONTHLY, PERIODS, TOTAL, period_bounds

__all__ = [
    "HoldResult",
    "HoldStore",
    "HoldUnavailable",
    "InProcessHoldStore",
    "OrgBillingSnapshot",
    "Part",
    "RedisHoldStore",
    "get_hold_store",
    "hold_parts",
    "hold_place",
    "hold_progress",
    "hold_release",
    "hold_settle",
    "holds_release_expired",
    "org_snapshots",
    "orphans_subscribe",
    "orphans_unsubscribe",
    "usage_flush",
    "usage_outbox_flush",
    "usd",
]

logger = logging.getLogger(__name__)

# HoldResult.refused_by when the organization may not spend at all (a payment dispute).
SUSPENDED = "account_suspended"

REFUSED_BY = {
    KEY: "key_spend_limit",
    ORG: "org_spend_limit",
    BALANCE: "insufficient_quota",
}


@dataclass(frozen=True, slots=True)
class HoldResult:
    allowed: bool
    hold_id: str
    amount_nanousd: int
    # "insufficient_quota" | "key_spend_limit" | "org_spend_limit" | "account_suspended" when
    # refused, "too_many_in_flight" when the organization's requests in flight are at its
    # plan's cap, or "hold_id_used" for a hold id that already ended (see ended_as).
    refused_by: str | None = None
    message: str = ""
    # What is left on each limit after this hold (before it, when refused); None when that
    # limit doesn't apply (no key limit, no organization limit, a postpaid plan).
    key_remaining_nanousd: int | None = None
    org_remaining_nanousd: int | None = None
    balance_remaining_nanousd: int | None = None
    # How an already used hold id ended: "settled" (its generation was billed), "released"
    # or "expired" (nothing was billed under it; a re-run needs a new id and pays).
    ended_as: str | None = None


def usd(nano: int) -> str:
    """A display amount: cents, or more digits for amounts below a cent (Decimal, no float)."""
    dollars = Decimal(nano) / NANO_PER_USD
    places = Decimal("0.01") if abs(nano) >= NANO_PER_USD // 100 or nano == 0 else Decimal("1e-6")
    return f"${dollars.quantize(places, rounding=ROUND_HALF_UP):,}"


def hold_parts(
    *,
    snapshot: OrgBillingSnapshot,
    key_id: str | None,
    key_limit_nanousd: int | None,
    key_period: str,
    at: datetime,
) -> list[Part]:
    """The counters a request is held on. The limited ones come first, most specific first
    (the order decides which limit a refusal names): the key's limit in its period, the
    organization's monthly limit, the prepaid balance. Then the key's other periods: every
    counter is kept up to date whether or not it has a limit today."""
    if key_period not in PERIODS:
        raise ValueError(f"unknown spend period {key_period!r}")
    parts = []
    key_parts = []
    if key_id:
        for period in PERIODS:
            start, end = period_bounds(period, at)
            limit = key_limit_nanousd if period == key_period else None
            key_parts.append(Part(KEY, str(key_id), period, start, end, limit))
        key_parts.sort(key=lambda part: part.limit is None)
        parts.append(key_parts.pop(0))
    start, end = period_bounds(MONTHLY, at)
    parts.append(
        Part(ORG, snapshot.organization_id, MONTHLY, start, end, snapshot.monthly_limit_nanousd)
    )
    start, end = period_bounds(TOTAL, at)
    limit = snapshot.credits_nanousd if snapshot.prepaid else None
    parts.append(Part(BALANCE, snapshot.organization_id, TOTAL, start, end, limit))
    return parts + key_parts


def _seed_all(
    parts: list[Part], organization_id: str, pending: list[UsageRecord]
) -> dict[str, int]:
    """Counters' spent, from the ledger (the book of record) and settled usage it doesn't
    have yet: `pending` (this process's outbox) and the outbox table, both read before the
    ledger (a record that moves meanwhile is counted twice, erring on the safe side; never
    missed): counter name -> spent."""
    from billing import selectors

    unwritten = {r.reference: r for r in pending if r.organization_id == organization_id}
    for record in selectors.usage_outbox_records(organization_id=organization_id):
        unwritten[record.reference] = record
    written = selectors.ledger_references_existing(references=list(unwritten))
    pending = [r for ref, r in unwritten.items() if ref not in written]
    seeds = {}
    for part in parts:
        if part.scope == BALANCE:
            seeds[part.counter] = selectors.usage_spent_total(organization_id=organization_id)
        else:
            seeds[part.counter] = selectors.usage_spent_between(
                organization_id=organization_id,
                key_id=part.subject if part.scope == KEY else None,
                start=part.start,
                end=part.end,
            )
        seeds[part.counter] += sum(
            record.cost_nanousd
            for record in pending
            if record.organization_id == organization_id
            and (part.scope != KEY or record.key_id == part.subject)
            and (part.end is None or record.occurred_at < part.end)
            and record.occurred_at >= part.start
        )
    return seeds


async def _seeds(parts: list[Part], organization_id: str, store: HoldStore) -> dict[str, int]:
    key = ("seeds", tuple(part.counter for part in parts))
    pending = store.outbox.pending_records()
    return await single_flight(
        key, lambda: sync_to_async(_seed_all)(parts, organization_id, pending)
    )


def _refusal_message(part: Part, amount: int, room: int) -> str:
    cost, left = usd(amount), usd(max(room, 0))
    if part.scope == BALANCE:
        return (
            f"Insufficient credits: this request may cost up to {cost} and {left} is available. "
            "Add credits to continue."
        )
    if part.scope == KEY:
        limit = f"this API key's {part.period} spend limit ({usd(part.limit)})"
    else:
        limit = f"your organization's monthly spend limit ({usd(part.limit)})"
    return f"This request may cost up to {cost}, more than the {left} left of {limit}."


async def hold_place(
    *,
    hold_id: str,
    organization_id: uuid.UUID | str,
    key_id: uuid.UUID | str | None,
    key_limit_nanousd: int | None,
    key_period: str,
    amount_nanousd: int,
    now: datetime | None = None,
    store: HoldStore | None = None,
    snapshots: OrgSnapshotCache | None = None,
    ttl_seconds: float | None = None,
) -> HoldResult:
    """Reserve `amount_nanousd` (the request's worst-case cost) against every limit that
    applies, all or nothing. `hold_id` is the generation id; `now` is when the generation
    starts (its spend lands in that period). `ttl_seconds` is how long the request may take
    (default settings.BILLING_HOLD_TTL_SECONDS): past it the hold counts as left by a dead
    process and is released, so it must outlast the longest answer. Raises HoldUnavailable
    when the store can't be asked: the caller answers 503, never "allowed"."""
    if not isinstance(amount_nanousd, int) or amount_nanousd < 0:
        raise ValueError("a hold is a non-negative integer of nano-USD")
    if ttl_seconds is not None and not ttl_seconds > 0:
        raise ValueError("a hold's time to live is a positive number of seconds")
    now = now or timezone.now()
    store = store or get_hold_store()
    snapshot = await (snapshots or org_snapshots).aget(organization_id)
    if snapshot.suspended:
        # Nothing is reserved: the organization may not spend at all (a payment dispute).
        return HoldResult(
            allowed=False,
            hold_id=hold_id,
            amount_nanousd=amount_nanousd,
            refused_by=SUSPENDED,
            message=snapshot.suspended,
        )
    parts = hold_parts(
        snapshot=snapshot,
        key_id=str(key_id) if key_id else None,
        key_limit_nanousd=key_limit_nanousd,
        key_period=key_period,
        at=now,
    )
    if ttl_seconds is None:
        ttl_seconds = settings.BILLING_HOLD_TTL_SECONDS
    deadline = (now + timedelta(seconds=ttl_seconds)).timestamp()
    in_flight = (
        InFlight(snapshot.organization_id, snapshot.max_in_flight)
        if snapshot.max_in_flight
        else None
    )
    seeds: dict[int, int] = {}
    for _ in range(3):
        outcome = await store.place(
            hold_id=hold_id,
            parts=parts,
            amount=amount_nanousd,
            started_at=now,
            deadline=deadline,
            seeds=seeds or None,
            in_flight=in_flight,
        )
        if outcome.status != "cold":
            break
        cold = [parts[i] for i in outcome.cold]
        try:
            found = await _seeds(cold, snapshot.organization_id, store)
        except Exception as exc:  # no ledger, no seed: don't guess
            raise HoldUnavailable(f"could not seed spend counters: {exc}") from exc
        seeds.update((i, found[parts[i].counter]) for i in outcome.cold)
    else:
        raise HoldUnavailable("spend counters kept going cold")

    if outcome.status == "dup":
        return HoldResult(
            allowed=outcome.dup_state == "held",
            hold_id=hold_id,
            amount_nanousd=amount_nanousd,
            message="" if outcome.dup_state == "held" else "This hold id was already used.",
            refused_by=None if outcome.dup_state == "held" else "hold_id_used",
            ended_as=None if outcome.dup_state == "held" else outcome.dup_state,
        )
    if outcome.status == "busy":
        return HoldResult(
            allowed=False,
            hold_id=hold_id,
            amount_nanousd=amount_nanousd,
            refused_by="too_many_in_flight",
            message=(
                f"Your organization already has {outcome.in_flight} requests in flight, the "
                f"most its plan allows at once. Retry when one of them has finished."
            ),
        )
    allowed = outcome.status == "ok"
    remaining: dict[str, int | None] = {KEY: None, ORG: None, BALANCE: None}
    for part, room in zip(parts, outcome.rooms, strict=True):
        if room is not None:
            remaining[part.scope] = max(room - amount_nanousd, 0) if allowed else max(room, 0)
    refused_by = message = None
    if not allowed:
        culprit = parts[outcome.refused_index]
        refused_by = REFUSED_BY[culprit.scope]
        message = _refusal_message(culprit, amount_nanousd, outcome.rooms[outcome.refused_index])
    return HoldResult(
        allowed=allowed,
        hold_id=hold_id,
        amount_nanousd=amount_nanousd,
        refused_by=refused_by,
        message=message or "",
        key_remaining_nanousd=remaining[KEY],
        org_remaining_nanousd=remaining[ORG],
        balance_remaining_nanousd=remaining[BALANCE],
    )


async def hold_settle(
    *,
    hold_id: str,
    actual_nanousd: int,
    organization_id: uuid.UUID | str,
    key_id: uuid.UUID | str | None,
    started_at: datetime | None = None,
    description: str = "",
    metadata: dict[str, Any] | None = None,
    store: HoldStore | None = None,
) -> bool:
    """The generation `hold_id` ended and cost `actual_nanousd` (0 when no provider billed it):
    the hold becomes that spend and ONE usage entry (reference = hold_id, the generation id) is
    queued for the ledger, even at 0, so every generation that reached a provider has exactly one
    entry. Exactly once: a second settle of the same id changes nothing and returns False.

    organization_id, key_id and started_at are only used if the hold is unknown (it expired
    long ago, or Redis lost it): the usage is still recorded. The record goes to this
    process's outbox, which writes it to PostgreSQL within milliseconds, also when the store
    is down: the generation is never lost (billing.holds.outbox)."""
    if not isinstance(actual_nanousd, int) or actual_nanousd < 0:
        raise ValueError("a cost is a non-negative integer of nano-USD")
    record = UsageRecord(
        reference=hold_id,
        organization_id=str(organization_id),
        key_id=str(key_id) if key_id else None,
        cost_nanousd=actual_nanousd,
        occurred_at=started_at or timezone.now(),
        description=description,
        metadata=metadata or {},
    )
    store = store or get_hold_store()
    try:
        before = await store.settle(hold_id=hold_id, record=record)
    except Exception as exc:
        # The counters can't take it now (they are re-seeded from the ledger, and this
        # outbox, when Redis is back); the usage still reaches the ledger in milliseconds.
        # Never raised: the generation may already be answered.
        if isinstance(exc, HoldUnavailable):
            logger.warning("hold store down: usage of %s goes to the ledger only", hold_id)
        else:
            logger.exception("settling %s failed: its usage goes to the ledger only", hold_id)
        store.outbox.append(record)
        return True
    return before != "settled"


async def hold_progress(
    *,
    hold_id: str,
    cost_nanousd: int,
    organization_id: uuid.UUID | str,
    key_id: uuid.UUID | str | None,
    note: dict[str, Any],
    description: str = "",
    store: HoldStore | None = None,
) -> bool:
    """What the generation `hold_id` has cost so far (a stream records it as it goes), and a
    note for its log (JSON, opaque to billing). If its process dies before it settles, the
    hold is settled at this cost when it expires, instead of released, and the note handed to
    the orphan sinks: a stream cut by its server dying is billed what it used. A store that is
    down never raises here (only this record is missed); True if recorded."""
    if not isinstance(cost_nanousd, int) or cost_nanousd < 0:
        raise ValueError("a cost is a non-negative integer of nano-USD")
    record = UsageRecord(
        hold_id,
        str(organization_id),
        str(key_id) if key_id else None,
        cost_nanousd,
        timezone.now(),  # the hold's own start is used when it settles
        description,
        {"orphan": True},
    )
    store = store or get_hold_store()
    try:
        return await store.progress(hold_id=hold_id, record=record, note=note)
    except HoldUnavailable:
        return False


async def hold_release(*, hold_id: str, store: HoldStore | None = None) -> bool:
    """Give the hold back: the request never reached a provider. Never raises (a hold that
    can't be released now expires and the periodic job releases it); True if released now."""
    store = store or get_hold_store()
    try:
        return await store.release(hold_id=hold_id)
    except Exception:
        logger.warning("hold store down: %s will be released when it expires", hold_id)
        return False


def holds_release_expired(*, now: datetime | None = None, store: HoldStore | None = None) -> int:
    """The periodic job: end every hold past its deadline (its process died): released, or
    settled at its recorded progress (hold_progress). Returns how many ended."""
    store = store or get_hold_store()
    at = (now or timezone.now()).timestamp()
    total = 0
    while True:
        released = store.release_expired(now=at, limit=1000)
        total += released
        if released < 1000:
            return total


def usage_flush(*, store: HoldStore | None = None, max_batches: int = 100) -> int:
    """Write queued usage records to the ledger in batches: this process's outbox, the
    outbox table the server processes write to, then the shared queue (Redis), which holds the
    same records a second time in case their process died before its outbox wrote them.
    Idempotent: a record already written, or a batch replayed after a crash, changes nothing.
    Returns how many generations were handled."""
    from billing.services.ledger import usage_entries_write, usage_outbox_drain

    store = store or get_hold_store()
    handled, _ = store.outbox.flush()
    drained, _ = usage_outbox_drain()
    handled |= drained
    for _ in range(max_batches):
        try:
            batch, records = store.usage_take(limit=settings.BILLING_USAGE_FLUSH_BATCH)
        except HoldUnavailable:  # Redis is down: what it queued waits (it's in PostgreSQL too)
            logger.warning("usage queue unavailable; flushed the outbox only")
            break
        if batch is None:
            break
        failed = usage_entries_write(records=records)
        store.usage_done(batch, requeue=failed)
        not_written = {record.reference for record in failed}
        handled.update(r.reference for r in records if r.reference not in not_written)
        if failed:
            break
    return len(handled)


def usage_outbox_flush() -> int:
    """At shutdown (atexit, the ASGI lifespan): write what this process settled and the
    ledger doesn't have yet. Never raises: the database may already be gone."""
    store = _store
    if store is None or not store.outbox.pending():
        return 0
    started = time.monotonic()
    try:
        handled, _ = store.outbox.flush()
    except Exception:
        logger.warning("could not write queued usage at exit", exc_info=True)
        return 0
    logger.info("wrote %d queued usage records in %.3f s", len(handled), time.monotonic() - started)
    return len(handled)


_store: HoldStore | None = None
_store_lock = threading.Lock()


def get_hold_store() -> HoldStore:
    """This process's store: Redis-backed if settings.REDIS_URL is set, else in-process."""
    url = settings.REDIS_URL
    store = _store
    if store is not None and store.url == url:
        return store
    return _replace_store(url)


def _replace_store(url: str) -> HoldStore:
    global _store
    with _store_lock:
        if _store is None or _store.url != url:
            _store = (
                RedisHoldStore(
                    url,
                    timeout=settings.REDIS_SOCKET_TIMEOUT,
                    connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
                )
                if url
                else InProcessHoldStore()
            )
        return _store


atexit.register(usage_outbox_flush)
