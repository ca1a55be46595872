"""Spend alerts: at 50, 80 and 100% of an organization's monthly limit or of a key's limit, an
email to the owners and billing members and a dashboard banner, each once per period.

Evaluated from the ledger (never on the hot path) after each batch of usage is written; an
AlertSent row, unique per (scope, subject, period start, threshold), makes it once per period
however many times the evaluation runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization, Role
from accounts.selectors import api_key_list, membership_list
from billing.holds import usd
from billing.models import AlertSent, BillingAccount
from billing.periods import MONTHLY, period_start
from billing.selectors import usage_spent
from billing.services.ledger import _ensure_account


def _crossed(spent: int, limit: int) -> list[int]:
    if limit <= 0:
        return []
    return [t for t in settings.BILLING_ALERT_THRESHOLDS if spent * 100 >= limit * t]


def _record(
    *,
    organization_id: uuid.UUID,
    scope: str,
    subject: str,
    period: str,
    start: datetime,
    spent: int,
    limit: int,
) -> AlertSent | None:
    """Record each threshold crossed; return the highest one that is new (to send)."""
    newest = None
    for threshold in _crossed(spent, limit):
        alert, created = AlertSent.objects.get_or_create(
            scope=scope,
            subject=subject,
            period_start=start,
            threshold=threshold,
            defaults={
                "organization_id": organization_id,
                "period": period,
                "spent_nanousd": spent,
                "limit_nanousd": limit,
            },
        )
        if created:
            newest = alert
    return newest


@transaction.atomic
def spend_alerts_evaluate(
    *, organization_id: uuid.UUID | str, key_ids: Sequence[str] = (), at: datetime | None = None
) -> list[AlertSent]:
    """Check the organization's monthly limit and the given keys' limits at `at` (the latest
    usage written); returns the alerts to send (the highest new threshold per limit)."""
    at = at or timezone.now()
    account = _ensure_account(organization_id)
    organization_id = account.organization_id
    to_send: list[AlertSent] = []
    if account.monthly_limit_nanousd is not None:
        start = period_start(MONTHLY, at)
        spent = usage_spent(organization_id=organization_id, period=MONTHLY, at=at)
        alert = _record(
            organization_id=organization_id,
            scope=AlertSent.Scope.ORGANIZATION,
            subject=str(organization_id),
            period=MONTHLY,
            start=start,
            spent=spent,
            limit=account.monthly_limit_nanousd,
        )
        crossed = _crossed(spent, account.monthly_limit_nanousd)
        if crossed:
            top = crossed[-1]
            stale = account.alert_period_start is None or account.alert_period_start < start
            if stale or top > account.alert_percent:
                BillingAccount.objects.filter(pk=account.pk).update(
                    alert_percent=top, alert_period_start=start
                )
        if alert is not None:
            to_send.append(alert)
    if key_ids:
        organization = Organization(id=organization_id)
        keys = api_key_list(organization=organization).filter(
            id__in=list(key_ids), spend_limit_nanousd__isnull=False
        )
        for key in keys:
            period = key.spend_limit_period
            spent = usage_spent(
                organization_id=organization_id, key_id=key.id, period=period, at=at
            )
            alert = _record(
                organization_id=organization_id,
                scope=AlertSent.Scope.KEY,
                subject=str(key.id),
                period=period,
                start=period_start(period, at),
                spent=spent,
                limit=key.spend_limit_nanousd,
            )
            if alert is not None:
                to_send.append(alert)
    if to_send:
        ids = [alert.id for alert in to_send]

        def send() -> None:
            from billing.tasks import send_spend_alert_email
            from outbox.services import task_dispatch

            for alert_id in ids:
                task_dispatch(send_spend_alert_email, alert_id)

        transaction.on_commit(send)
    return to_send


def spend_alert_send_email(*, alert_id: int) -> int:
    """Email one alert to the organization's owners and billing members. Returns how many
    recipients it went to."""
    alert = AlertSent.objects.select_related("organization").filter(id=alert_id).first()
    if alert is None:
        return 0
    organization = alert.organization
    recipients = sorted(
        {
            m.user.email
            for m in membership_list(organization=organization).filter(
                role__in=[Role.OWNER, Role.BILLING], user__is_active=True
            )
        }
    )
    if not recipients:
        return 0
    if alert.scope == AlertSent.Scope.ORGANIZATION:
        what = f"{organization.name}'s monthly spend limit"
    else:
        key = api_key_list(organization=organization).filter(id=alert.subject).first()
        name = key.name if key else "a deleted key"
        what = f"the {alert.period} spend limit of the API key “{name}”"
    reached = "reached" if alert.threshold >= 100 else f"reached {alert.threshold}% of"
    subject = f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}You have {reached} {what}"
    body = (
        f"Spend so far this period: {usd(alert.spent_nanousd)} of {usd(alert.limit_nanousd)} "
        f"({alert.threshold}%).\n\n"
        + (
            "Requests that would go past the limit are refused until the period ends or the "
            "limit is raised.\n"
            if alert.threshold >= 100
            else "Requests keep working until the limit is reached.\n"
        )
        + "You can change limits on the billing page of your organization.\n"
    )
    send_mail(subject=subject, message=body, from_email=None, recipient_list=recipients)
    return len(recipients)


def auto_recharge_stopped_email(*, organization_id) -> int:
    """Tell the owners and billing members that auto-recharge turned itself off, and why."""
    from billing.models import BillingAccount

    account = BillingAccount.objects.select_related("organization").get(pk=organization_id)
    organization = account.organization
    recipients = sorted(
        {
            m.user.email
            for m in membership_list(organization=organization).filter(
                role__in=[Role.OWNER, Role.BILLING], user__is_active=True
            )
        }
    )
    if not recipients:
        return 0
    send_mail(
        subject=f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}Auto-recharge is off for "
        f"{organization.name}",
        message=f"{account.auto_recharge_stopped_reason}\n\nYour balance is "
        f"{usd(account.balance_nanousd)}. You can buy credits and turn auto-recharge back on "
        "from the billing page of your organization.\n",
        from_email=None,
        recipient_list=recipients,
    )
    return len(recipients)
