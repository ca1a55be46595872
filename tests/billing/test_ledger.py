"""The ledger: append-only, integer nano-USD, one unique reference per entry, and a cached
balance that always equals the sum of the entries."""

from __future__ import annotations

import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction

from billing import selectors
from billing.exceptions import BillingError
from billing.holds.store import UsageRecord
from billing.models import BillingAccount, LedgerEntry
from billing.services import ledger_post, usage_entries_write, usage_settle_now
from tests.billing.conftest import CENT, USD, utc
from tests.factories import OrganizationFactory

Kind = LedgerEntry.Kind


def balance(org) -> int:
    return BillingAccount.objects.get(organization=org).balance_nanousd


def test_each_entry_moves_the_cached_balance_with_it(org):
    assert balance(org) == 10 * USD
    ledger_post(organization=org, kind=Kind.USAGE, amount_nanousd=-3 * CENT, reference="gen-1")
    ledger_post(organization=org, kind=Kind.REFUND, amount_nanousd=-2 * USD, reference="re_1")
    ledger_post(organization=org, kind=Kind.ADJUSTMENT, amount_nanousd=7, reference="adj-1")
    assert balance(org) == 10 * USD - 3 * CENT - 2 * USD + 7
    assert selectors.ledger_sum(organization=org) == balance(org)
    assert selectors.billing_check() == []


def test_a_replayed_reference_changes_nothing(org):
    first, created = ledger_post(
        organization=org, kind=Kind.TOPUP, amount_nanousd=5 * USD, reference="pi_123"
    )
    assert created
    again, created_again = ledger_post(
        organization=org, kind=Kind.TOPUP, amount_nanousd=5 * USD, reference="pi_123"
    )
    assert not created_again
    assert again.pk == first.pk
    assert balance(org) == 15 * USD
    assert LedgerEntry.objects.filter(reference="pi_123").count() == 1


def test_a_reference_reused_for_other_money_is_refused(org, charlie):
    ledger_post(organization=org, kind=Kind.TOPUP, amount_nanousd=5 * USD, reference="pi_9")
    with pytest.raises(BillingError):
        ledger_post(organization=org, kind=Kind.TOPUP, amount_nanousd=6 * USD, reference="pi_9")
    with pytest.raises(BillingError):
        ledger_post(
            organization=charlie.org, kind=Kind.TOPUP, amount_nanousd=5 * USD, reference="pi_9"
        )
    assert balance(org) == 15 * USD


@pytest.mark.parametrize(
    ("kind", "amount"),
    [
        (Kind.TOPUP, -1),
        (Kind.TOPUP, 0),
        (Kind.GRANT, -5),
        (Kind.USAGE, 1),
        (Kind.REFUND, 10),
        (Kind.TOPUP, 1.5),
        (Kind.TOPUP, True),
        ("bonus", 5),
    ],
)
def test_amounts_must_be_integers_of_the_right_sign(org, kind, amount):
    with pytest.raises(BillingError):
        ledger_post(organization=org, kind=kind, amount_nanousd=amount, reference="x")
    assert not LedgerEntry.objects.filter(reference="x").exists()


def test_the_database_refuses_a_wrong_sign_too(org):
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            organization=org, kind=Kind.USAGE, amount_nanousd=5, reference="sneaky"
        )


def test_the_database_refuses_a_duplicate_reference(org):
    ledger_post(organization=org, kind=Kind.TOPUP, amount_nanousd=USD, reference="dup")
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            organization=org, kind=Kind.TOPUP, amount_nanousd=USD, reference="dup"
        )


def test_billing_check_finds_a_balance_that_disagrees(org, charlie):
    assert selectors.billing_check() == []
    BillingAccount.objects.filter(organization=org).update(balance_nanousd=1)
    mismatches = selectors.billing_check()
    assert [(m.organization_id, m.cached_nanousd, m.ledger_nanousd) for m in mismatches] == [
        (org.id, 1, 10 * USD)
    ]
    with pytest.raises(CommandError):
        call_command("billing_check")


def test_billing_check_finds_entries_without_an_account(db):
    orphan = OrganizationFactory()
    LedgerEntry.objects.create(
        organization=orphan, kind=Kind.TOPUP, amount_nanousd=USD, reference="orphan"
    )
    [mismatch] = selectors.billing_check()
    assert (mismatch.organization_id, mismatch.cached_nanousd) == (orphan.id, None)


def test_billing_check_command_passes_on_agreeing_books(org, capsys):
    call_command("billing_check")
    assert "Every balance equals" in capsys.readouterr().out


def _record(org, reference: str, cost: int, key_id=None) -> UsageRecord:
    return UsageRecord(
        reference=reference,
        organization_id=str(org.id),
        key_id=str(key_id) if key_id else None,
        cost_nanousd=cost,
        occurred_at=utc(2026, 3, 1, 12),
    )


def test_batched_usage_is_written_once_however_often_it_is_replayed(org, charlie):
    key = uuid.uuid4()
    batch = [
        _record(org, "gen-a", 10 * CENT, key),
        _record(org, "gen-b", 5 * CENT, key),
        _record(org, "gen-b", 5 * CENT, key),  # the same generation twice in one batch
        _record(charlie.org, "gen-c", 1),
    ]
    assert usage_entries_write(records=batch) == []
    assert usage_entries_write(records=batch) == []
    assert usage_entries_write(records=list(reversed(batch))) == []
    assert LedgerEntry.objects.filter(kind=Kind.USAGE).count() == 3
    assert balance(org) == 10 * USD - 15 * CENT
    entry = LedgerEntry.objects.get(reference="gen-a")
    assert (entry.key_id, entry.occurred_at) == (key, utc(2026, 3, 1, 12))
    assert selectors.billing_check() == []


def test_usage_settle_now_is_idempotent(org):
    entry, created = usage_settle_now(
        reference="gen-now", organization_id=org.id, key_id=None, cost_nanousd=CENT
    )
    assert created and entry.amount_nanousd == -CENT
    _, created = usage_settle_now(
        reference="gen-now", organization_id=org.id, key_id=None, cost_nanousd=CENT
    )
    assert not created
    assert balance(org) == 10 * USD - CENT


def test_ledger_list_is_tenant_scoped(org, charlie):
    ledger_post(organization=charlie.org, kind=Kind.TOPUP, amount_nanousd=USD, reference="c-1")
    assert {e.organization_id for e in selectors.ledger_list(organization=org)} == {org.id}
