"""Plans are data: a default prepaid plan with a free starting grant, a postpaid metered plan,
and an account created on first use with the grant posted once per organization."""

from __future__ import annotations

from billing import selectors
from billing.models import BillingAccount, LedgerEntry, Plan
from billing.services import (
    SIGNUP_GRANT_REFERENCE,
    billing_account_for,
    billing_account_set_plan,
)
from tests.billing.conftest import USD
from tests.factories import OrganizationFactory, PlanFactory


def test_the_migration_creates_the_two_plans(db):
    prepaid = Plan.objects.get(slug="prepaid")
    postpaid = Plan.objects.get(slug="postpaid-metered")
    assert prepaid.is_default and prepaid.kind == "prepaid"
    assert prepaid.free_grant_nanousd == USD
    assert not postpaid.is_default and postpaid.kind == "postpaid"
    assert postpaid.free_grant_nanousd == 0
    assert selectors.plan_default() == prepaid


def test_a_new_account_is_on_the_default_plan_with_its_grant_once(db):
    org = OrganizationFactory()
    assert selectors.billing_account_get(organization=org) is None
    account = billing_account_for(organization=org)
    assert account.plan.slug == "prepaid"
    assert account.balance_nanousd == USD
    assert account.monthly_limit_nanousd is None
    billing_account_for(organization=org)
    billing_account_for(organization=org)
    [grant] = LedgerEntry.objects.filter(organization=org)
    assert grant.kind == "grant"
    assert grant.reference == SIGNUP_GRANT_REFERENCE.format(organization_id=org.id)
    assert BillingAccount.objects.get(organization=org).balance_nanousd == USD


def test_changing_plans_never_grants_again(db):
    org = OrganizationFactory()
    billing_account_for(organization=org)
    generous = PlanFactory(kind="prepaid", free_grant_nanousd=50 * USD)
    billing_account_set_plan(organization=org, plan=generous)
    billing_account_set_plan(organization=org, plan=Plan.objects.get(slug="prepaid"))
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
    account = billing_account_for(organization=OrganizationFactory())
    assert account.plan.slug == "enterprise"
    assert not account.plan.is_prepaid
    assert account.monthly_limit_nanousd == 500 * USD
    assert account.balance_nanousd == 0
    assert not LedgerEntry.objects.filter(organization=account.organization).exists()
