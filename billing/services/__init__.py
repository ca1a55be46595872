"""Every write to billing goes through here, and the hot path's holds (billing.holds)."""

from __future__ import annotations

from billing.exceptions import BillingError
from billing.holds import (
    HoldResult,
    HoldUnavailable,
    get_hold_store,
    hold_place,
    hold_release,
    hold_settle,
    holds_release_expired,
    usage_flush,
    usage_outbox_flush,
)
from billing.services.alerts import (
    auto_recharge_stopped_email,
    spend_alert_send_email,
    spend_alerts_evaluate,
)
from billing.services.ledger import (
    FREE_GRANT_REFERENCE,
    billing_account_for,
    billing_account_set_monthly_limit,
    billing_account_set_plan,
    billing_account_set_rate_limits,
    credit_grant,
    free_credit_grant,
    ledger_post,
    spend_limit_update,
    usage_entries_write,
    usage_outbox_drain,
    usage_outbox_write,
    usage_settle_now,
)
from billing.services.reconcile import UsageReconciliation, usage_reconcile
from billing.services.stripe import (
    auto_recharge_configure,
    auto_recharge_run,
    auto_recharge_sweep,
    billing_portal_url,
    invoice_list,
    meter_usage_report,
    stripe_customer_ensure,
    stripe_webhook_handle,
    topup_checkout_create,
)

__all__ = [
    "auto_recharge_configure",
    "auto_recharge_run",
    "auto_recharge_sweep",
    "auto_recharge_stopped_email",
    "billing_portal_url",
    "credit_grant",
    "free_credit_grant",
    "invoice_list",
    "meter_usage_report",
    "spend_limit_update",
    "stripe_customer_ensure",
    "stripe_webhook_handle",
    "topup_checkout_create",
    "FREE_GRANT_REFERENCE",
    "BillingError",
    "HoldResult",
    "HoldUnavailable",
    "billing_account_for",
    "billing_account_set_monthly_limit",
    "billing_account_set_plan",
    "billing_account_set_rate_limits",
    "get_hold_store",
    "hold_place",
    "hold_release",
    "hold_settle",
    "holds_release_expired",
    "ledger_post",
    "spend_alert_send_email",
    "spend_alerts_evaluate",
    "usage_entries_write",
    "usage_flush",
    "usage_outbox_drain",
    "usage_outbox_flush",
    "usage_outbox_write",
    "usage_reconcile",
    "usage_settle_now",
    "UsageReconciliation",
]
