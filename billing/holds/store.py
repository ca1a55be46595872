"""The shared store behind spend holds: counters, holds, the settled-usage queue.

State, per counter (scope, subject, period start): `spent` (settled usage) and `held` (active
holds). Per hold: its amount, its counters, its start time and a state (held, settled,
released, expired) kept for a grace period after it ends, which is what makes settle and
release exactly-once. A deadline per hold: past it, `release_expired` gives its amount back
(a process that crashed mid-request never settles). A hold may carry progress: what its
generation had cost so far when its process last said (a stream records it as it goes); past
its deadline such a hold is settled at that cost instead, and its note handed to the orphan
sinks (the gateway logs the generation from it), so a stream cut by its process dying is billed
what it used.

Two backends with the same semantics: `InProcessHoldStore` (the embedded default, one process)
here, `RedisHoldStore` (every process shares it) in billing.holds.redis_store.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from django.conf import settings

from billing.periods import period_tag

if TYPE_CHECKING:
    from billing.holds.outbox import UsageOutbox

logger = logging.getLogger(__name__)

# A period counter outlives its period by this much (late settlements still find it).
COUNTER_GRACE = timedelta(days=2)

KEY, ORG, BALANCE = "key", "org", "bal"


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One settled generation on its way to the ledger."""

    reference: str  # the generation id
    organization_id: str
    key_id: str | None
    cost_nanousd: int  # >= 0; posted as -cost
    occurred_at: datetime  # the generation's start: decides its spend period
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


# Called with (record, note) for each hold settled from its progress after its process died.
OrphanSink = Callable[[UsageRecord, dict[str, Any]], None]
_orphan_sinks: list[OrphanSink] = []


def orphans_subscribe(sink: OrphanSink) -> None:
    if sink not in _orphan_sinks:
        _orphan_sinks.append(sink)


def orphans_unsubscribe(sink: OrphanSink) -> None:
    if sink in _orphan_sinks:
        _orphan_sinks.remove(sink)


def orphans_notify(settled: Sequence[tuple[UsageRecord, dict[str, Any]]]) -> None:
    for record, note in settled:
        for sink in list(_orphan_sinks):
            try:
                sink(record, note)
            except Exception:  # its usage is billed already; a log row is best effort
                logger.exception("an orphan sink failed for %s", record.reference)


class HoldUnavailable(Exception):
    """The shared hold store can't be asked (Redis down, or the ledger unreachable to seed a
    cold counter). Fail closed: the gateway answers 503."""


@dataclass(frozen=True, slots=True)
class Part:
    """One counter a hold is reserved on, and checked against when it has a limit.

    Counters are kept whether or not a limit applies right now, so that a limit set, removed
    and set again (or a key moved from monthly to daily and back) in one period finds a
    counter that saw every request."""

    scope: str  # "key" | "org" | "bal"
    subject: str  # key id / organization id
    period: str  # daily / weekly / monthly / total
    start: datetime
    end: datetime | None
    limit: int | None  # nano-USD, None = not checked; may be negative (a balance below zero)

    @property
    def counter(self) -> str:
        return f"{self.scope}:{self.subject}:{period_tag(self.period, self.start)}"

    def ttl_seconds(self, now: datetime) -> float | None:
        if self.end is None:
            return None
        return max((self.end + COUNTER_GRACE - now).total_seconds(), 60.0)


@dataclass(frozen=True, slots=True)
class PlaceOutcome:
    status: str  # "ok" | "refused" | "dup" | "cold" | "busy"
    # Room left on each part before this hold (limit - spent - held; None without a limit).
    rooms: tuple[int | None, ...] = ()
    refused_index: int | None = None
    cold: tuple[int, ...] = ()  # indexes of parts whose counter is missing (seed and retry)
    dup_state: str | None = None
    in_flight: int = 0  # "busy": how many of the subject's holds are active


@dataclass(frozen=True, slots=True)
class InFlight:
    """A cap on the active holds of one subject (an organization): how many of its requests
    may be in flight at once, whatever their amounts."""

    subject: str
    limit: int


def encode_record(record: UsageRecord) -> str:
    """A queued usage record: the generation start (microseconds, exact) and a JSON body."""
    body = {
        "r": record.reference,
        "o": record.organization_id,
        "k": record.key_id,
        "c": record.cost_nanousd,
        "d": record.description,
        "m": record.metadata,
    }
    return orjson.dumps(body).decode()


def decode_record(item: str | bytes) -> UsageRecord:
    if isinstance(item, bytes):
        item = item.decode()
    started_us, _, body = item.partition(" ")
    data = orjson.loads(body)
    return UsageRecord(
        reference=data["r"],
        organization_id=data["o"],
        key_id=data.get("k"),
        cost_nanousd=int(data["c"]),
        occurred_at=from_us(int(started_us)),
        description=data.get("d") or "",
        metadata=data.get("m") or {},
    )


def encode_lines(records: Sequence[UsageRecord]) -> bytes:
    """Several records as the outbox table stores them: one queue item a line."""
    return "\n".join(f"{to_us(r.occurred_at)} {encode_record(r)}" for r in records).encode()


def decode_lines(payload: bytes | memoryview) -> list[UsageRecord]:
    return [decode_record(line) for line in bytes(payload).decode().splitlines() if line]


def to_us(at: datetime) -> int:
    delta = at - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


class HoldStore:
    """What every backend offers. `place`, `settle` and `release` are the hot path (async);
    the batch side (`release_expired`, `usage_take`, `usage_done`) is synchronous, for Celery."""

    url = ""
    # This process's settled usage on its way to the ledger (billing.holds.outbox).
    outbox: UsageOutbox

    async def place(
        self,
        *,
        hold_id: str,
        parts: Sequence[Part],
        amount: int,
        started_at: datetime,
        deadline: float,
        seeds: dict[int, int] | None = None,
        in_flight: InFlight | None = None,
    ) -> PlaceOutcome:
        """Reserve `amount` on every part if it fits on all of them, else on none; "busy"
        when `in_flight` caps the subject's active holds and the cap is reached."""
        raise NotImplementedError

    async def settle(self, *, hold_id: str, record: UsageRecord) -> str:
        """Turn the hold into spend (record.cost_nanousd) and queue its usage record (in this
        process's outbox, and in the shared queue if the store has one), once.
        Returns the hold's state before: held / released / expired / missing, or "settled"
        when it was settled already (nothing changed)."""
        raise NotImplementedError

    async def release(self, *, hold_id: str) -> bool:
        """Give an active hold back without spend. False if it wasn't active."""
        raise NotImplementedError

    async def progress(self, *, hold_id: str, record: UsageRecord, note: dict[str, Any]) -> bool:
        """Record on an active hold what its generation has cost so far (record.cost_nanousd)
        and a note for its log. False if the hold isn't active (settled meanwhile)."""
        raise NotImplementedError

    def release_expired(self, *, now: float | None = None, limit: int = 1000) -> int:
        """End every hold past its deadline (epoch seconds): settled at its progress if it
        has some (its record queued, the orphan sinks told), else released. Returns how many."""
        raise NotImplementedError

    def usage_take(self, *, limit: int) -> tuple[str | None, list[UsageRecord]]:
        """Up to `limit` queued records, as a batch that stays recoverable until `usage_done`."""
        raise NotImplementedError

    def usage_done(self, batch: str, *, requeue: Sequence[UsageRecord] = ()) -> None:
        raise NotImplementedError

    def usage_pending(self) -> int:
        raise NotImplementedError

    def counter(self, part: Part) -> tuple[int, int] | None:
        """(spent, held) of a part's counter, None if cold (tests and diagnostics)."""
        raise NotImplementedError

    def hold_state(self, hold_id: str) -> str | None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release connections (tests; a server process keeps its store for life)."""


@dataclass(slots=True)
class _Hold:
    state: str
    amount: int
    counters: tuple[str, ...]
    started_us: int
    deadline: float
    forget_at: float  # the record (an idempotency marker once ended) is dropped after this
    flight: str | None = None  # the in-flight subject this hold counts against
    progress: tuple[UsageRecord, dict[str, Any]] | None = None  # cost so far, and its note


class InProcessHoldStore(HoldStore):
    """This process's memory: the embedded default (one server process, no Redis).

    Every method runs without awaiting while it holds the lock, so each is atomic on the event
    loop and against other threads. Nothing but this process can see these holds, so expired
    ones are also swept here, on the way, and settled usage is flushed by a thread now and then.
    """

    _SWEEP_AT = 4096

    def __init__(self, *, auto_flush: bool = True) -> None:
        from billing.holds.outbox import UsageOutbox

        self._lock = threading.Lock()
        self._counters: dict[str, list[int]] = {}  # name -> [spent, held]
        self._counter_forget: dict[str, float] = {}
        self._holds: dict[str, _Hold] = {}
        self._deadlines: list[tuple[float, str]] = []
        # Nothing but this process sees its holds: its usage queue is the outbox itself.
        self.outbox = UsageOutbox(auto_flush=auto_flush, to_ledger=True)
        self._flights: dict[str, set[str]] = {}  # subject -> its active hold ids
        self._sweep_at = self._SWEEP_AT

    @property
    def record_ttl(self) -> float:
        return float(settings.BILLING_HOLD_RECORD_SECONDS)

    async def place(
        self, *, hold_id, parts, amount, started_at, deadline, seeds=None, in_flight=None
    ):
        orphans: list[tuple[UsageRecord, dict[str, Any]]] = []
        outcome = self._place(
            orphans, hold_id, parts, amount, started_at, deadline, seeds, in_flight
        )
        if orphans:
            orphans_notify(orphans)
        return outcome

    def _place(self, orphans, hold_id, parts, amount, started_at, deadline, seeds, in_flight):
        now = started_at.timestamp()
        with self._lock:
            if self._deadlines and self._deadlines[0][0] <= now:
                orphans.extend(self._release_expired_locked(now, 100)[1])
            existing = self._holds.get(hold_id)
            if existing is not None:
                return PlaceOutcome("dup", dup_state=existing.state)
            cold = []
            for i, part in enumerate(parts):
                name = part.counter
                if name in self._counters:
                    continue
                if seeds is not None and i in seeds:
                    self._counters[name] = [seeds[i], 0]
                    ttl = part.ttl_seconds(started_at)
                    if ttl is not None:
                        self._counter_forget[name] = now + ttl
                else:
                    cold.append(i)
            if cold:
                return PlaceOutcome("cold", cold=tuple(cold))
            flight = None
            if in_flight is not None:
                flight = self._flights.setdefault(in_flight.subject, set())
                if len(flight) >= in_flight.limit:
                    return PlaceOutcome("busy", in_flight=len(flight))
            rooms = []
            refused = None
            for i, part in enumerate(parts):
                if part.limit is None:
                    rooms.append(None)
                    continue
                spent, held = self._counters[part.counter]
                room = part.limit - spent - held
                rooms.append(room)
                if refused is None and room < amount:
                    refused = i
            if refused is not None:
                return PlaceOutcome("refused", rooms=tuple(rooms), refused_index=refused)
            for part in parts:
                self._counters[part.counter][1] += amount
            self._holds[hold_id] = _Hold(
                state="held",
                amount=amount,
                counters=tuple(p.counter for p in parts),
                started_us=to_us(started_at),
                deadline=deadline,
                forget_at=deadline + self.record_ttl,
                flight=in_flight.subject if in_flight is not None else None,
            )
            if flight is not None:
                flight.add(hold_id)
            heapq.heappush(self._deadlines, (deadline, hold_id))
            if len(self._holds) + len(self._counters) > self._sweep_at:
                self._sweep(now)
            return PlaceOutcome("ok", rooms=tuple(rooms))

    def _give_back(self, hold: _Hold, hold_id: str) -> None:
        if hold.flight is not None:
            self._flights.get(hold.flight, set()).discard(hold_id)
        for name in hold.counters:
            counter = self._counters.get(name)
            if counter is not None:
                counter[1] = max(0, counter[1] - hold.amount)

    async def settle(self, *, hold_id, record):
        with self._lock:
            hold = self._holds.get(hold_id)
            state = hold.state if hold is not None else "missing"
            if state == "settled":
                return state
            if hold is not None:
                if state == "held":
                    self._give_back(hold, hold_id)
                for name in hold.counters:
                    counter = self._counters.get(name)
                    if counter is not None:
                        counter[0] += record.cost_nanousd
                record = replace(record, occurred_at=from_us(hold.started_us))
                hold.state = "settled"
                hold.forget_at = time.time() + self.record_ttl
            else:
                self._holds[hold_id] = _Hold(
                    state="settled",
                    amount=0,
                    counters=(),
                    started_us=to_us(record.occurred_at),
                    deadline=0.0,
                    forget_at=time.time() + self.record_ttl,
                )
        self.outbox.append(record)
        return state

    async def release(self, *, hold_id):
        with self._lock:
            hold = self._holds.get(hold_id)
            if hold is None or hold.state != "held":
                return False
            self._give_back(hold, hold_id)
            hold.state = "released"
            hold.forget_at = time.time() + self.record_ttl
            return True

    async def progress(self, *, hold_id, record, note):
        with self._lock:
            hold = self._holds.get(hold_id)
            if hold is None or hold.state != "held":
                return False
            hold.progress = (record, note)
            return True

    def release_expired(self, *, now=None, limit=1000):
        with self._lock:
            ended, settled = self._release_expired_locked(
                time.time() if now is None else now, limit
            )
        orphans_notify(settled)
        return ended

    def _release_expired_locked(
        self, now: float, limit: int
    ) -> tuple[int, list[tuple[UsageRecord, dict[str, Any]]]]:
        ended = 0
        settled = []
        while self._deadlines and self._deadlines[0][0] <= now and ended < limit:
            _, hold_id = heapq.heappop(self._deadlines)
            hold = self._holds.get(hold_id)
            if hold is not None and hold.state == "held":
                self._give_back(hold, hold_id)
                ended += 1
                if hold.progress is None:
                    hold.state = "expired"
                    continue
                record, note = hold.progress
                record = replace(record, occurred_at=from_us(hold.started_us))
                for name in hold.counters:
                    counter = self._counters.get(name)
                    if counter is not None:
                        counter[0] += record.cost_nanousd
                hold.state = "settled"
                hold.progress = None
                hold.forget_at = time.time() + self.record_ttl
                self.outbox.append(record)
                settled.append((record, note))
        return ended, settled

    def _sweep(self, now: float) -> None:
        for hold_id in [h for h, hold in self._holds.items() if hold.forget_at <= now]:
            if self._holds[hold_id].state != "held":
                del self._holds[hold_id]
        for name in [n for n, t in self._counter_forget.items() if t <= now]:
            del self._counter_forget[name]
            self._counters.pop(name, None)
        self._sweep_at = max(self._SWEEP_AT, 2 * (len(self._holds) + len(self._counters)))

    def usage_take(self, *, limit):
        return self.outbox.take(limit=limit)

    def usage_done(self, batch, *, requeue=()):
        self.outbox.done(batch, requeue=requeue)

    def usage_pending(self) -> int:
        return self.outbox.pending()

    def counter(self, part):
        with self._lock:
            counter = self._counters.get(part.counter)
            return None if counter is None else (counter[0], counter[1])

    def hold_state(self, hold_id):
        with self._lock:
            hold = self._holds.get(hold_id)
            return None if hold is None else hold.state
