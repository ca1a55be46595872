"""Issue 11, point 8: Stripe's bad news reaches the ledger.

Refunds and disputes are debited once each, whatever order Stripe delivers them in and however
often; an open dispute stops spending on the real request path; a recharge that hit a Stripe
error fails instead of blocking every later one; a hold lives as long as its request. Stripe is
faked with respx on the SDK's HTTPX client, webhooks are signed with the SDK's own helper."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import httpx
import pytest
import respx
from django.test import Client
from django.utils import timezone

from accounts import services as account_services
from accounts.models import AuditLog
from billing import selectors, services
from billing.holds import OrgSnapshotCache, org_snapshots
from billing.models import LedgerEntry, Recharge, TopUp
from billing.tasks import retry_auto_recharges
from tests.billing.conftest import call
from tests.billing.helpers import gen_id
from tests.billing.test_stripe import API, SECRET, deliver, event, payment_succeeded

pytestmark = pytest.mark.filterwarnings(
    "ignore:Use .content=<...>. to upload raw bytes/text content.:DeprecationWarning"
)

USD = 1_000_000_000
CENT = USD // 100
HERO = "google/gemini-3.1-flash-lite"
HERO_PROVIDERS = ("google-ai-studio", "vertex-ai", "openrouter", "private-vllm")


@pytest.fixture
def stripe_keys(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_not_a_real_key"
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    settings.STRIPE_MAX_NETWORK_RETRIES = 0


@pytest.fixture
def stripe_api(stripe_keys):
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def paid(client, org, *, cents: int = 2500, pi: str = "pi_paid_1") -> None:
    """The organization bought `cents` of credits: Stripe told us so."""
    topup = TopUp.objects.create(organization=org, amount_cents=cents)
    payload = payment_succeeded(org, topup.id, event_id=f"evt_{pi}", cents=cents, pi=pi)
    assert deliver(client, payload).status_code == 200


def charge(*, refunded: int, pi: str = "pi_paid_1", charge_id: str = "ch_1", cents: int = 2500):
    return {
        "id": charge_id,
        "object": "charge",
        "amount": cents,
        "amount_refunded": refunded,
        "refunded": refunded == cents,
        "currency": "usd",
        "payment_intent": pi,
        "metadata": {},
    }


def refund(refund_id: str, cents: int, *, status: str = "succeeded", charge_id: str = "ch_1"):
    return {
        "id": refund_id,
        "object": "refund",
        "amount": cents,
        "currency": "usd",
        "charge": charge_id,
        "payment_intent": "pi_paid_1",
        "status": status,
    }


def refunds_now(mock, *refunds):
    """What Stripe answers, from now on, when asked for the charge's refunds."""
    return mock.get(f"{API}/v1/refunds").respond(
        200,
        json={"object": "list", "url": "/v1/refunds", "has_more": False, "data": list(refunds)},
    )


def dispute(status: str, *, dispute_id: str = "dp_1", pi: str = "pi_paid_1", cents: int = 2500):
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": cents,
        "currency": "usd",
        "charge": "ch_1",
        "payment_intent": pi,
        "reason": "fraudulent",
        "status": status,
        "metadata": {},
    }


def signed_at(event_id: str, kind: str, obj: dict, created: int) -> str:
    data = json.loads(event(event_id, kind, obj))
    data["created"] = created
    return json.dumps(data)


def balance(org) -> int:
    return selectors.ledger_sum(organization=org)


# --- Refunds ------------------------------------------------------------------------------


def test_a_refund_takes_back_exactly_what_was_refunded_once_in_any_order(stripe_api, alice, client):
    services.billing_account_for(organization=alice.org)
    paid(client, alice.org)
    before = balance(alice.org)

    # A partial refund of $10 of the $25 payment.
    listing = refunds_now(stripe_api, refund("re_1", 1000))
    first = event("evt_refunded_1", "charge.refunded", charge(refunded=1000))
    assert deliver(client, first).status_code == 200
    assert balance(alice.org) == before - 10 * USD
    assert listing.calls.last.request.url.params["charge"] == "ch_1"
    # Replayed, and described again by another event: nothing moves twice.
    assert deliver(client, first).content == b"duplicate"
    created = event("evt_refund_created_1", "refund.created", refund("re_1", 1000))
    assert deliver(client, created).status_code == 200
    assert balance(alice.org) == before - 10 * USD

    # A second partial refund of $5 counts only the $5 newly refunded...
    refunds_now(stripe_api, refund("re_2", 500), refund("re_1", 1000))
    second = event("evt_refunded_2", "charge.refunded", charge(refunded=1500))
    assert deliver(client, second).status_code == 200
    assert balance(alice.org) == before - 15 * USD
    # ...and the first one's event delivered late (out of order) changes nothing.
    late = event("evt_refunded_1_late", "charge.refunded", charge(refunded=1000))
    assert deliver(client, late).status_code == 200
    assert balance(alice.org) == before - 15 * USD

    # A refund that failed after all gives its amount back, once.
    refunds_now(stripe_api, refund("re_2", 500, status="failed"), refund("re_1", 1000))
    failed = event("evt_refund_failed_2", "refund.failed", refund("re_2", 500, status="failed"))
    assert deliver(client, failed).status_code == 200
    assert deliver(client, failed).status_code == 200
    assert balance(alice.org) == before - 10 * USD

    refs = set(
        LedgerEntry.objects.filter(organization=alice.org)
        .exclude(kind__in=["topup", "grant"])
        .values_list("reference", flat=True)
    )
    assert refs == {"stripe-refund:re_1", "stripe-refund:re_2", "stripe-refund-reversed:re_2"}
    assert selectors.billing_check() == []


def test_refund_events_wait_for_stripe_when_it_cannot_be_read(stripe_api, alice, client):
    services.billing_account_for(organization=alice.org)
    paid(client, alice.org)
    before = balance(alice.org)
    stripe_api.get(f"{API}/v1/refunds").respond(
        500, json={"error": {"type": "api_error", "message": "down"}}
    )
    payload = event("evt_refunded_x", "charge.refunded", charge(refunded=2500))
    assert deliver(client, payload).status_code == 503  # Stripe delivers it again later
    assert balance(alice.org) == before
    refunds_now(stripe_api, refund("re_x", 2500))
    assert deliver(client, payload).status_code == 200
    assert balance(alice.org) == before - 25 * USD


def test_refunds_of_someone_elses_payment_change_nothing(stripe_api, alice, client):
    services.billing_account_for(organization=alice.org)
    before = balance(alice.org)
    listing = refunds_now(stripe_api, refund("re_foreign", 2500))
    foreign = event("evt_foreign", "charge.refunded", charge(refunded=2500, pi="pi_not_ours"))
    assert deliver(client, foreign).status_code == 200
    assert balance(alice.org) == before
    assert listing.call_count == 0  # not even asked about
    assert not LedgerEntry.objects.filter(reference__startswith="stripe-refund").exists()


# --- Disputes -----------------------------------------------------------------------------


def chat(base_url: str, secret: str, **extra) -> httpx.Response:
    return httpx.post(
        f"{base_url}/chat/completions",
        json={"model": HERO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
        | extra,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def test_a_dispute_takes_the_money_and_stops_spending_until_it_is_won(
    gateway, stripe_keys, alice, sim, login
):
    base_url, secret = gateway
    client = Client()
    services.billing_account_for(organization=alice.org)
    paid(client, alice.org)
    assert chat(base_url, secret).status_code == 200
    services.usage_flush()
    before = balance(alice.org)

    opened = event("evt_dp_created", "charge.dispute.created", dispute("needs_response"))
    assert deliver(client, opened).status_code == 200
    assert balance(alice.org) == before - 25 * USD
    assert LedgerEntry.objects.get(reference="stripe-dispute:dp_1").amount_nanousd == -25 * USD

    calls = sim.stats("google-ai-studio")["requests"]
    refused = chat(base_url, secret)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "account_suspended"
    assert "dispute" in error["message"]
    assert sim.stats("google-ai-studio")["requests"] == calls  # refused before any provider
    page = login(alice.user).get(f"/o/{alice.org.id}/billing/")
    assert b'data-testid="dispute-open"' in page.content
    assert b"$25.00" in page.content

    # Won: the money comes back with its own entry, and spending resumes.
    won = event("evt_dp_closed", "charge.dispute.closed", dispute("won"))
    assert deliver(client, won).status_code == 200
    assert deliver(client, won).content == b"duplicate"
    assert balance(alice.org) == before
    assert LedgerEntry.objects.get(reference="stripe-dispute-won:dp_1").amount_nanousd == 25 * USD
    assert chat(base_url, secret).status_code == 200
    page = login(alice.user).get(f"/o/{alice.org.id}/billing/")
    assert b'data-testid="dispute-open"' not in page.content

    # An older "under review" event delivered late reopens nothing and takes nothing twice.
    stale = signed_at(
        "evt_dp_updated_late",
        "charge.dispute.updated",
        dispute("under_review"),
        int(time.time()) - 60,
    )
    assert deliver(client, stale).status_code == 200
    assert chat(base_url, secret).status_code == 200
    services.usage_flush()
    assert LedgerEntry.objects.filter(reference__startswith="stripe-dispute").count() == 2
    actions = AuditLog.objects.filter(organization=alice.org, action="billing.dispute")
    assert [a.data["status"] for a in actions.order_by("id")] == ["needs_response", "won"]
    assert selectors.billing_check() == []


def test_a_dispute_lost_before_it_was_seen_open_is_taken_once_and_suspends_nothing(
    stripe_keys, alice, client, settings
):
    services.billing_account_for(organization=alice.org)
    paid(client, alice.org)
    before = balance(alice.org)
    now = int(time.time())
    # Stripe delivers the end first, then the start.
    closed = signed_at("evt_lost", "charge.dispute.closed", dispute("lost"), now)
    opened = signed_at("evt_open", "charge.dispute.created", dispute("needs_response"), now - 5)
    assert deliver(client, closed).status_code == 200
    assert deliver(client, opened).status_code == 200
    assert balance(alice.org) == before - 25 * USD
    assert not LedgerEntry.objects.filter(reference="stripe-dispute-won:dp_1").exists()
    store = services.get_hold_store()
    result = call(
        store,
        services.hold_place,
        hold_id="gen-after-lost-dispute",
        organization_id=alice.org.id,
        key_id=None,
        key_limit_nanousd=None,
        key_period="monthly",
        amount_nanousd=1000,
        store=store,
    )
    assert result.allowed


def test_a_dispute_reaches_every_process_within_its_local_cache_time(
    stripe_keys, alice, client, settings, django_capture_on_commit_callbacks
):
    """Another server process has its own memory but shares the cache: it sees the
    suspension once its local copy (BILLING_SNAPSHOT_LOCAL_TTL) lapses, not minutes later."""
    settings.BILLING_SNAPSHOT_LOCAL_TTL = 0.2
    services.billing_account_for(organization=alice.org)
    paid(client, alice.org, pi="pi_paid_2")
    other_process = OrgSnapshotCache()
    assert other_process.get(alice.org.id).suspended == ""
    opened = event("evt_dp_2", "charge.dispute.created", dispute("needs_response", pi="pi_paid_2"))
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(client, opened).status_code == 200
    time.sleep(0.3)
    assert "dispute" in other_process.get(alice.org.id).suspended
    org_snapshots.clear_local()
    store = services.get_hold_store()
    result = call(
        store,
        services.hold_place,
        hold_id="gen-during-dispute",
        organization_id=alice.org.id,
        key_id=None,
        key_limit_nanousd=None,
        key_period="monthly",
        amount_nanousd=1000,
        store=store,
    )
    assert (result.allowed, result.refused_by) == (False, "account_suspended")


# --- Auto-recharge ------------------------------------------------------------------------


@pytest.fixture
def recharging(stripe_api, alice, client):
    """Alice's card is saved, auto-recharge is on ($20 below $5), and her balance is $1."""
    account = services.billing_account_for(organization=alice.org)
    account.stripe_customer_id = "cus_test_1"
    account.save()
    topup = TopUp.objects.create(organization=alice.org, amount_cents=1000)
    payload = json.loads(payment_succeeded(alice.org, topup.id, cents=1000, pi="pi_card"))
    payload["data"]["object"]["payment_method"] = "pm_card_saved"
    assert deliver(client, json.dumps(payload)).status_code == 200
    services.auto_recharge_configure(
        organization=alice.org,
        enabled=True,
        threshold_nanousd=5 * USD,
        amount_cents=2000,
        actor=alice.user,
    )
    services.ledger_post(
        organization=alice.org,
        kind=LedgerEntry.Kind.ADJUSTMENT,
        amount_nanousd=1 * USD - balance(alice.org),
        reference="test:down-to-one-dollar",
    )
    return alice.org


def test_a_stripe_error_fails_the_recharge_and_a_later_one_can_start(
    recharging, stripe_api, settings
):
    org = recharging
    intents = stripe_api.post(f"{API}/v1/payment_intents")
    intents.side_effect = [
        httpx.Response(500, json={"error": {"type": "api_error", "message": "Stripe is down"}}),
        httpx.Response(
            200, json={"id": "pi_recharge_2", "object": "payment_intent", "status": "succeeded"}
        ),
    ]
    first = services.auto_recharge_run(organization_id=org.id)
    assert first is not None
    first.refresh_from_db()
    assert first.status == Recharge.Status.FAILED
    assert "Stripe" in first.error
    assert balance(org) == 1 * USD
    # Auto-recharge stays on (the card is fine), and waits a little before trying again.
    assert services.billing_account_for(organization=org).auto_recharge_enabled
    assert services.auto_recharge_run(organization_id=org.id) is None
    assert intents.call_count == 1

    # No usage comes to trigger it (out of credit, requests are refused): the periodic job
    # tries again once the wait is over.
    settings.BILLING_RECHARGE_RETRY_SECONDS = 0
    assert retry_auto_recharges.delay().get() == 1
    second = Recharge.objects.exclude(pk=first.pk).get(organization=org)
    assert second.status == Recharge.Status.SUCCEEDED
    assert intents.calls.last.request.headers["Idempotency-Key"] == f"recharge-{second.pk}"
    assert balance(org) == 21 * USD
    assert retry_auto_recharges.delay().get() == 0  # above the threshold: nothing to do


def test_a_recharge_left_pending_by_a_dead_worker_is_taken_over_under_its_own_key(
    recharging, stripe_api, settings
):
    org = recharging
    long_ago = timezone.now() - timedelta(seconds=settings.BILLING_RECHARGE_PENDING_SECONDS + 5)
    stuck = Recharge.objects.create(
        organization=org, amount_cents=2000, created_at=long_ago, attempted_at=long_ago
    )
    intents = stripe_api.post(f"{API}/v1/payment_intents").respond(
        200, json={"id": "pi_recharge_3", "object": "payment_intent", "status": "succeeded"}
    )
    # Still in flight a moment ago: nobody else charges.
    Recharge.objects.filter(pk=stuck.pk).update(attempted_at=timezone.now())
    assert services.auto_recharge_run(organization_id=org.id) is None
    assert intents.call_count == 0
    # Its worker died: taken over, and sent again under the same idempotency key, so Stripe
    # replays the first answer if that call got through rather than charging twice.
    Recharge.objects.filter(pk=stuck.pk).update(attempted_at=long_ago)
    taken = services.auto_recharge_run(organization_id=org.id)
    assert taken is not None and taken.pk == stuck.pk
    assert intents.calls.last.request.headers["Idempotency-Key"] == f"recharge-{stuck.pk}"
    stuck.refresh_from_db()
    assert stuck.status == Recharge.Status.SUCCEEDED
    assert balance(org) == 21 * USD


# --- Holds outlive the longest stream -----------------------------------------------------


def test_a_hold_lives_as_long_as_its_stream_so_the_limit_holds(gateway, alice, sim, settings):
    """The configured TTL is short (1 s) and the stream takes about 2 s: the periodic job that
    releases expired holds runs mid-stream. The stream's hold must still count, so a second
    request that only fits without it is refused."""
    base_url, _ = gateway
    settings.BILLING_HOLD_TTL_SECONDS = 1.0
    for slug in HERO_PROVIDERS:
        sim.set(slug, latency_ms=0, tokens_per_second=20, output_tokens=10_000)
    body = {"max_tokens": 40}
    # What one request holds, read from a refusal (a key too small for anything).
    _, tiny = account_services.api_key_create(
        organization=alice.org,
        created_by=alice.user,
        name="tiny",
        spend_limit_nanousd=1,
        spend_limit_period="total",
    )
    held = chat(base_url, tiny, **body).json()["error"]["metadata"]["requested_nanousd"]
    # Room for one request, not two.
    key, secret = account_services.api_key_create(
        organization=alice.org,
        created_by=alice.user,
        name="one-at-a-time",
        spend_limit_nanousd=held * 3 // 2,
        spend_limit_period="total",
    )

    first_chunk = threading.Event()
    streamed: dict = {}

    def stream() -> None:
        with httpx.stream(
            "POST",
            f"{base_url}/chat/completions",
            json={
                "model": HERO,
                "messages": [{"role": "user", "content": "hi"}],
                "stream": True,
                **body,
            },
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        ) as response:
            streamed["status"] = response.status_code
            for _ in response.iter_lines():
                first_chunk.set()
        streamed["done"] = True

    runner = threading.Thread(target=stream)
    started = time.monotonic()
    runner.start()
    assert first_chunk.wait(10)
    time.sleep(max(0.0, started + 1.3 - time.monotonic()))  # past the configured TTL
    services.holds_release_expired()  # the periodic job
    second = chat(base_url, secret, **body)
    still_streaming = "done" not in streamed
    runner.join(30)
    assert second.status_code == 402, second.text
    assert second.json()["error"]["code"] == "spend_limit_exceeded"
    assert still_streaming  # it was refused while the first was still running
    assert streamed == {"status": 200, "done": True}
    services.usage_flush()
    spent = selectors.usage_spent(
        organization_id=alice.org.id, key_id=key.id, period="total", at=timezone.now()
    )
    assert 0 < spent <= held * 3 // 2


def test_a_hold_placed_for_longer_is_released_only_after_its_own_time(store, org, settings):
    settings.BILLING_HOLD_TTL_SECONDS = 1
    started = timezone.now()
    short, long = gen_id(), gen_id()
    for hold_id, ttl in ((short, None), (long, 600.0)):
        result = call(
            store,
            services.hold_place,
            hold_id=hold_id,
            organization_id=org.id,
            key_id=None,
            key_limit_nanousd=None,
            key_period="monthly",
            amount_nanousd=CENT,
            now=started,
            store=store,
            ttl_seconds=ttl,
        )
        assert result.allowed
    at = started.timestamp()
    assert services.holds_release_expired(now=started + timedelta(seconds=2), store=store) == 1
    assert (store.hold_state(short), store.hold_state(long)) == ("expired", "held")
    assert store.release_expired(now=at + 599) == 0
    assert store.release_expired(now=at + 601) == 1


def test_a_long_answer_gets_a_hold_that_outlives_it(settings):
    from routing.health import HealthBook, Outcome
    from routing.pricing import hold_ttl_seconds
    from routing.snapshot import EndpointSnap

    settings.BILLING_HOLD_TTL_SECONDS = 900
    settings.ROUTING_MAX_ATTEMPTS, settings.ROUTING_CONNECT_TIMEOUT = 2, 5
    settings.ROUTING_ATTEMPT_TIMEOUT = 60

    def endpoint(provider: str, tps: int) -> EndpointSnap:
        return EndpointSnap(
            id=0,
            model_id="m",
            provider=provider,
            provider_name=provider,
            region="",
            wire="openai",
            target=None,
            simulated=True,
            input_price=1,
            cached_input_price=1,
            cache_write_price=1,
            cache_write_1h_price=1,
            output_price=1,
            reasoning_price=1,
            context_window=100_000,
            max_output_tokens=64_000,
            nominal_latency_ms=300,
            nominal_throughput_tps=tps,
        )

    fast, slow = endpoint("fast", 400), endpoint("slow", 100)
    health = HealthBook()
    # A short answer keeps the configured floor.
    assert hold_ttl_seconds([fast, slow], max_tokens=1000, health=health) == 900
    # 64K tokens from the slowest candidate at a quarter of its 100 tokens/s, plus two attempts'
    # timeouts: far longer than the floor.
    assert hold_ttl_seconds([fast, slow], max_tokens=64_000, health=health) == 2560 + 130
    # Measured slower than advertised: the measurement counts.
    for _ in range(3):
        health.get(fast.key).add(Outcome(at=time.monotonic(), ok=True, tokens_per_second=40))
    assert hold_ttl_seconds([fast], max_tokens=64_000, health=health) == 64_000 / 10 + 130
