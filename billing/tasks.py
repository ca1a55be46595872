"""Billing's background work. Each task takes ids, calls a service and is idempotent."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task

from billing.services import (
    holds_release_expired,
    spend_alert_send_email,
    spend_alerts_evaluate,
    usage_flush,
    usage_reconcile,
)


@shared_task(ignore_result=True)
def flush_usage() -> int:
    """Queued settled usage -> ledger entries, in batches (replays change nothing)."""
    return usage_flush()


@shared_task(ignore_result=True)
def reconcile_usage() -> int:
    """Served generations (request logs) the ledger lacks are billed, once. Returns how many."""
    return usage_reconcile(fix=True).billed


@shared_task(ignore_result=True)
def release_expired_holds() -> int:
    """Holds past their deadline (a process died mid-request) give their amount back."""
    return holds_release_expired()


@shared_task(ignore_result=True)
def evaluate_spend_alerts(organization_id: str, key_ids: list[str], at: str) -> None:
    spend_alerts_evaluate(
        organization_id=organization_id, key_ids=key_ids, at=datetime.fromisoformat(at)
    )


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5, ignore_result=True)
def send_spend_alert_email(alert_id: int) -> None:
    spend_alert_send_email(alert_id=alert_id)


@shared_task(ignore_result=True)
def auto_recharge(organization_id: str) -> None:
    """The balance fell below the auto-recharge threshold (safe to run twice: one recharge
    in flight per organization, and the balance is checked again)."""
    from billing.services import auto_recharge_run

    auto_recharge_run(organization_id=organization_id)


@shared_task(ignore_result=True)
def retry_auto_recharges() -> int:
    """Organizations still below their auto-recharge threshold (a recharge failed on a Stripe
    error, or its worker died) get another try; the services space the tries out."""
    from billing.services import auto_recharge_sweep

    return auto_recharge_sweep()


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5, ignore_result=True)
def send_auto_recharge_stopped_email(organization_id: str) -> None:
    from billing.services import auto_recharge_stopped_email

    auto_recharge_stopped_email(organization_id=organization_id)


@shared_task(ignore_result=True)
def report_meter_usage() -> int:
    """Postpaid usage to Stripe's meter; a failed batch is sent again next time."""
    from billing.services import meter_usage_report

    return meter_usage_report()
