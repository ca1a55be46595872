"""Money through the real request path: holds before the provider is called, 402 when a
request doesn't fit, exactly one usage entry per generation at its real cost."""

from __future__ import annotations

import concurrent.futures
from decimal import Decimal

import httpx
from django.utils import timezone

from accounts import services as account_services
from accounts.models import APIKey
from billing import selectors, services
from billing.models import LedgerEntry

HERO = "google/gemini-3.1-flash-lite"
NANO = Decimal(1_000_000_000)


def _chat(base_url, secret, **extra):
    return httpx.post(
        f"{base_url}/chat/completions",
        json={"model": HERO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
        | extra,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def test_each_generation_is_billed_once_at_its_real_cost(gateway, alice):
    base_url, secret = gateway
    services.billing_account_for(organization=alice.org)  # alice's first: $1 free grant
    before = selectors.ledger_sum(organization=alice.org)
    replies = [_chat(base_url, secret).json() for _ in range(3)]
    services.usage_flush()
    for reply in replies:
        entry = LedgerEntry.objects.get(reference=reply["id"])
        assert entry.kind == LedgerEntry.Kind.USAGE
        assert -entry.amount_nanousd == int(Decimal(str(reply["usage"]["cost"])) * NANO)
    spent = sum(int(Decimal(str(r["usage"]["cost"])) * NANO) for r in replies)
    assert selectors.ledger_sum(organization=alice.org) == before - spent
    assert services.usage_flush() == 0  # nothing twice
    assert selectors.billing_check() == []


def test_a_failed_request_costs_nothing(gateway, alice, sim):
    base_url, secret = gateway
    for slug in ("google-ai-studio", "vertex-ai", "openrouter", "private-vllm"):
        sim.set(slug, error_rate=1, error_kind="500")
    response = _chat(base_url, secret)
    assert response.status_code == 502
    services.usage_flush()
    # Providers answered (with errors): the generation has its one usage entry, at zero.
    usage = LedgerEntry.objects.filter(organization=alice.org, kind=LedgerEntry.Kind.USAGE)
    assert [e.amount_nanousd for e in usage] == [0]
    assert len(response.json()["error"]["metadata"]["attempts"]) == 4
    assert selectors.billing_check() == []


def test_out_of_credit_is_402_insufficient_quota(gateway, alice, sim):
    base_url, secret = gateway
    services.billing_account_for(organization=alice.org)
    balance = selectors.ledger_sum(organization=alice.org)
    services.ledger_post(
        organization=alice.org,
        kind=LedgerEntry.Kind.ADJUSTMENT,
        amount_nanousd=-balance,
        reference="test:drain",
    )
    from billing.holds import org_snapshots

    org_snapshots.clear_local()
    response = _chat(base_url, secret)
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "insufficient_quota"
    assert error["type"] == "insufficient_quota"
    assert sim.stats("google-ai-studio")["requests"] == 0  # refused before any call


def test_a_key_spend_limit_is_402_spend_limit_exceeded(gateway, alice, sim):
    base_url, _ = gateway
    key, secret = account_services.api_key_create(
        organization=alice.org,
        created_by=alice.user,
        name="capped",
        spend_limit_nanousd=1_000,  # $0.000001: less than one request's worst case
        spend_limit_period=APIKey.SpendPeriod.DAILY,
    )
    response = _chat(base_url, secret)
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "spend_limit_exceeded"
    assert error["metadata"]["limit"] == "key_spend_limit"
    assert "spend limit" in error["message"]


def test_concurrent_requests_never_spend_past_the_budget(gateway, alice, sim):
    """A key with budget for about N requests, 10×N at once: the key never spends past its
    limit, the excess is refused with 402, and the ledger and the spend agree afterwards."""
    base_url, _ = gateway
    n = 5
    worst = 5_000  # nano-USD: above one hero request's worst case with max_tokens 16
    _, secret = account_services.api_key_create(
        organization=alice.org,
        created_by=alice.user,
        name="budget",
        spend_limit_nanousd=worst * n,
        spend_limit_period=APIKey.SpendPeriod.TOTAL,
    )
    with concurrent.futures.ThreadPoolExecutor(max_workers=25) as pool:
        results = list(pool.map(lambda _: _chat(base_url, secret), range(10 * n)))
    admitted = [r for r in results if r.status_code == 200]
    refused = [r for r in results if r.status_code == 402]
    assert len(admitted) + len(refused) == 10 * n
    # Settled requests cost less than their hold, which frees room for a few more than N.
    assert n <= len(admitted) < 2 * n
    assert refused
    services.usage_flush()
    key = APIKey.objects.get(name="budget")
    spent = selectors.usage_spent(
        organization_id=alice.org.id, key_id=key.id, period="total", at=timezone.now()
    )
    assert spent == sum(int(Decimal(str(r.json()["usage"]["cost"])) * NANO) for r in admitted)
    assert spent <= worst * n


def test_v1_key_reports_spend_and_remaining_credit(gateway, alice):
    base_url, _ = gateway
    _, secret = account_services.api_key_create(
        organization=alice.org,
        created_by=alice.user,
        name="checker",
        spend_limit_nanousd=1_000_000_000,
        spend_limit_period=APIKey.SpendPeriod.MONTHLY,
    )
    cost = Decimal(str(_chat(base_url, secret).json()["usage"]["cost"]))
    services.usage_flush()
    data = httpx.get(f"{base_url}/key", headers={"Authorization": f"Bearer {secret}"}).json()[
        "data"
    ]
    assert Decimal(str(data["usage"]["spent_usd"])) == cost
    assert Decimal(str(data["usage"]["limit_usd"])) == 1
    assert Decimal(str(data["usage"]["limit_remaining_usd"])) == 1 - cost
    assert Decimal(str(data["credit_remaining_usd"])) > 0
