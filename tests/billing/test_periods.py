"""Spend periods in UTC, and what happens at their boundaries: a period is named by its start,
nothing is reset, and a charge lands in the period in which its generation started."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from billing import selectors
from billing.holds import usage_flush
from billing.models import LedgerEntry
from billing.periods import EPOCH, period_bounds, period_start
from billing.services import usage_settle_now
from tests.billing.conftest import CENT, USD, utc
from tests.billing.helpers import counters, gen_id, place, settle

JUST_BEFORE = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("period", "at", "start", "end"),
    [
        ("daily", utc(2026, 3, 4, 23, 59, 59, 999999), utc(2026, 3, 4), utc(2026, 3, 5)),
        ("daily", utc(2026, 3, 5), utc(2026, 3, 5), utc(2026, 3, 6)),
        # ISO weeks start on Monday: 2026-03-02 is a Monday, 2026-03-08 a Sunday.
        ("weekly", utc(2026, 3, 8, 23, 59, 59, 999999), utc(2026, 3, 2), utc(2026, 3, 9)),
        ("weekly", utc(2026, 3, 9), utc(2026, 3, 9), utc(2026, 3, 16)),
        # A week across a year end.
        ("weekly", utc(2027, 1, 1, 12), utc(2026, 12, 28), utc(2027, 1, 4)),
        ("monthly", utc(2026, 3, 31, 23, 59, 59, 999999), utc(2026, 3, 1), utc(2026, 4, 1)),
        ("monthly", utc(2026, 12, 15), utc(2026, 12, 1), utc(2027, 1, 1)),
        ("monthly", utc(2028, 2, 29, 8), utc(2028, 2, 1), utc(2028, 3, 1)),
        ("total", utc(2026, 3, 4, 5), EPOCH, None),
    ],
)
def test_period_bounds(period, at, start, end):
    assert period_bounds(period, at) == (start, end)


def test_periods_are_utc_whatever_the_caller_zone():
    # 01:30 in Paris on April 1st is still March 31st in UTC.
    paris = datetime(2026, 4, 1, 1, 30, tzinfo=ZoneInfo("Europe/Paris"))
    assert period_start("monthly", paris) == utc(2026, 3, 1)
    assert period_start("daily", paris) == utc(2026, 3, 31)


def test_naive_times_and_unknown_periods_are_refused():
    with pytest.raises(ValueError):
        period_start("daily", datetime(2026, 3, 4))  # noqa: DTZ001
    with pytest.raises(ValueError):
        period_start("hourly", utc(2026, 3, 4))


@pytest.mark.parametrize(
    ("period", "boundary"),
    [
        ("daily", utc(2026, 3, 5)),
        ("weekly", utc(2026, 3, 9)),
        ("monthly", utc(2026, 4, 1)),
    ],
)
def test_ledger_spend_splits_exactly_at_the_boundary(org, period, boundary):
    key = uuid.uuid4()
    before, after = boundary - JUST_BEFORE, boundary
    for reference, at, cost in (("gen-before", before, 3 * CENT), ("gen-after", after, 5 * CENT)):
        usage_settle_now(
            reference=reference,
            organization_id=org.id,
            key_id=key,
            cost_nanousd=cost,
            occurred_at=at,
        )
    spent = {
        at: selectors.usage_spent(organization_id=org.id, key_id=key, period=period, at=at)
        for at in (before, after)
    }
    assert spent == {before: 3 * CENT, after: 5 * CENT}
    assert (
        selectors.usage_spent(organization_id=org.id, key_id=key, period="total", at=after)
        == 8 * CENT
    )


def test_a_new_day_has_a_fresh_budget_without_any_reset(store, org):
    key = uuid.uuid4()
    last_moment = utc(2026, 3, 4, 23, 59, 59, 999000)
    midnight = utc(2026, 3, 5)
    late = gen_id()
    assert place(
        store,
        org,
        90 * CENT,
        hold_id=late,
        key_id=key,
        key_limit=USD,
        key_period="daily",
        now=last_moment,
    ).allowed
    assert not place(
        store, org, 20 * CENT, key_id=key, key_limit=USD, key_period="daily", now=last_moment
    ).allowed
    # One millisecond later it is a new day for the key (the balance is still shared).
    fresh = place(
        store, org, 20 * CENT, key_id=key, key_limit=USD, key_period="daily", now=midnight
    )
    assert fresh.allowed
    assert fresh.key_remaining_nanousd == 80 * CENT
    assert fresh.balance_remaining_nanousd == 10 * USD - 110 * CENT


def test_a_generation_that_settles_after_midnight_counts_on_the_day_it_started(store, org):
    key = uuid.uuid4()
    started = utc(2026, 3, 4, 23, 59, 59, 999000)
    hold = gen_id()
    assert place(
        store,
        org,
        50 * CENT,
        hold_id=hold,
        key_id=key,
        key_limit=USD,
        key_period="daily",
        now=started,
    ).allowed
    settle(store, org, hold, 40 * CENT, key_id=key)  # settles "now", days later
    day_before = counters(store, org, key_id=key, key_limit=USD, key_period="daily", at=started)
    assert day_before["key"] == (40 * CENT, 0)
    usage_flush(store=store)
    entry = LedgerEntry.objects.get(reference=hold)
    assert entry.occurred_at == started
    assert (
        selectors.usage_spent(organization_id=org.id, key_id=key, period="daily", at=started)
        == 40 * CENT
    )
    assert (
        selectors.usage_spent(
            organization_id=org.id, key_id=key, period="daily", at=utc(2026, 3, 5)
        )
        == 0
    )


@pytest.mark.parametrize("period", ["daily", "weekly", "monthly", "total"])
def test_a_cold_counter_seeds_only_its_own_period_from_the_ledger(store, org, period):
    key = uuid.uuid4()
    now = utc(2026, 3, 4, 12)
    start, _ = period_bounds(period, now)
    # Spend just before this period (or long ago, for total) and inside it.
    usage_settle_now(
        reference=gen_id(),
        organization_id=org.id,
        key_id=key,
        cost_nanousd=30 * CENT,
        occurred_at=start - JUST_BEFORE if period != "total" else utc(2001, 1, 1),
    )
    usage_settle_now(
        reference=gen_id(),
        organization_id=org.id,
        key_id=key,
        cost_nanousd=20 * CENT,
        occurred_at=start,
    )
    result = place(store, org, CENT, key_id=key, key_limit=USD, key_period=period, now=now)
    expected_spent = 50 * CENT if period == "total" else 20 * CENT
    assert result.key_remaining_nanousd == USD - expected_spent - CENT
