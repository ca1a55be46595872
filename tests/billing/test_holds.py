"""Spend holds on both backends (in-process and a real Redis): all-or-nothing reservation
against every limit, release, exactly-once settlement, expiry, cold counters seeded from the
ledger, and failing closed when Redis is down."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from billing import selectors
from billing.holds import (
    HoldUnavailable,
    InProcessHoldStore,
    RedisHoldStore,
    holds_release_expired,
    usage_flush,
)
from billing.models import LedgerEntry, Plan
from billing.services import (
    billing_account_set_monthly_limit,
    billing_account_set_plan,
    ledger_post,
    usage_settle_now,
)
from tests.billing.conftest import CENT, CLOSED_PORT_URL, USD, call, delete_prefix, redis_store
from tests.billing.helpers import counters, gen_id, place, release, settle


def test_a_hold_that_fits_is_reserved_on_every_limit(store, org):
    key = uuid.uuid4()
    billing_account_set_monthly_limit(organization=org, monthly_limit_nanousd=5 * USD)
    result = place(store, org, 30 * CENT, key_id=key, key_limit=USD)
    assert result.allowed
    assert result.refused_by is None
    assert result.key_remaining_nanousd == 70 * CENT
    assert result.org_remaining_nanousd == 470 * CENT
    assert result.balance_remaining_nanousd == 970 * CENT
    seen = counters(store, org, key_id=key, key_limit=USD)
    assert seen == {"key": (0, 30 * CENT), "org": (0, 30 * CENT), "bal": (0, 30 * CENT)}


@pytest.mark.parametrize(
    ("key_limit", "org_limit", "refused_by"),
    [
        (50 * CENT, None, "key_spend_limit"),
        (None, 50 * CENT, "org_spend_limit"),
        (None, None, "insufficient_quota"),
        # Several limits too small: the most specific one is named.
        (50 * CENT, 50 * CENT, "key_spend_limit"),
    ],
)
def test_a_hold_that_does_not_fit_any_limit_reserves_nothing(
    store, org, key_limit, org_limit, refused_by
):
    key = uuid.uuid4()
    billing_account_set_monthly_limit(organization=org, monthly_limit_nanousd=org_limit)
    amount = 11 * USD if refused_by == "insufficient_quota" else 60 * CENT
    result = place(store, org, amount, key_id=key, key_limit=key_limit)
    assert not result.allowed
    assert result.refused_by == refused_by
    assert result.message
    # All or nothing: no counter holds anything.
    for value in counters(store, org, key_id=key, key_limit=key_limit).values():
        assert value == (0, 0)


def test_holds_add_up_until_the_limit_and_not_one_nano_more(store, org):
    key = uuid.uuid4()
    for _ in range(4):
        assert place(store, org, 25 * CENT, key_id=key, key_limit=USD).allowed
    refused = place(store, org, 1, key_id=key, key_limit=USD)
    assert not refused.allowed
    assert refused.refused_by == "key_spend_limit"
    assert refused.key_remaining_nanousd == 0
    # The balance still has room: a key without a limit (or another key) goes on.
    assert place(store, org, 25 * CENT, key_id=uuid.uuid4(), key_limit=USD).allowed


def test_a_message_names_the_limit_and_the_amounts(store, org):
    result = place(store, org, 2 * USD, key_id=uuid.uuid4(), key_limit=USD, key_period="daily")
    assert result.message == (
        "This request may cost up to $2.00, more than the $1.00 left of this API key's daily "
        "spend limit ($1.00)."
    )
    broke = place(store, org, 11 * USD)
    assert "up to $11.00 and $10.00 is available" in broke.message


def test_display_amounts_are_exact():
    from billing.holds import usd

    assert [usd(n) for n in (0, 1234, 5_000_000, CENT, 1234 * USD + 5 * CENT)] == [
        "$0.00",
        "$0.000001",
        "$0.005000",
        "$0.01",
        "$1,234.05",
    ]


def test_postpaid_plans_skip_the_balance_check(store, org):
    billing_account_set_plan(organization=org, plan=Plan.objects.get(slug="postpaid-metered"))
    billing_account_set_monthly_limit(organization=org, monthly_limit_nanousd=None)
    result = place(store, org, 500 * USD)
    assert result.allowed
    assert result.balance_remaining_nanousd is None
    # Not checked, but still counted (the plan may change back to prepaid).
    assert counters(store, org) == {"org": (0, 500 * USD), "bal": (0, 500 * USD)}


def test_release_gives_the_hold_back_once(store, org):
    key = uuid.uuid4()
    hold = gen_id()
    assert place(store, org, 80 * CENT, hold_id=hold, key_id=key, key_limit=USD).allowed
    assert not place(store, org, 80 * CENT, key_id=key, key_limit=USD).allowed
    assert release(store, hold) is True
    assert release(store, hold) is False
    assert counters(store, org, key_id=key, key_limit=USD)["key"] == (0, 0)
    assert place(store, org, 80 * CENT, key_id=key, key_limit=USD).allowed
    assert store.usage_pending() == 0  # a release writes nothing


def test_placing_the_same_hold_id_twice_reserves_once(store, org):
    hold = gen_id()
    assert place(store, org, USD, hold_id=hold).allowed
    again = place(store, org, USD, hold_id=hold)
    assert again.allowed
    assert counters(store, org)["bal"] == (0, USD)


def test_settle_turns_the_hold_into_spend_exactly_once(store, org):
    key = uuid.uuid4()
    hold = gen_id()
    assert place(store, org, 50 * CENT, hold_id=hold, key_id=key, key_limit=USD).allowed
    assert settle(store, org, hold, 12 * CENT, key_id=key) is True
    assert settle(store, org, hold, 12 * CENT, key_id=key) is False
    assert settle(store, org, hold, 99 * CENT, key_id=key) is False
    assert counters(store, org, key_id=key, key_limit=USD) == {
        "key": (12 * CENT, 0),
        "org": (12 * CENT, 0),
        "bal": (12 * CENT, 0),
    }
    assert store.usage_pending() == 1
    assert usage_flush(store=store) == 1
    entry = LedgerEntry.objects.get(reference=hold)
    assert entry.kind == "usage"
    assert entry.amount_nanousd == -12 * CENT
    assert entry.key_id == key
    assert selectors.ledger_sum(organization=org) == 10 * USD - 12 * CENT
    assert selectors.billing_check() == []
    # Released after settling: nothing changes either.
    assert release(store, hold) is False
    assert counters(store, org, key_id=key, key_limit=USD)["key"] == (12 * CENT, 0)


def test_a_failed_request_settles_at_zero_with_one_zero_entry(store, org):
    hold = gen_id()
    assert place(store, org, 50 * CENT, hold_id=hold).allowed
    assert settle(store, org, hold, 0) is True
    assert counters(store, org)["bal"] == (0, 0)
    usage_flush(store=store)
    entry = LedgerEntry.objects.get(reference=hold)
    assert entry.amount_nanousd == 0
    assert selectors.ledger_sum(organization=org) == 10 * USD


def test_settle_may_exceed_the_hold_and_is_billed_in_full(store, org):
    # The estimate was short (tokenizer drift): the real cost is what is billed.
    hold = gen_id()
    assert place(store, org, 9 * USD, hold_id=hold).allowed
    settle(store, org, hold, 10 * USD + 5)
    usage_flush(store=store)
    assert selectors.ledger_sum(organization=org) == -5
    refused = place(store, org, 0)
    assert not refused.allowed  # nothing left, not even for a free request
    assert refused.refused_by == "insufficient_quota"


def test_settling_an_unknown_or_released_hold_still_records_the_usage(store, org):
    released = gen_id()
    place(store, org, USD, hold_id=released)
    release(store, released)
    assert settle(store, org, released, 30 * CENT) is True
    assert counters(store, org)["bal"] == (30 * CENT, 0)
    unknown = gen_id()
    assert settle(store, org, unknown, 20 * CENT) is True
    assert settle(store, org, unknown, 20 * CENT) is False
    assert usage_flush(store=store) == 2
    assert LedgerEntry.objects.filter(reference__in=[released, unknown]).count() == 2


def test_expired_holds_are_released_by_the_periodic_job(store, org, settings):
    settings.BILLING_HOLD_TTL_SECONDS = 60
    long_ago = timezone.now() - timedelta(minutes=5)
    key = uuid.uuid4()
    crashed = gen_id()
    live = gen_id()
    assert place(store, org, 40 * CENT, hold_id=live, key_id=key, key_limit=USD).allowed
    # Placed by a process that died five minutes ago (a clock at the start of its request).
    assert place(
        store, org, 40 * CENT, hold_id=crashed, key_id=key, key_limit=USD, now=long_ago
    ).allowed
    assert counters(store, org, key_id=key, key_limit=USD)["key"] == (0, 80 * CENT)
    assert holds_release_expired(store=store) == 1
    assert store.hold_state(crashed) == "expired"
    assert store.hold_state(live) == "held"
    assert counters(store, org, key_id=key, key_limit=USD)["key"] == (0, 40 * CENT)
    assert place(store, org, 40 * CENT, key_id=key, key_limit=USD).allowed
    assert holds_release_expired(store=store) == 0
    # The process was only slow, not dead: its late settlement still counts, once.
    assert settle(store, org, crashed, 10 * CENT, key_id=key) is True
    assert counters(store, org, key_id=key, key_limit=USD)["key"] == (10 * CENT, 80 * CENT)


def test_the_periodic_task_releases_expired_holds_of_the_default_store(org, settings):
    from billing.holds import get_hold_store
    from billing.tasks import release_expired_holds

    store = get_hold_store()
    if isinstance(store, RedisHoldStore):  # REDIS_URL is set: the per-worker test database
        store.release_expired(now=timezone.now().timestamp() + 10**6)  # others' leftovers
    settings.BILLING_HOLD_TTL_SECONDS = 1
    hold = gen_id()
    assert place(store, org, USD, hold_id=hold, now=timezone.now() - timedelta(seconds=30)).allowed
    release_expired_holds.delay()
    assert store.hold_state(hold) == "expired"
    assert counters(store, org)["bal"] == (0, 0)


def test_a_cold_counter_is_seeded_from_the_ledger(store, org):
    key = uuid.uuid4()
    now = timezone.now()
    # Spend this month that no counter saw (written before a restart, say).
    usage_settle_now(reference=gen_id(), organization_id=org.id, key_id=key, cost_nanousd=70 * CENT)
    result = place(store, org, 40 * CENT, key_id=key, key_limit=USD, now=now)
    assert not result.allowed
    assert result.key_remaining_nanousd == 30 * CENT
    assert result.balance_remaining_nanousd == 930 * CENT
    assert counters(store, org, key_id=key, key_limit=USD) == {
        "key": (70 * CENT, 0),
        "org": (70 * CENT, 0),
        "bal": (70 * CENT, 0),
    }


def test_a_second_process_on_the_same_redis_sees_the_same_counters(org):
    first = redis_store()
    second = redis_store(first.prefix)
    try:
        key = uuid.uuid4()
        assert place(first, org, 60 * CENT, key_id=key, key_limit=USD).allowed
        assert not place(second, org, 60 * CENT, key_id=key, key_limit=USD).allowed
    finally:
        delete_prefix(first.prefix)


def test_a_top_up_is_seen_by_the_next_hold(store, org, django_capture_on_commit_callbacks):
    assert not place(store, org, 15 * USD).allowed
    with django_capture_on_commit_callbacks(execute=True):
        ledger_post(
            organization=org,
            kind=LedgerEntry.Kind.TOPUP,
            amount_nanousd=10 * USD,
            reference=f"topup-{uuid.uuid4()}",
        )
    assert place(store, org, 15 * USD).allowed


def test_redis_down_fails_closed(org):
    store = RedisHoldStore(CLOSED_PORT_URL, prefix="billtest:down")
    with pytest.raises(HoldUnavailable):
        place(store, org, CENT)
    with pytest.raises(HoldUnavailable):
        store.release_expired()
    # Releasing can wait for the expiry job; it never raises on the request path.
    assert release(store, gen_id()) is False


def test_redis_down_at_settlement_still_brings_the_usage_to_the_ledger(org):
    """No synchronous write on the request path: the record waits in this process's outbox
    (written within milliseconds by its thread, here by the flush); a settlement replayed
    while Redis can't tell is written once."""
    store = RedisHoldStore(CLOSED_PORT_URL, prefix="billtest:down")
    hold = gen_id()
    assert settle(store, org, hold, 25 * CENT) is True
    assert settle(store, org, hold, 25 * CENT) is True  # queued again: nobody can tell
    assert not LedgerEntry.objects.filter(reference=hold).exists()
    assert usage_flush(store=store) == 1
    assert LedgerEntry.objects.get(reference=hold).amount_nanousd == -25 * CENT
    assert selectors.billing_check() == []


def test_negative_amounts_are_refused(store, org):
    with pytest.raises(ValueError):
        place(store, org, -1)
    with pytest.raises(ValueError):
        settle(store, org, gen_id(), -1)


def test_a_replayed_flush_batch_changes_nothing(org):
    """A flusher that died after writing but before acknowledging: its batch goes back to the
    queue once stale and is written again, finding every reference already there."""
    store = redis_store()
    try:
        holds = [gen_id() for _ in range(3)]
        for hold in holds:
            assert place(store, org, 10 * CENT, hold_id=hold).allowed
            settle(store, org, hold, 10 * CENT)
        batch, records = store.usage_take(limit=100)
        assert len(records) == 3
        from billing.services import usage_entries_write

        assert usage_entries_write(records=records) == []
        # ...and the process dies here, without usage_done(batch).
        assert store.usage_pending() == 3
        from django.test import override_settings

        with override_settings(BILLING_USAGE_BATCH_STALE_SECONDS=-1):
            assert usage_flush(store=store) == 3
        assert store.usage_pending() == 0
        assert LedgerEntry.objects.filter(reference__in=holds).count() == 3
        assert selectors.ledger_sum(organization=org) == 10 * USD - 30 * CENT
        assert selectors.billing_check() == []
    finally:
        delete_prefix(store.prefix)


def test_in_process_flush_requeues_what_could_not_be_written(org, monkeypatch):
    store = InProcessHoldStore(auto_flush=False)
    hold = gen_id()
    place(store, org, CENT, hold_id=hold)
    settle(store, org, hold, CENT)
    import billing.services.ledger as ledger

    def broken(organization_id, records):
        raise RuntimeError("database gone")

    monkeypatch.setattr(ledger, "_write_org_usage", broken)
    assert usage_flush(store=store) == 0
    assert store.usage_pending() == 1
    monkeypatch.undo()
    assert usage_flush(store=store) == 1
    assert LedgerEntry.objects.filter(reference=hold).exists()


def test_an_async_caller_gets_the_same_answers(org):
    """hold_place from an async context without an explicit store (the gateway's way)."""
    from billing.holds import get_hold_store, hold_place

    result = call(
        get_hold_store(),
        hold_place,
        hold_id=gen_id(),
        organization_id=str(org.id),
        key_id=None,
        key_limit_nanousd=None,
        key_period="monthly",
        amount_nanousd=USD,
    )
    assert result.allowed
    assert result.balance_remaining_nanousd == 9 * USD


def test_free_requests_hold_and_settle_zero(store, org):
    hold = gen_id()
    assert place(store, org, 0, hold_id=hold).allowed
    assert release(store, hold) is True
    hold = gen_id()
    assert place(store, org, 0, hold_id=hold).allowed
    assert settle(store, org, hold, 0) is True
    assert counters(store, org)["bal"] == (0, 0)


def test_a_new_limit_is_seen_by_the_next_hold(store, org, django_capture_on_commit_callbacks):
    assert place(store, org, 2 * USD).allowed
    with django_capture_on_commit_callbacks(execute=True):
        billing_account_set_monthly_limit(organization=org, monthly_limit_nanousd=USD)
    refused = place(store, org, 2 * USD)
    assert refused.refused_by == "org_spend_limit"


def test_the_in_process_store_flushes_by_itself(transactional_db, settings):
    """The embedded default has no worker that can see this process's queue: a timer thread
    writes settled usage within BILLING_USAGE_FLUSH_SECONDS, with no further request."""
    import time

    from tests.billing.conftest import first_organization

    organization = first_organization()
    settings.BILLING_USAGE_FLUSH_SECONDS = 0.05
    store = InProcessHoldStore()
    hold = gen_id()
    assert place(store, organization, CENT, hold_id=hold).allowed
    settle(store, organization, hold, CENT)
    deadline = time.monotonic() + 10
    while store.usage_pending() or not LedgerEntry.objects.filter(reference=hold).exists():
        assert time.monotonic() < deadline, "the usage was never flushed"
        time.sleep(0.02)
    assert selectors.billing_check() == []


def test_a_warm_hold_and_its_settlement_cost_no_query(store, org, django_assert_num_queries):
    key = uuid.uuid4()
    billing_account_set_monthly_limit(organization=org, monthly_limit_nanousd=5 * USD)
    place(store, org, CENT, key_id=key, key_limit=USD)  # warms the snapshot and the counters
    hold = gen_id()
    with django_assert_num_queries(0):
        assert place(store, org, CENT, hold_id=hold, key_id=key, key_limit=USD).allowed
        assert settle(store, org, hold, CENT, key_id=key)
        assert not release(store, gen_id())


def test_limits_removed_and_set_again_find_counters_that_saw_everything(store, org):
    """Counters are kept whatever the limits: a key moved from monthly to daily and back, or
    an organization limit lifted and set again, is checked against all its spend."""
    key = uuid.uuid4()
    spend = gen_id()
    assert place(store, org, 40 * CENT, hold_id=spend, key_id=key, key_limit=USD).allowed
    settle(store, org, spend, 40 * CENT, key_id=key)
    # A while on a daily limit, then no limit at all, while spending goes on...
    for period, limit, cost in (("daily", 10 * USD, 30 * CENT), ("monthly", None, 20 * CENT)):
        hold = gen_id()
        assert place(
            store, org, cost, hold_id=hold, key_id=key, key_limit=limit, key_period=period
        ).allowed
        settle(store, org, hold, cost, key_id=key)
    # ...then the monthly $1 limit again: $0.90 of it is spent, so $0.20 doesn't fit.
    refused = place(store, org, 20 * CENT, key_id=key, key_limit=USD)
    assert refused.refused_by == "key_spend_limit"
    assert refused.key_remaining_nanousd == 10 * CENT


def test_an_unknown_key_period_is_refused(store, org):
    with pytest.raises(ValueError):
        place(store, org, CENT, key_id=uuid.uuid4(), key_limit=USD, key_period="hourly")
