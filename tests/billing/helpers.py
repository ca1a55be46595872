"""Shorthands for hold tests: place / settle / release from sync tests, read the counters."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.utils import timezone

from billing.holds import (
    HoldStore,
    hold_parts,
    hold_place,
    hold_release,
    hold_settle,
    org_snapshots,
)
from tests.billing.conftest import call


def gen_id() -> str:
    return f"gen-{uuid.uuid4().hex}"


def place(
    store: HoldStore,
    org,
    amount: int,
    *,
    hold_id: str | None = None,
    key_id: uuid.UUID | str | None = None,
    key_limit: int | None = None,
    key_period: str = "monthly",
    now: datetime | None = None,
):
    return call(
        store,
        hold_place,
        hold_id=hold_id or gen_id(),
        organization_id=org.id,
        key_id=key_id,
        key_limit_nanousd=key_limit,
        key_period=key_period,
        amount_nanousd=amount,
        now=now,
        store=store,
    )


def settle(
    store: HoldStore,
    org,
    hold_id: str,
    actual: int,
    *,
    key_id: uuid.UUID | str | None = None,
    started_at: datetime | None = None,
) -> bool:
    return call(
        store,
        hold_settle,
        hold_id=hold_id,
        actual_nanousd=actual,
        organization_id=org.id,
        key_id=key_id,
        started_at=started_at,
        store=store,
    )


def release(store: HoldStore, hold_id: str) -> bool:
    return call(store, hold_release, hold_id=hold_id, store=store)


def counters(
    store: HoldStore,
    org,
    *,
    key_id: uuid.UUID | str | None = None,
    key_limit: int | None = None,
    key_period: str = "monthly",
    at: datetime | None = None,
) -> dict[str, tuple[int, int] | None]:
    """scope -> (spent, held) of the counters a hold with these arguments is checked against
    (the key's in its own period, the organization's monthly one, the balance)."""
    parts = hold_parts(
        snapshot=org_snapshots.get(org.id),
        key_id=str(key_id) if key_id else None,
        key_limit_nanousd=key_limit,
        key_period=key_period,
        at=at or timezone.now(),
    )
    seen: dict[str, tuple[int, int] | None] = {}
    for part in parts:
        seen.setdefault(part.scope, store.counter(part))
    return seen
