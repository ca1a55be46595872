"""Plans are data: a default prepaid plan with a free starting grant, a postpaid metered plan,
and an account created on first use at $0. The free grant comes once per person, with their
first organization (tests/billing/test_attacks_credit.py tries to get more)."""

from __future__ import annotations

from billing import selectors
from billing.models import BillingAccount, LedgerEntry, Plan
from billing.services import (
    FREE_GRANT_REFERENCE,
    billing_account_for,
    billing_account_set_plan,
    free_credit_grant,
)
from tests.billing.conftest import USD, first_organization
from tests.factories import OrganizationFactory, PlanFactory


def test_the_migration_creates_the_two_plans(db):
    prepaid = Plan.objects.get(slug="prepaid")
    postpaid = Plan.objects.get(slug="postpaid-metered")
    assert prepaid.is_default and prepaid.kind == "prepaid"
    assert prepaid.free_grant_nanousd == USD
    assert not postpaid.is_default and postpaid.kind == "postpaid"
    assert postpaid.free_grant_nanousd == 0
    assert selectors.plan_default() == prepaid


def test_a_new_account_is_on_the_default_plan_at_zero(db):
    org = OrganizationFactory()
    assert selectors.billing_account_get(organization=org) is None
    account = billing_account_for(organization=org)
    assert account.plan.slug == "prepaid"
    assert account.balance_nanousd == 0
    assert account.monthly_limit_nanousd is None
    billing_account_for(organization=org)
    assert not LedgerEntry.objects.filter(organization=org).exists()


def test_the_free_grant_is_posted_once_per_person(db):
    org = first_organization()
    creator = org.created_by
    [grant] = LedgerEntry.objects.filter(organization=org)
    assert grant.kind == "grant" and grant.amount_nanousd == USD
    assert grant.reference == FREE_GRANT_REFERENCE.format(user_id=creator.pk)
    # Asking again, for this organization or another one, grants nothing.
    other = OrganizationFactory()
    assert not free_credit_grant(organization=org, user_id=creator.pk)
    assert not free_credit_grant(organization=other, user_id=creator.pk)
    assert BillingAccount.objects.get(organization=org).balance_nanousd == USD
    assert billing_account_for(organization=other).balance_nanousd == 0


def test_a_person_granted_under_the_old_per_organization_reference_gets_no_more(db):
    org = first_organization()
    creator = org.created_by
    LedgerEntry.objects.filter(organization=org).update(reference=f"grant:signup:{org.id}")
    assert not free_credit_grant(organization=OrganizationFactory(), user_id=creator.pk)


def test_changing_plans_never_grants_again(db):
    org = first_organization()
    generous = PlanFactory(kind="prepaid", free_grant_nanousd=50 * USD)
    billing_account_set_plan(organization=org, plan=generous)
    billing_account_set_plan(organization=org, plan=Plan.objects.get(slug="prepaid"))
    assert not free_credit_grant(organization=org, user_id=org.created_by.pk)
    assert LedgerEntry.objects.filter(organization=org).count() == 1
    assert selectors.ledger_sum(organization=org) == USD


def test_the_default_plan_decides_kind_grant_and_limit(db):
    Plan.objects.update(is_default=False)
    PlanFactory(
        slug="enterprise",
        kind="postpaid",
        free_grant_nanousd=0,
        default_monthly_limit_nanousd=500 * USD,
        is_default=True,
    )
    account = billing_account_for(organization=first_organization())
    assert account.plan.slug == "enterprise"
    assert not account.plan.is_prepaid
    assert account.monthly_limit_nanousd == 500 * USD
    assert account.balance_nanousd == 0
    assert not LedgerEntry.objects.filter(organization=account.organization).exists()
