"""Money: plans, one billing account per organization, the append-only ledger, spend alerts.

Every amount is an integer number of nano-USD (1 USD = 1_000_000_000) in a BigIntegerField:
never a float. The ledger is the book of record; `BillingAccount.balance_nanousd` is a cache of
the sum of its organization's entries, updated in the same transaction as each insert.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization

NANO_PER_USD = 1_000_000_000


class Plan(models.Model):
    """How an organization pays, as data: the hot path reads only `kind`, limits come from the
    billing account (seeded from the plan's defaults when the account is created)."""

    class Kind(models.TextChoices):
        PREPAID = "prepaid", "Prepaid credits"
        POSTPAID = "postpaid", "Postpaid, metered"

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Free starting credit: granted once per person (a verified address), to their first
    # organization (billing.services.free_credit_grant); further organizations start at $0.
    free_grant_nanousd = models.BigIntegerField(default=0)
    # Copied into a new account's monthly limit; None means no organization limit.
    default_monthly_limit_nanousd = models.BigIntegerField(null=True, blank=True)
    # How many of an organization's requests may be in flight at once (None: no cap). Holds
    # bound what each request may spend; this bounds how many estimates can be off at once.
    max_in_flight = models.PositiveIntegerField(null=True, blank=True, default=64)
    # The earliest a request may start a second, hedged attempt (every attempt that reaches a
    # provider is billed, so a hedge at 0 ms doubles the prompt's cost).
    min_hedge_after_ms = models.PositiveIntegerField(default=250)
    # The platform's rate limits for each organization on the plan, whatever its keys say, so
    # one runaway client can't starve the others. Staff raise them per organization on its
    # billing account; an organization may set lower ones of its own.
    rpm_limit = models.PositiveIntegerField("requests per minute", default=1_000)
    tpm_limit = models.PositiveIntegerField("tokens per minute", default=20_000_000)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["prepaid", "postpaid"]), name="billing_plan_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(free_grant_nanousd__gte=0), name="billing_plan_grant_nonnegative"
            ),
            models.CheckConstraint(
                condition=Q(default_monthly_limit_nanousd__isnull=True)
                | Q(default_monthly_limit_nanousd__gte=0),
                name="billing_plan_limit_nonnegative",
            ),
            # At most one default plan.
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="billing_plan_one_default"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_prepaid(self) -> bool:
        return self.kind == self.Kind.PREPAID


class BillingAccount(models.Model):
    """One per organization, created on first use by `billing_account_for`."""

    organization = models.OneToOneField(
        Organization, on_delete=models.PROTECT, primary_key=True, related_name="billing_account"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="accounts")
    # Cached sum of the organization's ledger entries (`billing_check` proves it).
    balance_nanousd = models.BigIntegerField(default=0)
    # The organization's limit per calendar month (UTC); None means no limit.
    monthly_limit_nanousd = models.BigIntegerField(null=True, blank=True)
    # For the dashboard banner: the highest threshold (50/80/100) the monthly spend crossed in
    # the month starting at alert_period_start; 0 when none.
    alert_percent = models.PositiveSmallIntegerField(default=0)
    alert_period_start = models.DateTimeField(null=True, blank=True)
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    # Auto-recharge: when the balance drops below the threshold, charge the saved card.
    auto_recharge_enabled = models.BooleanField(default=False)
    auto_recharge_threshold_nanousd = models.BigIntegerField(default=0)
    auto_recharge_amount_cents = models.PositiveIntegerField(default=0)
    stripe_payment_method_id = models.CharField(max_length=255, blank=True)
    # Set when the bank asked for authentication and auto-recharge turned itself off.
    auto_recharge_stopped_reason = models.CharField(max_length=300, blank=True)
    # Staff overrides of the plan's rate limits for this organization (None: the plan's).
    rpm_limit_override = models.PositiveIntegerField(
        "requests per minute (override)", null=True, blank=True
    )
    tpm_limit_override = models.PositiveIntegerField(
        "tokens per minute (override)", null=True, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(monthly_limit_nanousd__isnull=True) | Q(monthly_limit_nanousd__gte=0),
                name="billing_account_limit_nonnegative",
            ),
        ]

    def __str__(self) -> str:
        return f"Billing of {self.organization_id}"

    @property
    def rpm_limit(self) -> int:
        """The organization's platform limit: staff's override, else its plan's."""
        if self.rpm_limit_override is not None:
            return self.rpm_limit_override
        return self.plan.rpm_limit

    @property
    def tpm_limit(self) -> int:
        if self.tpm_limit_override is not None:
            return self.tpm_limit_override
        return self.plan.tpm_limit


class LedgerEntry(models.Model):
    """One movement of money. Append-only: never updated, never deleted."""

    class Kind(models.TextChoices):
        TOPUP = "topup", "Top-up"
        USAGE = "usage", "Usage"
        REFUND = "refund", "Refund"
        GRANT = "grant", "Grant"
        ADJUSTMENT = "adjustment", "Adjustment"

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="ledger_entries"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Signed: + credits the organization, - debits it.
    amount_nanousd = models.BigIntegerField()
    # Idempotency: a generation id, a Stripe event or payment intent id, "free-grant:user:<id>".
    reference = models.CharField(max_length=200, unique=True)
    # The API key a usage entry belongs to; no foreign key, the books outlive a deleted key.
    key_id = models.UUIDField(null=True, blank=True)
    description = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # When the money moved: for usage, the start of the generation, which decides the spend
    # period it counts in (a generation started at 23:59:59.999 belongs to that day).
    occurred_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(fields=["organization", "kind", "occurred_at"]),
            models.Index(fields=["key_id", "occurred_at"]),
            # The reconciliation's read across organizations (usage billed in a window).
            models.Index(
                fields=["occurred_at"], name="billing_usage_time", condition=Q(kind="usage")
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["topup", "usage", "refund", "grant", "adjustment"]),
                name="billing_ledger_kind_valid",
            ),
            # Credits are positive, usage and refunds (money paid back) are debits; zero usage
            # is allowed (a generation that reached a provider and cost nothing).
            models.CheckConstraint(
                condition=Q(kind="usage", amount_nanousd__lte=0)
                | Q(kind__in=["topup", "grant"], amount_nanousd__gt=0)
                | Q(kind="refund", amount_nanousd__lt=0)
                | Q(kind="adjustment"),
                name="billing_ledger_sign_by_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_nanousd} ({self.reference})"


class AlertSent(models.Model):
    """A spend alert that went out: one per (scope, subject, period, threshold), ever."""

    class Scope(models.TextChoices):
        ORGANIZATION = "org", "Organization monthly limit"
        KEY = "key", "API key limit"

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="spend_alerts"
    )
    scope = models.CharField(max_length=8, choices=Scope.choices)
    subject = models.CharField(max_length=64)  # the organization id or the key id
    period = models.CharField(max_length=16)  # daily / weekly / monthly / total
    period_start = models.DateTimeField()
    threshold = models.PositiveSmallIntegerField()  # percent: 50, 80, 100
    spent_nanousd = models.BigIntegerField()
    limit_nanousd = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "subject", "period_start", "threshold"],
                name="billing_alert_once_per_period",
            ),
            models.CheckConstraint(
                condition=Q(scope__in=["org", "key"]), name="billing_alert_scope_valid"
            ),
        ]
        indexes = [models.Index(fields=["organization", "period_start"])]

    def __str__(self) -> str:
        return f"{self.scope} {self.subject} {self.threshold}% from {self.period_start:%Y-%m-%d}"


class TopUp(models.Model):
    """A purchase of credits through Stripe Checkout. Credits come only from Stripe's webhook
    (the ledger entry's reference is the PaymentIntent id), never from the success page."""

    class Status(models.TextChoices):
        OPEN = "open", "Waiting for payment"
        PAID = "paid", "Paid"

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    amount_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    checkout_session_id = models.CharField(max_length=255, blank=True)
    payment_intent_id = models.CharField(max_length=255, blank=True)
    created_by_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_cents__gte=500) & Q(amount_cents__lte=100_000),
                name="billing_topup_amount_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Top-up {self.id} of {self.amount_cents} cents"


class StripeEvent(models.Model):
    """Every Stripe event we handled, under its unique id, stored in the same transaction as
    its effect: a redelivered event finds its row and changes nothing."""

    id = models.CharField(primary_key=True, max_length=255)
    type = models.CharField(max_length=100)
    organization_id = models.UUIDField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class Recharge(models.Model):
    """One off-session charge of the saved card; at most one in flight per organization."""

    class Status(models.TextChoices):
        PENDING = "pending", "In flight"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        ACTION_REQUIRED = "action_required", "Needs authentication"

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    amount_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    payment_intent_id = models.CharField(max_length=255, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # When a worker last asked Stripe for it: a pending recharge not answered long after this
    # lost its worker, and is asked again under the same idempotency key.
    attempted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization"],
                condition=Q(status="pending"),
                name="billing_recharge_one_in_flight",
            ),
        ]

    def __str__(self) -> str:
        return f"Recharge {self.id} ({self.status})"


class StripeDispute(models.Model):
    """A cardholder's dispute of one of our charges, as Stripe last described it. While one is
    open the organization can't spend (the hot path reads it from its billing snapshot); its
    money moves in the ledger under `stripe-dispute:<id>` (taken) and `stripe-dispute-won:<id>`
    (given back)."""

    # Statuses in which the dispute is still undecided.
    OPEN_STATUSES = (
        "warning_needs_response",
        "warning_under_review",
        "needs_response",
        "under_review",
        "appeal_needs_response",
        "appeal_under_review",
    )
    # Closed in our favour (or never a chargeback): the money comes back.
    RETURNED_STATUSES = ("won", "warning_closed", "prevented")

    id = models.CharField(primary_key=True, max_length=255)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    charge_id = models.CharField(max_length=255, blank=True)
    payment_intent_id = models.CharField(max_length=255, blank=True)
    amount_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=32)
    reason = models.CharField(max_length=64, blank=True)
    # The Stripe event time of the status we hold: an older event delivered late can't undo it.
    status_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "status"])]

    def __str__(self) -> str:
        return f"Dispute {self.id} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES

    @property
    def status_label(self) -> str:
        return self.status.replace("_", " ")


class MeterReported(models.Model):
    """A usage entry of a postpaid organization that Stripe's meter has received. The ledger
    stays append-only: what was reported is kept beside it, written only after Stripe said
    yes (the event's identifier, our entry id, makes a resend count once at Stripe)."""

    entry = models.OneToOneField(
        LedgerEntry, on_delete=models.PROTECT, primary_key=True, related_name="+"
    )
    reported_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Reported {self.entry_id}"


class UsageOutboxBatch(models.Model):
    """Settled usage on its way to the ledger: one row per batch a server process wrote
    (milliseconds after settling), moved into ledger entries by the flush in the transaction
    that deletes it. Lines of `<generation start, µs> <record json>`, as the Redis queue
    carries them (billing.holds.store.encode_record)."""

    id = models.BigAutoField(primary_key=True)
    payload = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"usage batch {self.id}"
