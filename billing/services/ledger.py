"""The ledger: the book of record. Append-only entries in integer nano-USD, one cached balance
per organization updated in the same transaction, one unique reference per entry so that a
replay (a redelivered webhook, a re-run flush) changes nothing."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Organization
from billing.exceptions import BillingError
from billing.holds.store import UsageRecord, decode_lines, encode_lines
from billing.models import BillingAccount, LedgerEntry, Plan, UsageOutboxBatch

logger = logging.getLogger(__name__)

Kind = LedgerEntry.Kind

# The plan's free starting credit is posted under this reference: the person, not the
# organization, so the unique reference makes it once per person, however many organizations
# they create, leave or race to create.
FREE_GRANT_REFERENCE = "free-grant:user:{user_id}"
# Before that, every organization got its own grant on first use under this reference.
_LEGACY_GRANT_PREFIX = "grant:signup:"


def _check_amount(kind: str, amount_nanousd: int) -> None:
    if not isinstance(amount_nanousd, int) or isinstance(amount_nanousd, bool):
        raise BillingError("Amounts are integers of nano-USD.", code="amount_type")
    if kind not in Kind.values:
        raise BillingError(f"Unknown ledger entry kind {kind!r}.", code="kind")
    ok = {
        Kind.TOPUP: amount_nanousd > 0,
        Kind.GRANT: amount_nanousd > 0,
        Kind.USAGE: amount_nanousd <= 0,
        Kind.REFUND: amount_nanousd < 0,
        Kind.ADJUSTMENT: True,
    }[kind]
    if not ok:
        raise BillingError(f"A {kind} entry can't be {amount_nanousd} nano-USD.", code="sign")


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


# The plans the data migration creates; also recreated here if the default went missing (a
# database flushed by TransactionTestCase, say), so an organization always gets an account.
BUILTIN_PLANS = (
    {
        "slug": "prepaid",
        "name": "Prepaid credits",
        "kind": Plan.Kind.PREPAID,
        "free_grant_nanousd": 1_000_000_000,  # $1 of free starting credit
        "default_monthly_limit_nanousd": None,
        "max_in_flight": 64,
        "min_hedge_after_ms": 250,
        "rpm_limit": 1_000,
        "tpm_limit": 20_000_000,
        "is_default": True,
    },
    {
        "slug": "postpaid-metered",
        "name": "Postpaid, metered",
        "kind": Plan.Kind.POSTPAID,
        "free_grant_nanousd": 0,
        "default_monthly_limit_nanousd": 1_000_000_000_000,  # $1,000 a month until raised
        "max_in_flight": 256,
        "min_hedge_after_ms": 100,
        "rpm_limit": 10_000,
        "tpm_limit": 200_000_000,
        "is_default": False,
    },
)


def _default_plan() -> Plan:
    plan = Plan.objects.filter(is_default=True).first()
    if plan is None:
        with transaction.atomic():
            for data in BUILTIN_PLANS:
                Plan.objects.get_or_create(slug=data["slug"], defaults=data)
            plan = Plan.objects.filter(is_default=True).first()
        if plan is None:  # the built-in default slug exists but isn't the default any more
            raise BillingError("No default plan is configured.", code="no_default_plan")
    return plan


def _account_for_update(organization_id: uuid.UUID | str) -> BillingAccount:
    """The organization's account, locked until the end of the transaction (created first if
    missing). Posts to one organization serialize here."""
    _ensure_account(organization_id)
    return BillingAccount.objects.select_for_update().get(organization_id=organization_id)


def _ensure_account(organization_id: uuid.UUID | str) -> BillingAccount:
    organization_id = _uuid(organization_id)
    account = (
        BillingAccount.objects.select_related("plan")
        .filter(organization_id=organization_id)
        .first()
    )
    if account is not None:
        return account
    plan = _default_plan()
    with transaction.atomic():
        account, _ = BillingAccount.objects.select_related("plan").get_or_create(
            organization_id=organization_id,
            defaults={"plan": plan, "monthly_limit_nanousd": plan.default_monthly_limit_nanousd},
        )
    return account


@transaction.atomic
def billing_account_for(*, organization: Organization) -> BillingAccount:
    """The organization's billing account. The first call creates it on the default plan, at
    $0: free credit comes only from `free_credit_grant`."""
    return _ensure_account(organization.id)


@transaction.atomic
def free_credit_grant(*, organization: Organization, user_id: uuid.UUID | str | int) -> bool:
    """Post the plan's free starting credit to `organization` for the person `user_id`, once
    per person ever (accounts decides who qualifies: a verified address, their first
    organization). Returns whether this call granted it.

    Race-safe: the reference names the person, and the ledger's unique reference lets only one
    of two concurrent grants in; the other finds it taken and grants nothing."""
    account = _ensure_account(organization.id)
    amount = account.plan.free_grant_nanousd
    if amount <= 0:
        return False
    reference = FREE_GRANT_REFERENCE.format(user_id=user_id)
    if LedgerEntry.objects.filter(reference=reference).exists():
        return False
    theirs = Organization.objects.filter(created_by_id=user_id).values_list("id", flat=True)
    legacy = [f"{_LEGACY_GRANT_PREFIX}{org_id}" for org_id in theirs]
    if LedgerEntry.objects.filter(reference__in=legacy).exists():
        return False  # had one under the old per-organization grant
    try:
        _, created = ledger_post(
            organization=organization,
            kind=Kind.GRANT,
            amount_nanousd=amount,
            reference=reference,
            description=f"Free starting credit ({account.plan.name})",
            metadata={"plan": account.plan.slug, "user": str(user_id)},
        )
    except BillingError as error:
        if error.code != "conflict":
            raise
        return False  # a concurrent request granted it to another organization first
    return created


@transaction.atomic
def ledger_post(
    *,
    organization: Organization,
    kind: str,
    amount_nanousd: int,
    reference: str,
    key_id: uuid.UUID | str | None = None,
    description: str = "",
    metadata: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> tuple[LedgerEntry, bool]:
    """Append one entry and move the cached balance with it. Returns (entry, created): a
    reference seen before returns the existing entry and changes nothing; reusing a reference
    for a different movement of money is a bug and raises."""
    _check_amount(kind, amount_nanousd)
    if not reference:
        raise BillingError("Every ledger entry needs a reference.", code="reference")
    organization_id = _uuid(organization.id)
    account = _account_for_update(organization_id)
    existing = LedgerEntry.objects.filter(reference=reference).first()
    if existing is None:
        try:
            with transaction.atomic():
                entry = LedgerEntry.objects.create(
                    organization_id=organization_id,
                    kind=kind,
                    amount_nanousd=amount_nanousd,
                    reference=reference,
                    key_id=key_id,
                    description=description[:200],
                    metadata=metadata or {},
                    occurred_at=occurred_at or timezone.now(),
                )
        except IntegrityError:
            # Another organization's post (not serialized by our lock) won the reference.
            existing = LedgerEntry.objects.filter(reference=reference).first()
            if existing is None:
                raise
        else:
            BillingAccount.objects.filter(pk=account.pk).update(
                balance_nanousd=F("balance_nanousd") + amount_nanousd, updated_at=timezone.now()
            )
            if kind != Kind.USAGE:
                _refresh_snapshot_on_commit(organization_id)
            return entry, True
    if (
        existing.organization_id != organization_id
        or existing.kind != kind
        or existing.amount_nanousd != amount_nanousd
    ):
        raise BillingError(
            f"The reference {reference!r} already records a different entry.", code="conflict"
        )
    return existing, False


@transaction.atomic
def billing_account_set_monthly_limit(
    *, organization: Organization, monthly_limit_nanousd: int | None
) -> BillingAccount:
    if monthly_limit_nanousd is not None and (
        not isinstance(monthly_limit_nanousd, int) or monthly_limit_nanousd < 0
    ):
        raise BillingError("A spend limit is a non-negative amount.", code="limit")
    account = _account_for_update(organization.id)
    account.monthly_limit_nanousd = monthly_limit_nanousd
    account.updated_at = timezone.now()
    account.save(update_fields=["monthly_limit_nanousd", "updated_at"])
    _refresh_snapshot_on_commit(organization.id)
    return account


@transaction.atomic
def billing_account_set_plan(*, organization: Organization, plan: Plan) -> BillingAccount:
    """Move to another plan. Limits stay as set; the free grant is never posted again."""
    account = _account_for_update(organization.id)
    account.plan = plan
    account.updated_at = timezone.now()
    account.save(update_fields=["plan", "updated_at"])
    _refresh_snapshot_on_commit(organization.id)
    return account


@transaction.atomic
def billing_account_set_rate_limits(
    *,
    organization: Organization,
    rpm_limit_override: int | None,
    tpm_limit_override: int | None,
    actor,
) -> BillingAccount:
    """Staff set an organization's platform rate limits above (or below) its plan's; None
    goes back to the plan's. Audited; every server process sees it within a second or so."""
    from accounts.models import AuditLog
    from accounts.services.audit import audit_log_record

    if not getattr(actor, "is_staff", False):
        raise BillingError("Only staff can change an organization's plan limits.", code="forbidden")
    for value in (rpm_limit_override, tpm_limit_override):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise BillingError("A rate limit is a whole number above zero.", code="limit")
    account = _account_for_update(organization.id)
    before = {"rpm": account.rpm_limit_override, "tpm": account.tpm_limit_override}
    account.rpm_limit_override = rpm_limit_override
    account.tpm_limit_override = tpm_limit_override
    account.updated_at = timezone.now()
    account.save(update_fields=["rpm_limit_override", "tpm_limit_override", "updated_at"])
    audit_log_record(
        organization=organization,
        actor=actor,
        action=AuditLog.Action.ORG_LIMITS_CHANGED,
        target="plan limits",
        data={"from": before, "to": {"rpm": rpm_limit_override, "tpm": tpm_limit_override}},
    )
    _refresh_snapshot_on_commit(organization.id)
    return account


def _refresh_snapshot_on_commit(organization_id: uuid.UUID | str) -> None:
    from billing.holds.snapshot import org_snapshots

    transaction.on_commit(lambda: org_snapshots.refresh(str(organization_id)))


def usage_entries_write(*, records: Sequence[UsageRecord]) -> list[UsageRecord]:
    """Write settled usage in batches, one transaction per organization, idempotently (a
    reference already in the ledger is skipped), so a replayed batch changes nothing.

    Returns the records that could not be written (the caller queues them again)."""
    # Most records reach here twice (this process's outbox, then the shared queue): one
    # query drops those already written before any account is locked.
    try:
        written = set(
            LedgerEntry.objects.filter(reference__in=[r.reference for r in records]).values_list(
                "reference", flat=True
            )
        )
    except Exception:
        logger.exception("could not read which of %d usage entries exist", len(records))
        return list(records)
    by_org: dict[str, list[UsageRecord]] = {}
    for record in records:
        if record.reference not in written:
            by_org.setdefault(str(record.organization_id), []).append(record)
    failed: list[UsageRecord] = []
    for organization_id, group in by_org.items():
        try:
            _write_org_usage(organization_id, group)
        except Exception:
            logger.exception(
                "could not write %d usage entries of organization %s", len(group), organization_id
            )
            failed.extend(group)
    return failed


@transaction.atomic
def _write_org_usage(organization_id: str, records: Iterable[UsageRecord]) -> int:
    account = _account_for_update(organization_id)
    records = list(records)
    existing = set(
        LedgerEntry.objects.filter(reference__in=[r.reference for r in records]).values_list(
            "reference", flat=True
        )
    )
    now = timezone.now()
    new: list[LedgerEntry] = []
    for record in records:
        if record.reference in existing:
            continue
        if record.cost_nanousd < 0:
            raise BillingError(f"negative cost for {record.reference}", code="sign")
        existing.add(record.reference)
        new.append(
            LedgerEntry(
                organization_id=organization_id,
                kind=Kind.USAGE,
                amount_nanousd=-record.cost_nanousd,
                reference=record.reference,
                key_id=record.key_id or None,
                description=record.description[:200],
                metadata=record.metadata or {},
                occurred_at=record.occurred_at,
                created_at=now,
            )
        )
    if not new:
        return 0
    LedgerEntry.objects.bulk_create(new)
    total = sum(entry.amount_nanousd for entry in new)
    if total:
        BillingAccount.objects.filter(pk=account.pk).update(
            balance_nanousd=F("balance_nanousd") + total, updated_at=now
        )
    key_ids = sorted({str(entry.key_id) for entry in new if entry.key_id})
    at = max(entry.occurred_at for entry in new).isoformat()

    recharge = (
        account.auto_recharge_enabled
        and account.balance_nanousd + total < account.auto_recharge_threshold_nanousd
    )

    def evaluate() -> None:
        from billing.tasks import auto_recharge, evaluate_spend_alerts
        from outbox.services import task_dispatch

        task_dispatch(evaluate_spend_alerts, organization_id, key_ids, at)
        if recharge:
            task_dispatch(auto_recharge, organization_id)

    # Alerts are best effort (a broker that is down must not fail a written batch).
    transaction.on_commit(evaluate, robust=True)
    return len(new)


def usage_outbox_write(*, records: Sequence[UsageRecord]) -> None:
    """One row of settled usage for the flush to move into the ledger: a single insert
    however many records (the server process's outbox writes this, within milliseconds)."""
    if records:
        UsageOutboxBatch.objects.create(payload=encode_lines(records))


def usage_outbox_drain(*, max_rows: int = 20) -> tuple[set[str], bool]:
    """Move outbox rows into ledger entries, each batch in the transaction that deletes its
    rows (concurrent flushes skip each other's rows). Returns the references handled and
    whether some could not be written (they go back to the outbox)."""
    handled: set[str] = set()
    while True:
        with transaction.atomic():
            rows = UsageOutboxBatch.objects.order_by("id")
            if connection.features.has_select_for_update_skip_locked:
                rows = rows.select_for_update(skip_locked=True)
            taken = list(rows[:max_rows])
            if not taken:
                return handled, False
            records = [record for row in taken for record in decode_lines(row.payload)]
            failed = usage_entries_write(records=records)
            UsageOutboxBatch.objects.filter(id__in=[row.id for row in taken]).delete()
            usage_outbox_write(records=failed)
        not_written = {record.reference for record in failed}
        handled.update(r.reference for r in records if r.reference not in not_written)
        if failed:
            return handled, True


def usage_settle_now(
    *,
    reference: str,
    organization_id: uuid.UUID | str,
    key_id: uuid.UUID | str | None,
    cost_nanousd: int,
    occurred_at: datetime | None = None,
    description: str = "",
    metadata: dict[str, Any] | None = None,
) -> tuple[LedgerEntry, bool]:
    """Write one generation's usage entry right now (tests and the reconciliation).
    Idempotent on the reference like the batched path."""
    record = UsageRecord(
        reference=reference,
        organization_id=str(organization_id),
        key_id=str(key_id) if key_id else None,
        cost_nanousd=cost_nanousd,
        occurred_at=occurred_at or timezone.now(),
        description=description,
        metadata=metadata or {},
    )
    created = _write_org_usage(record.organization_id, [record]) == 1
    return LedgerEntry.objects.get(reference=reference), created


@transaction.atomic
def credit_grant(
    *, organization: Organization, amount_nanousd: int, reason: str, granted_by
) -> LedgerEntry:
    """Staff credit an organization (billing off, goodwill, support): a grant, audited."""
    from accounts.models import AuditLog
    from accounts.services.audit import audit_log_record

    if not getattr(granted_by, "is_staff", False):
        raise BillingError("Only staff can grant credits.", code="forbidden")
    if not reason.strip():
        raise BillingError("Say why the credits are granted.", code="reason")
    entry, _ = ledger_post(
        organization=organization,
        kind=Kind.GRANT,
        amount_nanousd=amount_nanousd,
        reference=f"grant:staff:{uuid.uuid4()}",
        description=reason.strip()[:200],
        metadata={"granted_by": str(granted_by.pk)},
    )
    audit_log_record(
        organization=organization,
        actor=granted_by,
        action=AuditLog.Action.CREDITS_GRANTED,
        target=f"{amount_nanousd} nano-USD",
        data={"amount_nanousd": amount_nanousd, "reason": reason.strip()[:200]},
    )
    return entry


@transaction.atomic
def spend_limit_update(
    *, organization: Organization, monthly_limit_nanousd: int | None, actor
) -> BillingAccount:
    from accounts.models import AuditLog
    from accounts.services.audit import audit_log_record

    before = _account_for_update(organization.id).monthly_limit_nanousd
    account = billing_account_set_monthly_limit(
        organization=organization, monthly_limit_nanousd=monthly_limit_nanousd
    )
    audit_log_record(
        organization=organization,
        actor=actor,
        action=AuditLog.Action.SPEND_LIMIT_CHANGED,
        data={"before_nanousd": before, "after_nanousd": monthly_limit_nanousd},
    )
    return account
