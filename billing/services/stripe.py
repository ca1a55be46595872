"""Stripe: Checkout top-ups, the webhook that credits them, the Customer Portal, invoices.

Our idempotency keys come from our own row ids, so a retried call never creates a second
Checkout Session or Customer. Credits come only from verified webhook events, and the ledger
reference is the PaymentIntent id: a payment is credited once whichever events describe it,
in any order, any number of times.

Bad news is booked the same way: each refund is debited under its own id
(`stripe-refund:<re_...>`), each dispute under its own (`stripe-dispute:<dp_...>`, and
`stripe-dispute-won:<dp_...>` when the money comes back). Refund events carry no reliable
list of refunds (and arrive in any order), so every one of them reads the charge's refunds
from Stripe as they are now; a dispute keeps the status of its newest event. While a dispute
is open the organization can't spend.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from accounts.models import Organization
from billing.exceptions import BillingError
from billing.models import (
    NANO_PER_USD,
    BillingAccount,
    LedgerEntry,
    Recharge,
    StripeDispute,
    StripeEvent,
    TopUp,
)
from billing.services.ledger import (
    _account_for_update,
    _refresh_snapshot_on_commit,
    billing_account_for,
    ledger_post,
)
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


# --- Refunds and disputes ----------------------------------------------------------------

REFUND_EVENTS = (
    "charge.refunded",
    "charge.refund.updated",
    "refund.created",
    "refund.updated",
    "refund.failed",
)
DISPUTE_EVENTS = (
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
    "charge.dispute.closed",
)
# A refund in these states takes (or will take) the money back to the card.
REFUND_TAKEN = ("pending", "requires_action", "succeeded")


def _id(value: Any) -> str:
    """An expandable field's id, whether Stripe sent the id or the object."""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def _organization_paid_by(payment_intent: str, metadata: dict | None) -> str | None:
    """The organization a payment of ours credited: its ledger entry says so (whatever the
    metadata of the refund or dispute), else the top-up or recharge that started it, else
    the metadata we put on the payment. None when the payment isn't ours."""
    if payment_intent:
        for found in (
            LedgerEntry.objects.filter(reference=f"stripe:{payment_intent}"),
            TopUp.objects.filter(payment_intent_id=payment_intent),
            Recharge.objects.filter(payment_intent_id=payment_intent),
        ):
            organization_id = found.values_list("organization_id", flat=True).first()
            if organization_id:
                return str(organization_id)
    organization_id = (metadata or {}).get("organization_id")
    if organization_id and Organization.objects.filter(id=organization_id).exists():
        return str(organization_id)
    return None


def _charge_refunds(charge_id: str) -> list[dict[str, Any]]:
    """Every refund of the charge as Stripe has it now (the source of truth: refund events
    come in any order, and charge.refunded lists none)."""
    page = _client().v1.refunds.list(params={"charge": charge_id, "limit": 100})
    return [refund.to_dict() for refund in page.auto_paging_iter()]


def _prefetch(event: stripe.Event) -> dict[str, Any]:
    """What the event's effect needs from Stripe's API, read before the transaction (no
    network call while rows are locked). Raises stripe.StripeError: Stripe retries."""
    if event.type not in REFUND_EVENTS:
        return {}
    obj = event.data.object.to_dict()
    charge_id = obj["id"] if obj.get("object") == "charge" else _id(obj.get("charge"))
    paid_by = _organization_paid_by(_id(obj.get("payment_intent")), obj.get("metadata"))
    if not charge_id or paid_by is None:
        return {}  # not a payment of ours: nothing to ask Stripe
    return {"charge_id": charge_id, "refunds": _charge_refunds(charge_id)}


def _refunds_post(obj: dict[str, Any], fetched: dict[str, Any]) -> str | None:
    """Debit each refund of the charge once, under its own id; give back one that failed
    after it was debited."""
    payment_intent = _id(obj.get("payment_intent"))
    organization_id = _organization_paid_by(payment_intent, obj.get("metadata"))
    if organization_id is None:
        return None  # not a payment of ours
    organization = Organization(id=organization_id)
    for refund in fetched.get("refunds", []):
        if (refund.get("currency") or "usd") != "usd" or not refund.get("amount"):
            continue
        nano = int(refund["amount"]) * NANO_PER_CENT
        reference = f"stripe-refund:{refund['id']}"
        metadata = {
            "refund": refund["id"],
            "charge": fetched.get("charge_id"),
            "payment_intent": payment_intent,
        }
        if refund.get("status") in REFUND_TAKEN:
            ledger_post(
                organization=organization,
                kind=LedgerEntry.Kind.REFUND,
                amount_nanousd=-nano,
                reference=reference,
                description="Payment refunded with Stripe",
                metadata=metadata,
            )
        elif LedgerEntry.objects.filter(reference=reference).exists():
            ledger_post(
                organization=organization,
                kind=LedgerEntry.Kind.ADJUSTMENT,
                amount_nanousd=nano,
                reference=f"stripe-refund-reversed:{refund['id']}",
                description=f"Refund {refund.get('status') or 'failed'}: amount restored",
                metadata=metadata,
            )
    return organization_id


def _dispute_apply(obj: dict[str, Any], at: datetime) -> str | None:
    """Record the dispute's status (unless an event newer than this one already did), take
    its amount, give it back when the dispute ends in our favour, and suspend or resume
    spending."""
    from accounts.models import AuditLog
    from accounts.services.audit import audit_log_record

    payment_intent = _id(obj.get("payment_intent"))
    organization_id = _organization_paid_by(payment_intent, obj.get("metadata"))
    if organization_id is None or (obj.get("currency") or "usd") != "usd":
        return None
    account = _account_for_update(organization_id)  # serializes this organization's disputes
    dispute = StripeDispute.objects.filter(pk=obj["id"]).first()
    first_seen, was_open = dispute is None, dispute is not None and dispute.is_open
    status = str(obj.get("status") or "needs_response")
    if dispute is None:
        dispute = StripeDispute.objects.create(
            id=obj["id"],
            organization_id=organization_id,
            charge_id=_id(obj.get("charge")),
            payment_intent_id=payment_intent,
            amount_cents=int(obj["amount"]),
            status=status,
            reason=str(obj.get("reason") or "")[:64],
            status_at=at,
        )
    elif at > dispute.status_at or (
        at == dispute.status_at and status not in StripeDispute.OPEN_STATUSES
    ):
        # Same second: an end wins over an open status (a late duplicate can't reopen it).
        dispute.status, dispute.status_at, dispute.updated_at = status, at, timezone.now()
        dispute.save(update_fields=["status", "status_at", "updated_at"])
    organization = account.organization
    nano = dispute.amount_cents * NANO_PER_CENT
    metadata = {"dispute": dispute.id, "payment_intent": payment_intent, "reason": dispute.reason}
    ledger_post(
        organization=organization,
        kind=LedgerEntry.Kind.REFUND,
        amount_nanousd=-nano,
        reference=f"stripe-dispute:{dispute.id}",
        description="Payment disputed by the cardholder",
        metadata=metadata,
    )
    if dispute.status in StripeDispute.RETURNED_STATUSES:
        ledger_post(
            organization=organization,
            kind=LedgerEntry.Kind.ADJUSTMENT,
            amount_nanousd=nano,
            reference=f"stripe-dispute-won:{dispute.id}",
            description="Dispute closed in your favour: amount restored",
            metadata=metadata,
        )
    if first_seen or was_open != dispute.is_open:
        audit_log_record(
            organization=organization,
            actor=None,
            action=AuditLog.Action.PAYMENT_DISPUTE,
            target=dispute.id,
            data={"status": dispute.status, "amount_cents": dispute.amount_cents},
        )
    # Every process's hot path reads the suspension from the snapshot: overwrite it now.
    _refresh_snapshot_on_commit(organization_id)
    return organization_id


def _handle(event: stripe.Event, fetched: dict[str, Any] | None = None) -> str | None:
    """The event's effect; returns the organization it concerned, if any."""
    obj = event.data.object.to_dict()  # StripeObject is not a dict in stripe 16
    kind = event.type
    if kind in REFUND_EVENTS:
        return _refunds_post(obj, fetched or {})
    if kind in DISPUTE_EVENTS:
        return _dispute_apply(obj, datetime.fromtimestamp(int(event.created), tz=UTC))
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
        recharge_id = str(metadata.get("recharge_id") or "")
        if recharge_id.isdigit():
            # Its worker may have died before hearing Stripe's answer: this is the answer.
            Recharge.objects.filter(pk=recharge_id, organization_id=organization_id).exclude(
                status=Recharge.Status.SUCCEEDED
            ).update(status=Recharge.Status.SUCCEEDED, payment_intent_id=obj["id"], error="")
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
    if StripeEvent.objects.filter(id=event.id).exists():
        return event.id, False
    fetched = _prefetch(event)
    try:
        with transaction.atomic():
            record = StripeEvent.objects.create(id=event.id, type=event.type)
            organization_id = _handle(event, fetched)
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
            from outbox.services import task_dispatch

            task_dispatch(send_auto_recharge_stopped_email, str(organization_id))

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
    recharge = _recharge_start(organization_id, account.auto_recharge_amount_cents)
    if recharge is None:
        return None
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
        return _recharge_declined(organization_id, recharge, error)
    except stripe.StripeError as error:
        # Stripe down, a timeout, a bad request: this recharge failed, and the next one that
        # the balance asks for (after BILLING_RECHARGE_RETRY_SECONDS) may start. If the charge
        # went through after all, its payment_intent.succeeded webhook credits it.
        logger.warning("auto-recharge %s failed: %s", recharge.id, error)
        recharge.status = Recharge.Status.FAILED
        recharge.error = f"Stripe error: {error.user_message or error}"[:300]
        recharge.save(update_fields=["status", "error"])
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


def auto_recharge_sweep() -> int:
    """The periodic job: organizations still below their threshold get another try. Usage
    triggers a recharge, but an organization out of credit has no usage left to trigger one
    after a failure (or after its worker died). Returns how many recharges were sent."""
    accounts = BillingAccount.objects.filter(
        auto_recharge_enabled=True,
        balance_nanousd__lt=models.F("auto_recharge_threshold_nanousd"),
    ).values_list("organization_id", flat=True)
    sent = 0
    for organization_id in accounts:
        try:
            sent += auto_recharge_run(organization_id=organization_id) is not None
        except Exception:  # one organization's trouble doesn't stop the others'
            logger.exception("auto-recharge of %s failed", organization_id)
    return sent


def _recharge_start(organization_id, amount_cents: int) -> Recharge | None:
    """The recharge to send to Stripe now, or None. One is in flight per organization (a
    unique constraint); one left pending by a worker that died mid-call is taken over once
    BILLING_RECHARGE_PENDING_SECONDS have passed, and sent again under its own idempotency
    key (Stripe replays the first answer if the call got through, else makes it). After a
    failure, the next one waits BILLING_RECHARGE_RETRY_SECONDS (Stripe may be down)."""
    now = timezone.now()
    pending = Recharge.objects.filter(
        organization_id=organization_id, status=Recharge.Status.PENDING
    ).first()
    if pending is not None:
        lost_before = now - timedelta(seconds=settings.BILLING_RECHARGE_PENDING_SECONDS)
        if pending.attempted_at > lost_before:
            return None  # in flight
        taken = Recharge.objects.filter(
            pk=pending.pk, status=Recharge.Status.PENDING, attempted_at=pending.attempted_at
        ).update(attempted_at=now)
        if not taken:
            return None  # another worker took it over first
        pending.attempted_at = now
        return pending
    if Recharge.objects.filter(
        organization_id=organization_id,
        status=Recharge.Status.FAILED,
        created_at__gt=now - timedelta(seconds=settings.BILLING_RECHARGE_RETRY_SECONDS),
    ).exists():
        return None
    try:
        with transaction.atomic():
            return Recharge.objects.create(
                organization_id=organization_id, amount_cents=amount_cents
            )
    except IntegrityError:
        return None  # one is already in flight


def _recharge_declined(organization_id, recharge: Recharge, error: stripe.CardError) -> Recharge:
    """The card said no: the recharge failed and auto-recharge turns itself off (it would
    only be declined again) until the owner buys credits on-session."""
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
        _stop_auto_recharge(organization_id, recharge, f"The card was declined: {recharge.error}")
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
