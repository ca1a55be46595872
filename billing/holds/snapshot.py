"""What the hot path needs to know about an organization's billing, without a query.

Three levels, like accounts.api_key_auth.KeyCache: this process's memory (about a second), the
shared Django cache (Redis in production), then the database. A change (a top-up, a new limit,
another plan) overwrites the shared entry once its transaction commits, so every process sees
it once its local copy lapses. Fills use `add`, never `set`: a fill that raced a change can't
put the old value back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import BaseCache
from django.db import DatabaseError

from config.localcache import LocalTTLCache
from config.localcache import process_cache as cache

_MISS = object()
_flights: dict[tuple[asyncio.AbstractEventLoop, Hashable], asyncio.Future] = {}


async def single_flight[T](key: Hashable, fetch: Callable[[], Awaitable[T]]) -> T:
    """Run `fetch` once for all the callers that ask for `key` at the same time (a cold
    process taking a burst of requests for one organization asks the database once)."""
    loop = asyncio.get_running_loop()
    flight = _flights.get((loop, key))
    if flight is not None:
        return await asyncio.shield(flight)
    flight = _flights[(loop, key)] = loop.create_future()
    try:
        result = await fetch()
    except BaseException as exc:
        flight.set_exception(exc)
        flight.exception()  # retrieved: no "never retrieved" warning when nobody waited
        raise
    else:
        flight.set_result(result)
        return result
    finally:
        del _flights[(loop, key)]


@dataclass(frozen=True, slots=True)
class OrgBillingSnapshot:
    organization_id: str
    prepaid: bool
    # The organization's limit per calendar month (UTC), or None.
    monthly_limit_nanousd: int | None
    # Every credit ever (top-ups, grants, refunds, adjustments): the prepaid balance is this
    # minus all usage, and all usage is a hot counter.
    credits_nanousd: int
    # From the plan: the cap on requests in flight (None: none) and the earliest hedge.
    max_in_flight: int | None = None
    min_hedge_after_ms: int = 0
    # Why the organization may not spend at all right now ("" when it may): a payment dispute
    # is open. Last, with a default, so that a cached entry of the older shape still reads.
    suspended: str = ""
    # The platform's rate limits for the organization (its plan's, or staff's override);
    # None only in an entry cached before they existed.
    rpm_limit: int | None = None
    tpm_limit: int | None = None

    def as_tuple(self) -> tuple:
        return (
            self.organization_id,
            self.prepaid,
            self.monthly_limit_nanousd,
            self.credits_nanousd,
            self.max_in_flight,
            self.min_hedge_after_ms,
            self.suspended,
            self.rpm_limit,
            self.tpm_limit,
        )


SUSPENDED_DISPUTE = (
    "Spending is suspended: a payment dispute (chargeback) is open on one of your payments. "
    "It resumes as soon as the dispute is closed; see your organization's billing page."
)


def snapshot_build(organization_id: uuid.UUID | str) -> OrgBillingSnapshot:
    """From the database (creating the account, with its free grant, on first use)."""
    from billing.selectors import disputes_open_count, ledger_credits
    from billing.services.ledger import _ensure_account

    account = _ensure_account(organization_id)
    credits, _ = ledger_credits(organization_id=account.organization_id) or (0, 0)
    suspended = ""
    if disputes_open_count(organization_id=account.organization_id):
        suspended = SUSPENDED_DISPUTE
    return OrgBillingSnapshot(
        organization_id=str(account.organization_id),
        prepaid=account.plan.is_prepaid,
        monthly_limit_nanousd=account.monthly_limit_nanousd,
        credits_nanousd=credits,
        max_in_flight=account.plan.max_in_flight,
        min_hedge_after_ms=account.plan.min_hedge_after_ms,
        suspended=suspended,
        rpm_limit=account.rpm_limit,
        tpm_limit=account.tpm_limit,
    )


class OrgSnapshotCache:
    def __init__(
        self,
        shared: BaseCache | None = None,
        *,
        local_ttl: float | None = None,
        shared_ttl: int | None = None,
    ) -> None:
        self._shared = shared
        self._local = LocalTTLCache()
        self._local_ttl = local_ttl
        self._shared_ttl = shared_ttl

    @property
    def shared(self) -> BaseCache:
        return self._shared if self._shared is not None else cache

    @property
    def local_ttl(self) -> float:
        if self._local_ttl is not None:
            return self._local_ttl
        return settings.BILLING_SNAPSHOT_LOCAL_TTL

    @property
    def shared_ttl(self) -> int:
        if self._shared_ttl is not None:
            return self._shared_ttl
        return settings.BILLING_SNAPSHOT_CACHE_TTL

    @staticmethod
    def cache_key(organization_id: str) -> str:
        return f"billing:snapshot:{organization_id}"

    def _local_get(self, organization_id: str) -> OrgBillingSnapshot | None:
        return self._local.get(organization_id)

    def _local_put(self, snapshot: OrgBillingSnapshot) -> None:
        self._local.put(snapshot.organization_id, snapshot, self.local_ttl)

    async def aget(self, organization_id: uuid.UUID | str) -> OrgBillingSnapshot:
        organization_id = str(organization_id)
        snapshot = self._local_get(organization_id)
        if snapshot is not None:
            return snapshot
        return await single_flight(
            ("snapshot", id(self), organization_id), lambda: self._afetch(organization_id)
        )

    async def _afetch(self, organization_id: str) -> OrgBillingSnapshot:
        value = await self.shared.aget(self.cache_key(organization_id), _MISS)
        if value is _MISS:
            try:
                snapshot = await sync_to_async(snapshot_build)(organization_id)
            except DatabaseError:
                return self._stale(organization_id)
            await self.shared.aadd(
                self.cache_key(organization_id), snapshot.as_tuple(), self.shared_ttl
            )
        else:
            snapshot = OrgBillingSnapshot(*value)
        self._local_put(snapshot)
        return snapshot

    def _stale(self, organization_id: str) -> OrgBillingSnapshot:
        """Called while handling a DatabaseError: with neither the shared cache nor the
        database answering, this process's last copy keeps serving (the spend counters in
        Redis still hold every limit); a process that never had one re-raises."""
        snapshot = self._local.stale(organization_id)
        if snapshot is None:
            raise  # noqa: PLE0704
        return snapshot

    def get(self, organization_id: uuid.UUID | str) -> OrgBillingSnapshot:
        organization_id = str(organization_id)
        snapshot = self._local_get(organization_id)
        if snapshot is not None:
            return snapshot
        value = self.shared.get(self.cache_key(organization_id), _MISS)
        if value is _MISS:
            try:
                snapshot = snapshot_build(organization_id)
            except DatabaseError:
                return self._stale(organization_id)
            self.shared.add(self.cache_key(organization_id), snapshot.as_tuple(), self.shared_ttl)
        else:
            snapshot = OrgBillingSnapshot(*value)
        self._local_put(snapshot)
        return snapshot

    def refresh(self, organization_id: uuid.UUID | str) -> None:
        """After a committed change: overwrite what every process reads next."""
        snapshot = snapshot_build(organization_id)
        self.shared.set(
            self.cache_key(snapshot.organization_id), snapshot.as_tuple(), self.shared_ttl
        )
        self._local.pop(snapshot.organization_id)

    def clear_local(self) -> None:
        self._local.clear()


org_snapshots = OrgSnapshotCache()
