"""Billing pages (owners and the billing role) and Stripe's webhook."""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation

import stripe
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.access import org_view
from accounts.permissions import Perm
from accounts.selectors import api_key_list
from billing import selectors, services
from billing.exceptions import BillingError
from billing.models import NANO_PER_USD
from billing.periods import MONTHLY
from billing.stripe_client import billing_enabled

logger = logging.getLogger(__name__)


def usd(nano: int | None) -> str | None:
    if nano is None:
        return None
    return f"{Decimal(nano) / NANO_PER_USD:,.2f}"


def _percent(spent: int, limit: int | None) -> int | None:
    if not limit:
        return None
    return min(100, round(100 * spent / limit))


def _dollars_to_nano(raw: str, *, field: str) -> int | None:
    raw = (raw or "").strip().lstrip("$").replace(",", "")
    if not raw:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise BillingError(f"{field} must be an amount in dollars, like 25 or 12.50.") from None
    if value < 0 or value != value.quantize(Decimal("0.01")):
        raise BillingError(f"{field} must be a positive amount in whole cents.")
    return int(value * NANO_PER_USD)


@org_view(Perm.MANAGE_BILLING)
def billing_page(request: HttpRequest) -> HttpResponse:
    org = request.org
    now = timezone.now()
    account = services.billing_account_for(organization=org)
    burn = selectors.daily_spend(organization=org, days=7, now=now)
    month_spent = selectors.usage_spent(organization_id=org.id, period=MONTHLY, at=now)
    keys = [k for k in api_key_list(organization=org) if k.revoked_at is None]
    limited = [k for k in keys if k.spend_limit_nanousd is not None]
    spend = selectors.key_spend_by_period(
        organization_id=org.id, periods={k.spend_limit_period for k in limited}, at=now
    )
    key_rows = [
        {
            "key": k,
            "spent": usd(spend.get(k.spend_limit_period, {}).get(str(k.id), 0)),
            "limit": usd(k.spend_limit_nanousd),
            "percent": _percent(
                spend.get(k.spend_limit_period, {}).get(str(k.id), 0), k.spend_limit_nanousd
            ),
        }
        for k in limited
    ]
    invoices = []
    if billing_enabled():
        try:
            invoices = services.invoice_list(organization=org)
        except stripe.StripeError:
            logger.warning("could not list invoices", exc_info=True)
    week = sum(amount for _, amount in burn)
    # Free credit comes once per person: a prepaid organization that never had any says how
    # to add some.
    credits, _ = selectors.ledger_credits(organization_id=org.id) or (0, 0)
    return render(
        request,
        "billing/billing.html",
        {
            "active_nav": "billing",
            "enabled": billing_enabled(),
            "account": account,
            "balance": usd(account.balance_nanousd),
            "prepaid": account.plan.is_prepaid,
            "never_credited": account.plan.is_prepaid and credits == 0,
            "burn": [(day, usd(amount)) for day, amount in burn],
            "burn_per_day": usd(week // len(burn)),
            "month_spent": usd(month_spent),
            "month_limit": usd(account.monthly_limit_nanousd),
            "month_percent": _percent(month_spent, account.monthly_limit_nanousd),
            "key_rows": key_rows,
            "unlimited_keys": len(keys) - len(limited),
            "ledger": [
                {"entry": e, "amount": f"{Decimal(e.amount_nanousd) / NANO_PER_USD:+,.6f}"}
                for e in selectors.ledger_list(organization=org, limit=20)
            ],
            "invoices": invoices,
            "presets": [cents // 100 for cents in settings.BILLING_TOPUP_PRESETS_CENTS],
            "min_usd": settings.BILLING_TOPUP_MIN_CENTS // 100,
            "max_usd": settings.BILLING_TOPUP_MAX_CENTS // 100,
            "alerts": selectors.alerts_active(organization=org, at=now),
            "disputes": [
                {"dispute": d, "amount": f"{d.amount_cents / 100:,.2f}"}
                for d in selectors.disputes_open(organization=org)
            ],
            "can_grant": request.user.is_staff,
            "recharge_threshold": usd(account.auto_recharge_threshold_nanousd),
            "recharge_amount": f"{account.auto_recharge_amount_cents / 100:.2f}"
            if account.auto_recharge_amount_cents
            else "",
        },
    )


def _back(request: HttpRequest) -> HttpResponse:
    return redirect("org_billing", org_id=request.org.id)


@require_POST
@org_view(Perm.MANAGE_BILLING)
def buy_credits(request: HttpRequest) -> HttpResponse:
    raw = request.POST.get("custom") or request.POST.get("preset") or ""
    try:
        nano = _dollars_to_nano(raw, field="The amount")
        if nano is None:
            raise BillingError("Choose an amount of credits to buy.")
        page = request.build_absolute_uri(reverse("org_billing", args=[request.org.id]))
        _, url = services.topup_checkout_create(
            organization=request.org,
            amount_cents=nano // (NANO_PER_USD // 100),
            created_by_id=request.user.pk,
            success_url=f"{page}?topup=success",
            cancel_url=f"{page}?topup=cancelled",
        )
    except BillingError as error:
        messages.error(request, str(error))
        return _back(request)
    except stripe.StripeError:
        logger.warning("checkout session not created", exc_info=True)
        messages.error(request, "Stripe could not start the payment; please try again.")
        return _back(request)
    return redirect(url)


@require_POST
@org_view(Perm.MANAGE_BILLING)
def portal(request: HttpRequest) -> HttpResponse:
    try:
        url = services.billing_portal_url(
            organization=request.org,
            return_url=request.build_absolute_uri(reverse("org_billing", args=[request.org.id])),
        )
    except (BillingError, stripe.StripeError) as error:
        logger.warning("portal session not created: %s", error)
        messages.error(request, "The billing portal is not available right now.")
        return _back(request)
    return redirect(url)


@require_POST
@org_view(Perm.MANAGE_BILLING)
def monthly_limit(request: HttpRequest) -> HttpResponse:
    try:
        nano = _dollars_to_nano(request.POST.get("monthly_limit", ""), field="The limit")
        services.spend_limit_update(
            organization=request.org, monthly_limit_nanousd=nano, actor=request.user
        )
    except BillingError as error:
        messages.error(request, str(error))
    else:
        messages.success(
            request,
            f"Monthly limit set to ${usd(nano)}." if nano is not None else "Monthly limit removed.",
        )
    return _back(request)


@require_POST
@org_view(Perm.MANAGE_BILLING)
def auto_recharge(request: HttpRequest) -> HttpResponse:
    try:
        enabled = request.POST.get("enabled") == "on"
        threshold = _dollars_to_nano(request.POST.get("threshold", ""), field="The threshold")
        amount = _dollars_to_nano(request.POST.get("amount", ""), field="The amount")
        services.auto_recharge_configure(
            organization=request.org,
            enabled=enabled,
            threshold_nanousd=threshold or 0,
            amount_cents=(amount or 0) // (NANO_PER_USD // 100),
            actor=request.user,
        )
    except BillingError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Auto-recharge is on." if enabled else "Auto-recharge is off.")
    return _back(request)


@require_POST
@org_view(Perm.MANAGE_BILLING)
def grant(request: HttpRequest) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied("Only staff can grant credits.")
    try:
        nano = _dollars_to_nano(request.POST.get("amount", ""), field="The amount")
        if not nano:
            raise BillingError("Grant a positive amount.")
        services.credit_grant(
            organization=request.org,
            amount_nanousd=nano,
            reason=request.POST.get("reason", ""),
            granted_by=request.user,
        )
    except BillingError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Granted ${usd(nano)} of credits.")
    return _back(request)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Stripe's events. The signature is checked on the raw body; anything else is 400."""
    try:
        event_id, fresh = services.stripe_webhook_handle(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except (ValueError, stripe.SignatureVerificationError) as error:
        logger.warning("refused a Stripe webhook: %s", error)
        return HttpResponse("invalid payload or signature", status=400, content_type="text/plain")
    except stripe.StripeError as error:
        # Reading the event's objects from Stripe failed; nothing was stored: Stripe retries.
        logger.warning("Stripe webhook not handled yet: %s", error)
        return HttpResponse("retry later", status=503, content_type="text/plain")
    return HttpResponse("ok" if fresh else "duplicate", content_type="text/plain")
