"""Holds under concurrency on a real Redis, from two separate store instances (two server
processes' worth of clients): a budget for N requests admits at most N of 10×N simultaneous
ones, and once everything is settled and flushed the counters and the ledger agree.

Also a crash: a process killed while holding a hold leaves it in Redis, and the periodic job
releases it. (The end-to-end version through the HTTP gateway comes with the gateway wiring.)
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from billing import selectors
from billing.holds import (
    get_hold_store,
    hold_parts,
    hold_place,
    hold_settle,
    holds_release_expired,
    org_snapshots,
    usage_flush,
)
from billing.holds.store import BALANCE, Part
from billing.models import LedgerEntry
from billing.periods import TOTAL, period_bounds
from billing.services import billing_account_set_monthly_limit, ledger_post
from tests.billing.conftest import (
    CENT,
    REDIS_URL,
    USD,
    delete_prefix,
    first_organization,
    redis_store,
)

N = 20
PRICE = 7 * CENT + 3  # an odd amount: no rounding luck


@pytest.fixture
def funded(transactional_db, request):
    """An organization whose binding limit allows exactly N requests of PRICE."""
    binding = request.param
    org = first_organization()  # $1 free grant
    key_limit = None
    if binding == "balance":
        # Credits for exactly N requests: top up to N × PRICE.
        ledger_post(
            organization=org,
            kind=LedgerEntry.Kind.TOPUP,
            amount_nanousd=N * PRICE - USD,
            reference=f"topup-{org.id}",
        )
    else:
        ledger_post(
            organization=org,
            kind=LedgerEntry.Kind.TOPUP,
            amount_nanousd=1000 * USD,
            reference=f"topup-{org.id}",
        )
        if binding == "key":
            key_limit = N * PRICE
        else:
            billing_account_set_monthly_limit(organization=org, monthly_limit_nanousd=N * PRICE)
    org_snapshots.clear_local()
    return org, key_limit


@pytest.mark.parametrize("funded", ["key", "org", "balance"], indirect=True)
async def test_ten_times_n_concurrent_holds_admit_at_most_n(funded):
    org, key_limit = funded
    key_id = str(uuid.uuid4())
    # A modest pool with a patient timeout: on a loaded test machine, opening 64 connections
    # at once can take longer than production's 1 s (and would fail closed, rightly).
    pool = {"max_connections": 16, "timeout": 10.0}
    first = redis_store(**pool)
    second = redis_store(first.prefix, **pool)  # another process: its own clients, same Redis
    try:
        ids = [f"gen-{uuid.uuid4().hex}" for _ in range(10 * N)]
        results = await asyncio.gather(
            *(
                hold_place(
                    hold_id=hold_id,
                    organization_id=org.id,
                    key_id=key_id,
                    key_limit_nanousd=key_limit,
                    key_period="daily",
                    amount_nanousd=PRICE,
                    store=first if i % 2 else second,
                )
                for i, hold_id in enumerate(ids)
            )
        )
        admitted = [r.hold_id for r in results if r.allowed]
        assert len(admitted) == N
        refused = {r.refused_by for r in results if not r.allowed}
        assert len(refused) == 1
        # Settle every admitted request concurrently, each at its real cost (≤ its hold), from
        # either process; every settlement is also replayed once.
        rng = random.Random(7)
        costs = {hold_id: rng.randint(0, PRICE) for hold_id in admitted}
        settles = [
            hold_settle(
                hold_id=hold_id,
                actual_nanousd=cost,
                organization_id=org.id,
                key_id=key_id,
                store=(first, second)[(i + replay) % 2],
            )
            for replay in (0, 1)
            for i, (hold_id, cost) in enumerate(costs.items())
        ]
        firsts = await asyncio.gather(*settles)
        assert sum(firsts) == N  # exactly one settlement per generation counted
        flushed = await sync_to_async(usage_flush)(store=first)
        assert flushed == N  # its own outbox, and the shared queue: every generation once
        # The other process's outbox holds what it settled first again: entered once (below).
        await sync_to_async(usage_flush)(store=second)

        # Counters and ledger agree, and no hold is left behind.
        total = sum(costs.values())
        snapshot = await org_snapshots.aget(org.id)
        parts = hold_parts(
            snapshot=snapshot,
            key_id=key_id,
            key_limit_nanousd=key_limit,
            key_period="daily",
            at=timezone.now(),
        )
        for part in parts:
            assert first.counter(part) == (total, 0), part.scope
        assert await sync_to_async(first.release_expired)(now=10**12) == 0

        def books():
            usage = LedgerEntry.objects.filter(organization=org, kind="usage")
            return (
                usage.count(),
                selectors.usage_spent(
                    organization_id=org.id, key_id=key_id, period="daily", at=timezone.now()
                ),
                selectors.billing_check(),
            )

        count, spent, mismatches = await sync_to_async(books)()
        assert (count, spent, mismatches) == (N, total, [])
    finally:
        await first.aclose()
        await second.aclose()
        delete_prefix(first.prefix)


def test_a_hold_of_a_killed_process_is_released_by_the_periodic_job():
    prefix = f"billtest:{uuid.uuid4().hex[:12]}"
    org_id = str(uuid.uuid4())
    hold_id = f"gen-{uuid.uuid4().hex}"
    child = textwrap.dedent(
        f"""
        import asyncio, os, signal, time
        import django
        django.setup()
        from django.utils import timezone
        from billing.holds import RedisHoldStore
        from billing.holds.store import Part
        from billing.periods import EPOCH

        async def main():
            store = RedisHoldStore({REDIS_URL!r}, prefix={prefix!r})
            part = Part("bal", {org_id!r}, "total", EPOCH, None, 10**9)
            now = timezone.now()
            outcome = await store.place(
                hold_id={hold_id!r}, parts=[part], amount=250_000_000, started_at=now,
                deadline=time.time() + 30, seeds={{0: 0}},
            )
            assert outcome.status == "ok", outcome
            print("holding", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # mid-request, before any settlement

        asyncio.run(main())
        """
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    proc = subprocess.run(
        [sys.executable, "-c", child],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=settings.BASE_DIR,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.strip() == "holding"
    store = redis_store(prefix)
    try:
        start, end = period_bounds(TOTAL, timezone.now())
        part = Part(BALANCE, org_id, TOTAL, start, end, 10**9)
        assert store.counter(part) == (0, 250_000_000)
        # Not yet past its deadline: the job leaves it alone.
        assert holds_release_expired(store=store) == 0
        later = timezone.now() + timedelta(seconds=31)
        assert holds_release_expired(store=store, now=later) == 1
        assert store.counter(part) == (0, 0)
        assert store.hold_state(hold_id) == "expired"
        assert holds_release_expired(store=store, now=later) == 0
    finally:
        delete_prefix(prefix)


def test_the_default_store_follows_redis_url(settings):
    settings.REDIS_URL = ""
    assert type(get_hold_store()).__name__ == "InProcessHoldStore"
    settings.REDIS_URL = REDIS_URL
    store = get_hold_store()
    assert type(store).__name__ == "RedisHoldStore"
    assert store.url == REDIS_URL
    assert get_hold_store() is store
