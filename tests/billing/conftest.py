"""Billing fixtures: an organization with its billing account, and hold stores on both backends.

Redis-backed tests use their own database index and a fresh key prefix per test (deleted
afterwards), so parallel runs never touch each other's keys and nobody flushes a database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync

import billing.holds
from accounts import services as account_services
from accounts.models import Organization
from billing.holds import HoldStore, InProcessHoldStore, RedisHoldStore, org_snapshots
from billing.models import LedgerEntry
from billing.services import ledger_post
from tests.factories import UserFactory

REDIS_URL = os.environ.get("BILLING_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
CLOSED_PORT_URL = "redis://127.0.0.1:6391/0"

USD = 1_000_000_000
CENT = USD // 100


@pytest.fixture(autouse=True)
def _billing_isolation(settings):
    # No flush threads behind a test's back: tests flush when they mean to.
    settings.BILLING_USAGE_FLUSH_SECONDS = 0
    org_snapshots.clear_local()
    yield
    org_snapshots.clear_local()
    billing.holds._store = None


def delete_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def redis_store(prefix: str | None = None, **options: Any) -> RedisHoldStore:
    return RedisHoldStore(
        REDIS_URL, prefix=prefix or f"billtest:{uuid.uuid4().hex[:12]}", **options
    )


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        yield InProcessHoldStore(auto_flush=False)
        return
    s = redis_store()
    yield s
    delete_prefix(s.prefix)


def call(store: HoldStore | None, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Run an async hold function from a sync test (whose database transaction the ORM calls
    inside then share), closing the Redis client of the short-lived event loop afterwards."""

    async def go():
        try:
            return await fn(**kwargs)
        finally:
            if store is not None:
                await store.aclose()

    return async_to_sync(go)()


def first_organization() -> Organization:
    """A verified person's first organization: on the default (prepaid) plan, with the $1 of
    free starting credit that comes once per person."""
    return account_services.organization_create(user=UserFactory(), name="First organization")


@pytest.fixture
def org(db):
    """An organization on the default (prepaid) plan with its $1 free grant topped up to a
    known balance: exactly $10 of credit."""
    organization = first_organization()
    ledger_post(
        organization=organization,
        kind=LedgerEntry.Kind.TOPUP,
        amount_nanousd=9 * USD,
        reference=f"test-topup:{organization.id}",
    )
    org_snapshots.clear_local()
    return organization


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)
