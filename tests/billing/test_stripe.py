"""Stripe through respx on the SDK's own HTTPX client (no network: an unmocked call fails), and
webhooks signed with the SDK's own helper."""

from __future__ import annotations

import concurrent.futures
import json
import random
import time
from urllib.parse import parse_qs

import pytest
import respx
import stripe
from django.db import connection
from django.utils import timezone

from accounts.models import AuditLog, Role
from billing import selectors, services
from billing.models import LedgerEntry, StripeEvent, TopUp
from billing.stripe_client import STRIPE_API_VERSION

pytestmark = pytest.mark.filterwarnings(
    "ignore:Use .content=<...>. to upload raw bytes/text content.:DeprecationWarning"
)

API = "https://api.stripe.com"
SECRET = "whsec_test_only"
NANO_PER_CENT = 10_000_000


@pytest.fixture
def stripe_on(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_not_a_real_key"
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def form(request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def mock_customer(mock, customer_id: str = "cus_test_1"):
    return mock.post(f"{API}/v1/customers").respond(
        200, json={"id": customer_id, "object": "customer"}
    )


def mock_checkout(mock):
    return mock.post(f"{API}/v1/checkout/sessions").respond(
        200,
        json={
            "id": "cs_test_1",
            "object": "checkout.session",
            "url": "https://checkout.stripe.com/c/pay/cs_test_1",
        },
    )


# --- Checkout ---------------------------------------------------------------------------


def test_checkout_sends_the_amount_customer_metadata_and_our_idempotency_keys(stripe_on, alice):
    customers = mock_customer(stripe_on)
    sessions = mock_checkout(stripe_on)
    topup, url = services.topup_checkout_create(
        organization=alice.org,
        amount_cents=2500,
        created_by_id=alice.user.pk,
        success_url="https://app.example/ok",
        cancel_url="https://app.example/no",
    )
    assert url == "https://checkout.stripe.com/c/pay/cs_test_1"
    customer = customers.calls.last.request
    assert customer.headers["Idempotency-Key"] == f"customer-{alice.org.id}"
    assert form(customer)["metadata[organization_id]"] == str(alice.org.id)
    sent = sessions.calls.last.request
    body = form(sent)
    assert sent.headers["Idempotency-Key"] == f"topup-{topup.id}-checkout"
    assert sent.headers["Stripe-Version"] == STRIPE_API_VERSION
    assert body["mode"] == "payment"
    assert body["customer"] == "cus_test_1"
    assert body["line_items[0][price_data][unit_amount]"] == "2500"
    assert body["line_items[0][price_data][currency]"] == "usd"
    assert body["payment_intent_data[setup_future_usage]"] == "off_session"
    assert body["payment_intent_data[metadata][organization_id]"] == str(alice.org.id)
    assert body["metadata[topup_id]"] == str(topup.id)
    assert body["client_reference_id"] == str(topup.id)
    # Creating a session credits nothing.
    assert not LedgerEntry.objects.filter(organization=alice.org, kind="topup").exists()
    # The customer is made once per organization.
    services.topup_checkout_create(
        organization=alice.org,
        amount_cents=500,
        created_by_id=None,
        success_url="https://app.example/ok",
        cancel_url="https://app.example/no",
    )
    assert customers.call_count == 1


@pytest.mark.parametrize("cents", [499, 100_001, 0, -500])
def test_checkout_amounts_out_of_range_are_refused(stripe_on, alice, cents):
    with pytest.raises(services.BillingError, match=r"between \$5 and \$1,000"):
        services.topup_checkout_create(
            organization=alice.org,
            amount_cents=cents,
            created_by_id=None,
            success_url="https://a.example/",
            cancel_url="https://a.example/",
        )
    assert not TopUp.objects.exists()


def test_the_buy_button_redirects_to_checkout_and_the_success_page_credits_nothing(
    stripe_on, alice, login
):
    mock_customer(stripe_on)
    mock_checkout(stripe_on)
    client = login(alice.user)
    services.billing_account_for(organization=alice.org)  # alice's first: $1 free grant
    before = selectors.ledger_sum(organization=alice.org)
    response = client.post(f"/o/{alice.org.id}/billing/buy", {"custom": "12.50"})
    assert response.status_code == 302
    assert response.url == "https://checkout.stripe.com/c/pay/cs_test_1"
    page = client.get(f"/o/{alice.org.id}/billing/?topup=success")
    assert b"appear here as soon as Stripe confirms" in page.content
    assert selectors.ledger_sum(organization=alice.org) == before
    refused = client.post(f"/o/{alice.org.id}/billing/buy", {"custom": "4.99"}, follow=True)
    assert b"Buy between $5 and $1,000" in refused.content


# --- Webhooks -----------------------------------------------------------------------------


def event(event_id: str, kind: str, obj: dict) -> str:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": kind,
            "created": int(time.time()),
            "livemode": False,
            "api_version": STRIPE_API_VERSION,
            "data": {"object": obj},
        }
    )


def checkout_completed(org, topup_id, *, event_id="evt_cs_1", cents=2500, pi="pi_test_1"):
    return event(
        event_id,
        "checkout.session.completed",
        {
            "id": "cs_test_1",
            "object": "checkout.session",
            "mode": "payment",
            "payment_status": "paid",
            "amount_total": cents,
            "payment_intent": pi,
            "metadata": {"organization_id": str(org.id), "topup_id": str(topup_id)},
        },
    )


def payment_succeeded(org, topup_id, *, event_id="evt_pi_1", cents=2500, pi="pi_test_1"):
    return event(
        event_id,
        "payment_intent.succeeded",
        {
            "id": pi,
            "object": "payment_intent",
            "amount_received": cents,
            "metadata": {"organization_id": str(org.id), "topup_id": str(topup_id)},
        },
    )


def deliver(client, payload: str, *, secret: str = SECRET, signature: str | None = None):
    header = signature or stripe.WebhookSignature.generate_signature_header(payload, secret)
    return client.post(
        "/billing/stripe/webhook/",
        data=payload,
        content_type="application/json",
        headers={"Stripe-Signature": header},
    )


def topups(org) -> list[int]:
    return list(
        LedgerEntry.objects.filter(organization=org, kind="topup").values_list(
            "amount_nanousd", flat=True
        )
    )


def test_a_signed_checkout_event_credits_the_payment(stripe_on, alice, client):
    topup = TopUp.objects.create(organization=alice.org, amount_cents=2500)
    response = deliver(client, checkout_completed(alice.org, topup.id))
    assert response.status_code == 200
    assert topups(alice.org) == [2500 * NANO_PER_CENT]
    topup.refresh_from_db()
    assert (topup.status, topup.payment_intent_id) == ("paid", "pi_test_1")
    assert StripeEvent.objects.get(id="evt_cs_1").organization_id == alice.org.id
    assert selectors.billing_check() == []


def test_tampered_wrong_secret_and_stale_events_are_refused(stripe_on, alice, client):
    payload = checkout_completed(alice.org, 1)
    signature = stripe.WebhookSignature.generate_signature_header(payload, SECRET)
    tampered = payload.replace("2500", "250000")
    assert deliver(client, tampered, signature=signature).status_code == 400
    assert deliver(client, payload, secret="whsec_someone_else").status_code == 400
    stale = stripe.WebhookSignature.generate_signature_header(
        payload, SECRET, timestamp=int(time.time()) - 3600
    )
    assert deliver(client, payload, signature=stale).status_code == 400
    assert deliver(client, payload, signature="garbage").status_code == 400
    assert topups(alice.org) == []
    assert not StripeEvent.objects.exists()


@pytest.mark.parametrize("first", ["checkout", "payment_intent"])
def test_one_payment_described_by_two_events_is_credited_once(stripe_on, alice, client, first):
    topup = TopUp.objects.create(organization=alice.org, amount_cents=2500)
    payloads = [checkout_completed(alice.org, topup.id), payment_succeeded(alice.org, topup.id)]
    if first == "payment_intent":
        payloads.reverse()
    assert [deliver(client, p).content for p in payloads] == [b"ok", b"ok"]
    assert topups(alice.org) == [2500 * NANO_PER_CENT]
    assert StripeEvent.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_each_event_three_times_shuffled_and_concurrent_credits_once(stripe_on, alice):
    from django.test import Client

    topup = TopUp.objects.create(organization=alice.org, amount_cents=2500)
    other = TopUp.objects.create(organization=alice.org, amount_cents=10_000)
    payloads = [
        checkout_completed(alice.org, topup.id),
        payment_succeeded(alice.org, topup.id),
        checkout_completed(alice.org, other.id, event_id="evt_cs_2", cents=10_000, pi="pi_2"),
        payment_succeeded(alice.org, other.id, event_id="evt_pi_2", cents=10_000, pi="pi_2"),
    ] * 3
    random.Random(4).shuffle(payloads)

    def send(payload):
        try:
            return deliver(Client(), payload).status_code
        finally:
            connection.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(send, payloads))
    assert statuses == [200] * 12
    assert sorted(topups(alice.org)) == [2500 * NANO_PER_CENT, 10_000 * NANO_PER_CENT]
    assert StripeEvent.objects.count() == 4
    assert selectors.billing_check() == []


def test_events_for_someone_else_or_unpaid_change_nothing(stripe_on, alice, client):
    unpaid = json.loads(checkout_completed(alice.org, 1))
    unpaid["data"]["object"]["payment_status"] = "unpaid"
    assert deliver(client, json.dumps(unpaid)).status_code == 200
    foreign = event("evt_x", "payment_intent.succeeded", {"id": "pi_x", "amount_received": 1})
    assert deliver(client, foreign).status_code == 200
    assert deliver(client, event("evt_y", "customer.created", {"id": "cus_1"})).status_code == 200
    assert topups(alice.org) == []


# --- Portal, invoices, pages --------------------------------------------------------------


def test_the_portal_button_opens_a_portal_session(stripe_on, alice, login):
    mock_customer(stripe_on)
    portal = stripe_on.post(f"{API}/v1/billing_portal/sessions").respond(
        200,
        json={
            "id": "bps_1",
            "object": "billing_portal.session",
            "url": "https://billing.stripe.com/p/s",
        },
    )
    response = login(alice.user).post(f"/o/{alice.org.id}/billing/portal")
    assert response.status_code == 302
    assert response.url == "https://billing.stripe.com/p/s"
    body = form(portal.calls.last.request)
    assert body["customer"] == "cus_test_1"
    assert body["return_url"].endswith(f"/o/{alice.org.id}/billing/")


def test_the_billing_page_lists_invoices(stripe_on, alice, login):
    account = services.billing_account_for(organization=alice.org)
    account.stripe_customer_id = "cus_test_1"
    account.save()
    invoices = stripe_on.get(f"{API}/v1/invoices").respond(
        200,
        json={
            "object": "list",
            "url": "/v1/invoices",
            "has_more": False,
            "data": [
                {
                    "id": "in_1",
                    "object": "invoice",
                    "number": "LLM-0001",
                    "status": "paid",
                    "amount_due": 2500,
                    "created": 1795000000,
                    "hosted_invoice_url": "https://invoice.stripe.com/i/1",
                }
            ],
        },
    )
    page = login(alice.user).get(f"/o/{alice.org.id}/billing/")
    assert page.status_code == 200
    assert b"LLM-0001" in page.content and b"https://invoice.stripe.com/i/1" in page.content
    assert invoices.calls.last.request.url.params["customer"] == "cus_test_1"


def test_without_a_stripe_key_billing_is_off_and_staff_can_grant(alice, login, settings):
    settings.STRIPE_SECRET_KEY = ""
    client = login(alice.user)
    page = client.get(f"/o/{alice.org.id}/billing/")
    assert b'data-testid="billing-off"' in page.content
    assert b'data-testid="buy-presets"' not in page.content
    assert b'data-testid="grant-form"' not in page.content  # not staff
    assert (
        client.post(f"/o/{alice.org.id}/billing/grant", {"amount": "5", "reason": "x"}).status_code
        == 403
    )

    alice.user.is_staff = True
    alice.user.save()
    before = selectors.ledger_sum(organization=alice.org)
    response = client.post(
        f"/o/{alice.org.id}/billing/grant", {"amount": "20.00", "reason": "Pilot customer"}
    )
    assert response.status_code == 302
    assert selectors.ledger_sum(organization=alice.org) == before + 20 * 10**9
    audit = AuditLog.objects.get(organization=alice.org, action="billing.credits_granted")
    assert audit.actor == alice.user and audit.data["reason"] == "Pilot customer"
    assert client.post(f"/o/{alice.org.id}/billing/buy", {"preset": "10"}, follow=True)


def test_the_monthly_limit_form_sets_the_limit_and_is_audited(alice, login):
    client = login(alice.user)
    client.post(f"/o/{alice.org.id}/billing/limit", {"monthly_limit": "150"})
    account = services.billing_account_for(organization=alice.org)
    assert account.monthly_limit_nanousd == 150 * 10**9
    assert AuditLog.objects.filter(action="billing.limit_changed").count() == 1
    page = client.get(f"/o/{alice.org.id}/billing/")
    assert b"of $150.00" in page.content
    client.post(f"/o/{alice.org.id}/billing/limit", {"monthly_limit": ""})
    account.refresh_from_db()
    assert account.monthly_limit_nanousd is None
    bad = client.post(f"/o/{alice.org.id}/billing/limit", {"monthly_limit": "ten"}, follow=True)
    assert b"must be an amount in dollars" in bad.content


def test_only_owners_and_the_billing_role_see_billing(alice, bob, charlie, login):
    assert login(bob.user).get(f"/o/{alice.org.id}/billing/").status_code == 403  # developer
    bob.membership.role = Role.BILLING
    bob.membership.save()
    assert login(bob.user).get(f"/o/{alice.org.id}/billing/").status_code == 200
    assert login(charlie.user).get(f"/o/{alice.org.id}/billing/").status_code == 404


def test_the_billing_page_query_count_does_not_grow_with_keys(
    alice, login, django_assert_max_num_queries, settings
):
    from accounts import services as account_services

    settings.STRIPE_SECRET_KEY = ""
    for i in range(5):
        account_services.api_key_create(
            organization=alice.org,
            created_by=alice.user,
            name=f"k{i}",
            spend_limit_nanousd=10**9,
            spend_limit_period=["daily", "weekly", "monthly", "total", "daily"][i],
        )
    client = login(alice.user)
    client.get(f"/o/{alice.org.id}/billing/")
    with django_assert_max_num_queries(18):  # two of them: open disputes, ever funded
        response = client.get(f"/o/{alice.org.id}/billing/")
    assert response.content.count(b'aria-label="Used"') == 5


# --- Auto-recharge ------------------------------------------------------------------------


@pytest.fixture
def card_on_file(stripe_on, alice, client):
    """Alice bought credits once: the webhook saved her card for off-session use."""
    account = services.billing_account_for(organization=alice.org)
    account.stripe_customer_id = "cus_test_1"
    account.save()
    topup = TopUp.objects.create(organization=alice.org, amount_cents=1000)
    payload = json.loads(payment_succeeded(alice.org, topup.id, cents=1000))
    payload["data"]["object"]["payment_method"] = "pm_card_saved"
    assert deliver(client, json.dumps(payload)).status_code == 200
    account.refresh_from_db()
    assert account.stripe_payment_method_id == "pm_card_saved"
    return account


def _spend_down_to(org, balance_nanousd: int) -> None:
    from billing.holds.store import UsageRecord

    current = selectors.ledger_sum(organization=org)
    services.usage_entries_write(
        records=[
            UsageRecord(
                reference=f"gen-spend-{current}",
                organization_id=str(org.id),
                key_id=None,
                cost_nanousd=current - balance_nanousd,
                occurred_at=timezone.now(),
            )
        ]
    )


def test_auto_recharge_charges_the_saved_card_once_below_the_threshold(
    card_on_file, stripe_on, alice, login, django_capture_on_commit_callbacks
):
    login(alice.user).post(
        f"/o/{alice.org.id}/billing/auto-recharge",
        {"enabled": "on", "threshold": "5", "amount": "20"},
    )
    card_on_file.refresh_from_db()
    assert card_on_file.auto_recharge_enabled
    intents = stripe_on.post(f"{API}/v1/payment_intents").respond(
        200, json={"id": "pi_recharge_1", "object": "payment_intent", "status": "succeeded"}
    )
    with django_capture_on_commit_callbacks(execute=True):
        _spend_down_to(alice.org, 4 * 10**9)  # below $5
    assert intents.call_count == 1
    sent = intents.calls.last.request
    body = form(sent)
    assert (body["amount"], body["currency"], body["off_session"], body["confirm"]) == (
        "2000", "usd", "true", "true",
    )  # fmt: skip
    assert body["payment_method"] == "pm_card_saved" and body["customer"] == "cus_test_1"
    recharge_id = body["metadata[recharge_id]"]
    assert sent.headers["Idempotency-Key"] == f"recharge-{recharge_id}"
    assert selectors.ledger_sum(organization=alice.org) == 24 * 10**9
    # The webhook for the same payment changes nothing.
    webhook = event(
        "evt_recharge",
        "payment_intent.succeeded",
        {
            "id": "pi_recharge_1",
            "amount_received": 2000,
            "metadata": {"organization_id": str(alice.org.id), "recharge_id": recharge_id},
        },
    )
    from django.test import Client

    assert deliver(Client(), webhook).status_code == 200
    assert selectors.ledger_sum(organization=alice.org) == 24 * 10**9
    # Above the threshold again: no second charge.
    services.auto_recharge_run(organization_id=alice.org.id)
    assert intents.call_count == 1


def test_authentication_required_turns_auto_recharge_off_and_tells_the_owner(
    card_on_file, stripe_on, alice, login, mailoutbox, django_capture_on_commit_callbacks
):
    services.auto_recharge_configure(
        organization=alice.org,
        enabled=True,
        threshold_nanousd=5 * 10**9,
        amount_cents=2000,
        actor=alice.user,
    )
    stripe_on.post(f"{API}/v1/payment_intents").respond(
        402,
        json={
            "error": {
                "type": "card_error",
                "code": "authentication_required",
                "message": "This payment requires authentication.",
                "payment_intent": {
                    "id": "pi_auth",
                    "object": "payment_intent",
                    "status": "requires_payment_method",
                },
            }
        },
    )
    with django_capture_on_commit_callbacks(execute=True):
        _spend_down_to(alice.org, 1 * 10**9)
    card_on_file.refresh_from_db()
    assert not card_on_file.auto_recharge_enabled
    assert "authenticate" in card_on_file.auto_recharge_stopped_reason
    assert selectors.ledger_sum(organization=alice.org) == 1 * 10**9  # nothing credited
    [mail] = mailoutbox
    assert mail.to == ["alice@example.com"] and "Auto-recharge is off" in mail.subject
    page = login(alice.user).get(f"/o/{alice.org.id}/billing/")
    assert b'data-testid="auto-recharge-stopped"' in page.content
    assert AuditLog.objects.filter(action="billing.auto_recharge").count() == 2


def test_auto_recharge_needs_a_saved_card(stripe_on, alice):
    with pytest.raises(services.BillingError, match="Buy credits once"):
        services.auto_recharge_configure(
            organization=alice.org,
            enabled=True,
            threshold_nanousd=10**9,
            amount_cents=2000,
            actor=alice.user,
        )


# --- Postpaid meters ----------------------------------------------------------------------


def test_postpaid_usage_goes_to_the_meter_in_batches_and_a_failed_batch_is_resent(
    stripe_on, alice, settings
):
    from billing.holds.store import UsageRecord
    from billing.models import MeterReported, Plan

    settings.BILLING_METER_BATCH = 2
    services.billing_account_set_plan(
        organization=alice.org, plan=Plan.objects.get(kind=Plan.Kind.POSTPAID)
    )
    account = services.billing_account_for(organization=alice.org)
    account.stripe_customer_id = "cus_post"
    account.save()
    services.usage_entries_write(
        records=[
            UsageRecord(
                reference=f"gen-meter-{i}",
                organization_id=str(alice.org.id),
                key_id=None,
                cost_nanousd=1000 * (i + 1),
                occurred_at=timezone.now(),
            )
            for i in range(3)
        ]
    )
    ids = list(
        LedgerEntry.objects.filter(reference__startswith="gen-meter-")
        .order_by("id")
        .values_list("id", flat=True)
    )
    stripe_on.post(f"{API}/v2/billing/meter_event_session").respond(
        200,
        json={
            "id": "mes_1",
            "object": "v2.billing.meter_event_session",
            "authentication_token": "tok_session",
            "created": "2026-11-24T00:00:00.000Z",
            "expires_at": "2026-11-24T00:15:00.000Z",
            "livemode": False,
        },
    )
    stream = stripe_on.post("https://meter-events.stripe.com/v2/billing/meter_event_stream")
    stream.side_effect = [
        respx.MockResponse(200, json={}),
        respx.MockResponse(500, json={"error": {"type": "api_error", "message": "down"}}),
        respx.MockResponse(200, json={}),
    ]
    with pytest.raises(stripe.StripeError):
        services.meter_usage_report()
    assert MeterReported.objects.count() == 2  # the first batch got through
    assert services.meter_usage_report() == 1  # the failed one, sent again
    assert services.meter_usage_report() == 0
    sent = [json.loads(call.request.content)["events"] for call in stream.calls]
    identifiers = [[e["identifier"] for e in batch] for batch in sent]
    assert identifiers == [
        [f"usage-{ids[0]}", f"usage-{ids[1]}"],
        [f"usage-{ids[2]}"],
        [f"usage-{ids[2]}"],
    ]
    assert [e["payload"]["value"] for e in sent[0]] == ["1000", "2000"]
    assert {e["payload"]["stripe_customer_id"] for batch in sent for e in batch} == {"cus_post"}
    assert stream.calls[0].request.headers["Authorization"] == "Bearer tok_session"
