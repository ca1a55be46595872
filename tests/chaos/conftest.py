"""The chaos suite runs on production's parts only: PostgreSQL and Redis (DATABASE_URL,
REDIS_URL). On the embedded default (SQLite, no Redis) it isn't collected: the faults it
injects (stopping Redis, killing database connections) don't exist there, and CI refuses
skipped tests."""

from __future__ import annotations

import os
import shutil

import pytest

_production_parts = os.environ.get("DATABASE_URL", "").startswith(("postgres", "postgresql")) and (
    os.environ.get("REDIS_URL") and shutil.which("redis-server")
)
collect_ignore_glob = [] if _production_parts else ["test_*.py"]


@pytest.fixture
def platform(transactional_db, tmp_path):
    """Start a deployment with `platform(webs=..., env=...)`; stopped after the test."""
    from tests.chaos.harness import Platform

    started = []

    def start(**options) -> Platform:
        deployment = Platform(tmp_path / "platform", **options)
        started.append(deployment)
        try:
            return deployment.start()
        except Exception:
            deployment.stop()
            raise

    yield start
    for deployment in started:
        deployment.stop()


@pytest.fixture
def tenant(transactional_db):
    """An organization with $100 of credit and an API key: (organization, secret)."""
    from accounts import services as account_services
    from billing.models import LedgerEntry
    from billing.services import billing_account_set_rate_limits, ledger_post
    from routing.services import catalog_load
    from tests.factories import UserFactory

    catalog_load()
    user = UserFactory(email="chaos@example.com")
    organization = account_services.organization_create(user=user, name="Chaos")
    ledger_post(
        organization=organization,
        kind=LedgerEntry.Kind.TOPUP,
        amount_nanousd=100 * 1_000_000_000,
        reference=f"chaos-topup:{organization.id}",
    )
    # The load is many times a prepaid plan's requests per minute; staff raise the limits, as
    # for a customer that needs it, so the figures are about the faults, not the limiter.
    billing_account_set_rate_limits(
        organization=organization,
        rpm_limit_override=1_000_000,
        tpm_limit_override=2_000_000_000,
        actor=UserFactory(email="staff@example.com", is_staff=True),
    )
    _, secret = account_services.api_key_create(
        organization=organization, created_by=user, name="chaos"
    )
    return organization, secret
