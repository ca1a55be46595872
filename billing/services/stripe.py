"""Stripe: Checkout top-ups, the webhook that credits them, the Customer Portal, invoices.

Our idempotency keys come from our own row ids, so a retried call never creates a second
Checkout Session or Customer. Credits come only from verified webhook events, and the ledger
reference is the PaymentIntent id: a payment is credited once whichever events describe it,
in any order, any number of times.
"""

from __future__ import annotations

import logging
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Organization
from billing.exceptions import BillingError
from billing.models import NANO_PER_USD, BillingAccount, LedgerEntry, Recharge, StripeEvent, TopUp
from billing.services.ledger import _account_for_update, billing_account_for, ledger_post
from billing.stripe_client import STRIPE_API_VERSION, stripe_client

logger = logging.getLogger(__name__)
NANO_PER_CENT = NANO_PER_USD // 100


def _client() -> stripe.StripeClient:
    client = stripe_client()
    if client is None:
        raise BillingError("Billing is off: no Stripe key is configured.", code="billing_off")
    return client


def stripe_customer_ensure(*, organization: Organization) -> str:
    """The organization's Stripe Customer, created once (keyed by the organization's id)."""
    account = billing_account_for(organization=organization)
    if account.stripe_customer_id:
        return account.stripe_customer_id
    customer = _client().v1.customers.create(
        params={
            "name": organization.name,
            "metadata": {"organization_id": str(organization.id)},
        },
        options={"idempotency_key": f"customer-{organization.id}"},
    )
    with transaction.atomic():
        account = _account_for_update(organization.id)
        if not account.stripe_customer_id:
            account.stripe_customer_id = customer.id
            account.save(update_fields=["stripe_customer_id"])
    return account.stripe_customer_id


def topup_checkout_create(
    *,
    organization: Organization,
    amount_cents: int,
    created_by_id: Any,
    success_url: str,
    cancel_url: str,
) -> tuple[TopUp, str]:
    """A Checkout Session to buy credits: (our top-up row, the URL to send the buyer to).
    The card is saved for off-session use (auto-recharge)."""
    if (
        isinstance(amount_cents, bool)
        or not isinstance(amount_cents, int)
        or not settings.BILLING_TOPUP_MIN_CENTS <= amount_cents <= settings.BILLING_TOPUP_MAX_CENTS
    ):
        raise BillingError(
            f"Buy between ${settings.BILLING_TOPUP_MIN_CENTS // 100:,} and "
            f"${settings.BILLING_TOPUP_MAX_CENTS // 100:,} of credits.",
            code="amount",
        )
    customer = stripe_customer_ensure(organization=organization)
    topup = TopUp.objects.create(
        organization=organization, amount_cents=amount_cents, created_by_id=created_by_id
    )
    metadata = {"organization_id": str(organization.id), "topup_id": str(topup.id)}
    session = _client().v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "customer": customer,
            "client_reference_id": str(topup.id),
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": amount_cents,
                        "product_data": {"name": f"LLM API credits (${amount_cents / 100:,.2f})"},
                    },
                }
            ],
            "payment_intent_data": {"setup_future_usage": "off_session", "metadata": metadata},
            "metadata": metadata,
            "success_url": success_url,
            "cancel_url": cancel_url,
        },
        options={"idempotency_key": f"topup-{topup.id}-checkout"},
    )
    TopUp.objects.filter(pk=topup.pk).update(checkout_session_id=session.id)
    topup.checkout_session_id = session.id
    return topup, session.url


def _credit(*, organization_id: str, payment_intent: str, amount_cents: int, topup_id: Any) -> None:
    organization = Organization.objects.filter(id=organization_id).first()
    if organization is None:
        raise BillingError(f"Unknown organization {organization_id}", code="unknown_org")
    ledger_post(
        organization=organization,
        kind=LedgerEntry.Kind.TOPUP,
        amount_nanousd=amount_cents * NANO_PER_CENT,
        reference=f"stripe:{payment_intent}",
        description="Credits bought with Stripe",
        metadata={"payment_intent": payment_intent, "topup_id": topup_id},
    )
    if topup_id:
        TopUp.objects.filter(pk=topup_id, organization_id=organization_id).update(
            status=TopUp.Status.PAID, payment_intent_id=payment_intent, paid_at=timezone.now()
        )


def _handle(event: stripe.Event) -> str | None:
    """The event's effect; returns the organization it concerned, if any."""
    obj = event.data.object.to_dict()  # StripeObject is not a dict in stripe 16
    kind = event.type
    if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        if obj.get("mode") != "payment" or obj.get("payment_status") != "paid":
            return None  # an async payment not settled yet: its success event follows
        metadata = obj.get("metadata") or {}
        organization_id = metadata.get("organization_id")
        payment_intent = obj.get("payment_intent")
        if not organization_id or not payment_intent:
            return None
        _credit(
            organization_id=organization_id,
            payment_intent=payment_intent,
            amount_cents=int(obj["amount_total"]),
            topup_id=metadata.get("topup_id"),
        )
        return organization_id
    if kind == "payment_intent.succeeded":
        metadata = obj.get("metadata") or {}
        organization_id = metadata.get("organization_id")
        if not organization_id:
            return None  # not one of ours
        method = obj.get("payment_method")
        if isinstance(method, str) and method:
            # The card saved for off-session use (Checkout asked for setup_future_usage).
            BillingAccount.objects.filter(pk=organization_id).update(
                stripe_payment_method_id=method
            )
        _credit(
            organization_id=organization_id,
            payment_intent=obj["id"],
            amount_cents=int(obj["amount_received"]),
            topup_id=metadata.get("topup_id"),
        )
        return organization_id
    return None


def stripe_webhook_handle(*, payload: bytes, signature: str) -> tuple[str, bool]:
    """Verify the signature on the raw body, then store the event and apply its effect in one
    transaction. Returns (event id, handled now); False means a redelivery, changed nothing.
    Raises ValueError or stripe.SignatureVerificationError for a body we must refuse."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise ValueError("no webhook secret is configured")
    event = stripe.Webhook.construct_event(payload, signature, secret)
    try:
        with transaction.atomic():
            record = StripeEvent.objects.create(id=event.id, type=event.type)
            organization_id = _handle(event)
            if organization_id:
                record.organization_id = organization_id
                record.save(update_fields=["organization_id"])
    except IntegrityError:
        if StripeEvent.objects.filter(id=event.id).exists():
            return event.id, False  # delivered before (or concurrently): already applied
        raise
    return event.id, True


def billing_portal_url(*, organization: Organization, return_url: str) -> str:
    session = _client().v1.billing_portal.sessions.create(
        params={
            "customer": stripe_customer_ensure(organization=organization),
            "return_url": return_url,
        }
    )
    return session.url


def invoice_list(*, organization: Organization, limit: int = 12) -> list[dict[str, Any]]:
    """The organization's recent invoices, newest first; empty before it has a customer."""
    account = BillingAccount.objects.filter(organization=organization).first()
    if account is None or not account.stripe_customer_id or stripe_client() is None:
        return []
    page = _client().v1.invoices.list(
        params={"customer": account.stripe_customer_id, "limit": limit}
    )
    invoices = [invoice.to_dict() for invoice in page.data]
    return [
        {
            "id": invoice["id"],
            "number": invoice.get("number"),
            "status": invoice.get("status"),
            "amount_due_cents": invoice.get("amount_due"),
            "created": invoice.get("created"),
            "url": invoice.get("hosted_invoice_url"),
        }
        for invoice in invoices
    ]


# --- Auto-recharge ------------------------------------------------------------------------


@transaction.atomic
def auto_recharge_configure(
    *,
    organization: Organization,
    enabled: bool,
    threshold_nanousd: int,
    amount_cents: int,
    actor,
) -> BillingAccount:
    from accounts.models import AuditLog
    from accounts.services.audit import audit_log_record

    if enabled and not (
        settings.BILLING_TOPUP_MIN_CENTS <= amount_cents <= settings.BILLING_TOPUP_MAX_CENTS
    ):
        raise BillingError(
            f"Recharge between ${settings.BILLING_TOPUP_MIN_CENTS // 100:,} and "
            f"${settings.BILLING_TOPUP_MAX_CENTS // 100:,}.",
            code="amount",
        )
    if threshold_nanousd < 0:
        raise BillingError("The threshold can't be negative.", code="threshold")
    account = _account_for_update(organization.id)
    if enabled and not account.stripe_payment_method_id:
        raise BillingError(
            "Buy credits once with a card first: auto-recharge charges that card.", code="card"
        )
    account.auto_recharge_enabled = enabled
    account.auto_recharge_threshold_nanousd = threshold_nanousd
    account.auto_recharge_amount_cents = amount_cents
    if enabled:
        account.auto_recharge_stopped_reason = ""
    account.save()
    audit_log_record(
        organization=organization,
        actor=actor,
        action=AuditLog.Action.AUTO_RECHARGE_CHANGED,
        data={
            "enabled": enabled,
            "threshold_nanousd": threshold_nanousd,
            "amount_cents": amount_cents,
        },
    )
    return account


def _stop_auto_recharge(organization_id, recharge: Recharge, reason: str) -> None:
    from accounts.models import AuditLog
    from accounts.services.audit import audit_log_record

    with transaction.atomic():
        account = _account_for_update(organization_id)
        account.auto_recharge_enabled = False
        account.auto_recharge_stopped_reason = reason
        account.save(update_fields=["auto_recharge_enabled", "auto_recharge_stopped_reason"])
        audit_log_record(
            organization=account.organization,
            actor=None,
            action=AuditLog.Action.AUTO_RECHARGE_CHANGED,
            data={"enabled": False, "reason": reason, "recharge_id": recharge.id},
        )

        def tell_owners() -> None:
            from billing.tasks import send_auto_recharge_stopped_email

            send_auto_recharge_stopped_email.delay(str(organization_id))

        transaction.on_commit(tell_owners)


def auto_recharge_run(*, organization_id) -> Recharge | None:
    """Charge the saved card off-session if auto-recharge is on and the balance is below its
    threshold. One recharge in flight per organization (a unique constraint); the
    idempotency key is our recharge's id."""
    account = BillingAccount.objects.select_related("organization").get(pk=organization_id)
    if (
        not account.auto_recharge_enabled
        or account.balance_nanousd >= account.auto_recharge_threshold_nanousd
        or stripe_client() is None
    ):
        return None
    try:
        with transaction.atomic():
            recharge = Recharge.objects.create(
                organization_id=organization_id, amount_cents=account.auto_recharge_amount_cents
            )
    except IntegrityError:
        return None  # one is already in flight
    metadata = {"organization_id": str(organization_id), "recharge_id": str(recharge.id)}
    try:
        intent = _client().v1.payment_intents.create(
            params={
                "amount": recharge.amount_cents,
                "currency": "usd",
                "customer": account.stripe_customer_id,
                "payment_method": account.stripe_payment_method_id,
                "off_session": True,
                "confirm": True,
                "metadata": metadata,
            },
            options={"idempotency_key": f"recharge-{recharge.id}"},
        )
    except stripe.CardError as error:
        intent_id = getattr(getattr(error, "error", None), "payment_intent", None)
        recharge.payment_intent_id = getattr(intent_id, "id", "") or ""
        if error.code == "authentication_required":
            recharge.status = Recharge.Status.ACTION_REQUIRED
            recharge.error = "The bank asked for authentication."
            recharge.save()
            _stop_auto_recharge(
                organization_id,
                recharge,
                "Your bank asked to authenticate an automatic payment, so auto-recharge is "
                "off. Buy credits once to confirm your card, then turn it back on.",
            )
        else:
            recharge.status = Recharge.Status.FAILED
            recharge.error = (error.user_message or str(error))[:300]
            recharge.save()
            _stop_auto_recharge(
                organization_id, recharge, f"The card was declined: {recharge.error}"
            )
        return recharge
    recharge.payment_intent_id = intent.id
    if intent.status == "succeeded":
        _credit(
            organization_id=str(organization_id),
            payment_intent=intent.id,
            amount_cents=recharge.amount_cents,
            topup_id=None,
        )
        recharge.status = Recharge.Status.SUCCEEDED
    elif intent.status == "requires_action":
        recharge.status = Recharge.Status.ACTION_REQUIRED
        recharge.save()
        _stop_auto_recharge(
            organization_id,
            recharge,
            "Your bank asked to authenticate an automatic payment, so auto-recharge is off.",
        )
        return recharge
    recharge.save()
    return recharge


# --- Postpaid: usage to Stripe Billing Meters -----------------------------------------------


def meter_usage_report(*, max_batches: int = 50) -> int:
    """Send postpaid organizations' unreported usage entries to the meter through Stripe's
    meter event stream, in batches. Each event's identifier is our ledger entry id, so a batch
    resent after a failure counts once at Stripe; entries are marked only after success.
    Returns how many entries were reported."""
    from django.db.models import Exists, OuterRef

    from billing.models import MeterReported, Plan

    client = stripe_client()
    if client is None:
        return 0
    pending = (
        LedgerEntry.objects.filter(
            kind=LedgerEntry.Kind.USAGE,
            amount_nanousd__lt=0,
            organization__billing_account__plan__kind=Plan.Kind.POSTPAID,
        )
        .exclude(organization__billing_account__stripe_customer_id="")
        .exclude(Exists(MeterReported.objects.filter(entry_id=OuterRef("pk"))))
        .order_by("id")
        .values(
            "id",
            "amount_nanousd",
            "occurred_at",
            "organization__billing_account__stripe_customer_id",
        )
    )
    reported = 0
    stream = None
    for _ in range(max_batches):
        batch = list(pending[: settings.BILLING_METER_BATCH])
        if not batch:
            break
        if stream is None:
            session = client.v2.billing.meter_event_session.create()
            # The stream takes the session's short-lived token, not our secret key.
            stream = stripe.StripeClient(
                session.authentication_token,
                stripe_version=STRIPE_API_VERSION,
                http_client=stripe.HTTPXClient(allow_sync_methods=True),
                max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
            )
        stream.v2.billing.meter_event_stream.create(
            params={
                "events": [
                    {
                        "event_name": settings.STRIPE_METER_EVENT_NAME,
                        "identifier": f"usage-{row['id']}",
                        "timestamp": row["occurred_at"].isoformat(),
                        "payload": {
                            "stripe_customer_id": row[
                                "organization__billing_account__stripe_customer_id"
                            ],
                            "value": str(-row["amount_nanousd"]),
                        },
                    }
                    for row in batch
                ]
            }
        )
        MeterReported.objects.bulk_create(
            [MeterReported(entry_id=row["id"]) for row in batch], ignore_conflicts=True
        )
        reported += len(batch)
    return reported
