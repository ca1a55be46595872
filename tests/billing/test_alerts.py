"""Spend alerts at 50/80/100% of the organization's monthly limit and of a key's limit: an
email to owners and billing members, and a banner flag, each once per period."""

from __future__ import annotations

import pytest
from django.core import mail

from accounts import services as account_services
from accounts.models import Membership, Role
from billing import selectors
from billing.holds.store import UsageRecord
from billing.models import AlertSent, BillingAccount
from billing.services import (
    billing_account_for,
    billing_account_set_monthly_limit,
    spend_alerts_evaluate,
    usage_entries_write,
)
from tests.billing.conftest import CENT, USD, utc
from tests.factories import UserFactory

_n = iter(range(10**9))


@pytest.fixture
def acme(alice, bob):
    """Acme: alice owns it, carol does its billing, bob is a developer (gets no mail)."""
    carol = UserFactory(email="carol@example.com")
    Membership.objects.create(organization=alice.org, user=carol, role=Role.BILLING)
    billing_account_for(organization=alice.org)
    billing_account_set_monthly_limit(organization=alice.org, monthly_limit_nanousd=10 * USD)
    return alice.org


def spend(org, cost: int, at, key=None, *, capture) -> None:
    """Usage written the production way (a flushed batch), alerts evaluated on commit."""
    record = UsageRecord(
        reference=f"gen-alert-{next(_n)}",
        organization_id=str(org.id),
        key_id=str(key.id) if key else None,
        cost_nanousd=cost,
        occurred_at=at,
    )
    with capture(execute=True):
        assert usage_entries_write(records=[record]) == []


def test_org_alerts_go_out_once_per_threshold_and_period(acme, django_capture_on_commit_callbacks):
    march = utc(2026, 3, 10)
    spend(acme, 499 * CENT, march, capture=django_capture_on_commit_callbacks)
    assert mail.outbox == []
    spend(acme, CENT, march, capture=django_capture_on_commit_callbacks)  # exactly 50%
    [email] = mail.outbox
    assert sorted(email.to) == ["alice@example.com", "carol@example.com"]
    assert "50%" in email.subject and "monthly spend limit" in email.subject
    spend(acme, CENT, march, capture=django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1
    # From 50% to past 100% in one go: one email (the highest), every threshold recorded.
    spend(acme, 6 * USD, march, capture=django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 2
    assert "reached" in mail.outbox[1].subject
    assert sorted(
        AlertSent.objects.filter(organization=acme).values_list("threshold", flat=True)
    ) == [50, 80, 100]
    account = BillingAccount.objects.get(organization=acme)
    assert (account.alert_percent, account.alert_period_start) == (100, utc(2026, 3, 1))
    [banner] = selectors.alerts_active(organization=acme, at=march)
    assert (banner.scope, banner.threshold) == ("org", 100)
    # Evaluating again (a replayed task) sends nothing.
    spend_alerts_evaluate(organization_id=acme.id, at=march)
    assert len(mail.outbox) == 2
    # A new month: the banner is gone and the thresholds count again.
    april = utc(2026, 4, 2)
    assert selectors.alerts_active(organization=acme, at=april) == []
    spend(acme, 5 * USD, april, capture=django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 3
    account.refresh_from_db()
    assert (account.alert_percent, account.alert_period_start) == (50, utc(2026, 4, 1))


def test_key_alerts_follow_the_key_period(acme, alice, django_capture_on_commit_callbacks):
    key, _ = account_services.api_key_create(
        organization=acme,
        created_by=alice.user,
        name="batch jobs",
        spend_limit_nanousd=USD,
        spend_limit_period="daily",
    )
    day = utc(2026, 3, 10, 9)
    spend(acme, 80 * CENT, day, key, capture=django_capture_on_commit_callbacks)
    [email] = mail.outbox
    assert "80%" in email.subject and "batch jobs" in email.subject and "daily" in email.subject
    assert set(
        AlertSent.objects.filter(scope="key", subject=str(key.id)).values_list(
            "threshold", flat=True
        )
    ) == {50, 80}
    [banner] = selectors.alerts_active(organization=acme, at=day)
    assert (banner.scope, banner.subject, banner.threshold) == ("key", str(key.id), 80)
    # The next day is a new period for a daily key.
    next_day = utc(2026, 3, 11, 9)
    assert selectors.alerts_active(organization=acme, at=next_day) == []
    spend(acme, 50 * CENT, next_day, key, capture=django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 2


def test_no_limit_no_alert(acme, django_capture_on_commit_callbacks):
    billing_account_set_monthly_limit(organization=acme, monthly_limit_nanousd=None)
    spend(acme, 500 * USD, utc(2026, 3, 10), capture=django_capture_on_commit_callbacks)
    assert mail.outbox == []
    assert not AlertSent.objects.exists()
