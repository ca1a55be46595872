"""Every organization is under its plan's RPM/TPM limits (staff raise them per organization),
so one runaway client can't starve the others; every /v1 answer says where it stands."""

from __future__ import annotations

import io
import json

import httpx
from django.urls import reverse

from accounts import services as account_services
from accounts.api_key_auth import key_cache
from accounts.models import AuditLog, Organization
from billing import services as billing_services
from billing.holds import org_snapshots
from billing.models import BillingAccount, Plan
from routing.batches.tasks import batch_run
from tests.factories import UserFactory

HERO = "google/gemini-3.1-flash-lite"
BODY = {"model": HERO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def _post(base_url: str, secret: str, **extra) -> httpx.Response:
    return httpx.post(
        f"{base_url}/chat/completions",
        json=BODY | extra,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def _plan_rpm(organization: Organization, rpm: int) -> None:
    """Give the organization's plan a small RPM limit, seen by the gateway at once."""
    account = billing_services.billing_account_for(organization=organization)
    Plan.objects.filter(pk=account.plan_id).update(rpm_limit=rpm)
    org_snapshots.refresh(organization.id)


def test_a_key_without_limits_answers_with_its_plans_limits(gateway):
    base_url, secret = gateway  # a key with no limits of its own, in an org with none
    answer = _post(base_url, secret)
    assert answer.status_code == 200
    assert answer.headers["x-ratelimit-limit-requests"] == "1000"
    assert answer.headers["x-ratelimit-remaining-requests"] == "999"
    assert answer.headers["x-ratelimit-reset-requests"].endswith("ms")
    assert answer.headers["x-ratelimit-limit-tokens"] == "20000000"
    assert int(answer.headers["x-ratelimit-remaining-tokens"]) < 20_000_000
    assert answer.headers["x-ratelimit-reset-tokens"]

    with httpx.stream(
        "POST",
        f"{base_url}/chat/completions",
        json=BODY | {"stream": True},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    ) as streamed:
        assert streamed.status_code == 200
        streamed.read()
    assert streamed.headers["x-ratelimit-limit-requests"] == "1000"
    # 1,000 a minute refill one every 60 ms: about 998 left.
    assert 990 <= int(streamed.headers["x-ratelimit-remaining-requests"]) <= 999
    assert streamed.headers["x-ratelimit-limit-tokens"] == "20000000"

    embedded = httpx.post(
        f"{base_url}/embeddings",
        json={"model": "openai/text-embedding-3-small", "input": "hello"},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert embedded.status_code == 200, embedded.text
    assert 990 <= int(embedded.headers["x-ratelimit-remaining-requests"]) <= 999


def test_a_postpaid_organization_has_ten_times_the_room(gateway, alice):
    base_url, secret = gateway
    billing_services.billing_account_set_plan(
        organization=alice.org, plan=Plan.objects.get(slug="postpaid-metered")
    )
    org_snapshots.refresh(alice.org.id)
    answer = _post(base_url, secret)
    assert answer.status_code == 200
    assert answer.headers["x-ratelimit-limit-requests"] == "10000"
    assert answer.headers["x-ratelimit-limit-tokens"] == "200000000"


def test_an_organization_over_its_plan_rpm_gets_429_and_others_are_served(gateway, alice, charlie):
    base_url, secret = gateway
    _plan_rpm(alice.org, 3)
    _, second = account_services.api_key_create(
        organization=alice.org, created_by=alice.user, name="runaway"
    )
    _, other_org = account_services.api_key_create(
        organization=charlie.org, created_by=charlie.user, name="neighbour"
    )
    for secret_used in (secret, second, secret):
        assert _post(base_url, secret_used).status_code == 200
    refused = _post(base_url, second)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "3"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert "org rpm" in error["message"]

    # Another tenant on the same plan has its own minute.
    _plan_rpm(charlie.org, 3)
    served = _post(base_url, other_org)
    assert served.status_code == 200
    assert served.headers["x-ratelimit-remaining-requests"] == "2"


def test_an_organization_may_narrow_its_plan_limit_but_not_widen_it(gateway, alice):
    base_url, secret = gateway
    _plan_rpm(alice.org, 3)
    account_services.organization_set_rate_limits(
        organization=Organization.objects.get(pk=alice.org.pk),
        actor=alice.user,
        rpm_limit=50,
        tpm_limit=None,
    )
    key_cache.clear_local()
    answer = _post(base_url, secret)
    assert answer.headers["x-ratelimit-limit-requests"] == "3"


def test_staff_raise_an_organizations_limit_in_the_admin(gateway, alice, client):
    base_url, secret = gateway
    _plan_rpm(alice.org, 2)
    assert _post(base_url, secret).status_code == 200
    assert _post(base_url, secret).status_code == 200
    assert _post(base_url, secret).status_code == 429

    staff = UserFactory(email="ops@example.com", is_staff=True, is_superuser=True)
    client.force_login(staff)
    account = BillingAccount.objects.get(organization=alice.org)
    url = reverse("admin:billing_billingaccount_change", args=[account.pk])
    assert client.get(url).status_code == 200
    saved = client.post(url, {"rpm_limit_override": "5", "tpm_limit_override": ""})
    assert saved.status_code == 302, saved.content.decode()[:2000]

    account.refresh_from_db()
    assert (account.rpm_limit_override, account.tpm_limit_override) == (5, None)
    audit = AuditLog.objects.get(organization=alice.org, action=AuditLog.Action.ORG_LIMITS_CHANGED)
    assert audit.actor == staff
    assert audit.data["to"] == {"rpm": 5, "tpm": None}

    # Seen by the gateway at once: 5 a minute, of which 2 are used.
    raised = _post(base_url, secret)
    assert raised.status_code == 200
    assert raised.headers["x-ratelimit-limit-requests"] == "5"
    assert _post(base_url, secret).status_code == 200
    assert _post(base_url, secret).status_code == 200
    assert _post(base_url, secret).status_code == 429


def test_an_organizations_member_cannot_change_its_plan_limits(gateway, alice, client):
    client.force_login(alice.user)
    account = BillingAccount.objects.get(organization=alice.org)
    url = reverse("admin:billing_billingaccount_change", args=[account.pk])
    assert client.post(url, {"rpm_limit_override": "100000"}).status_code == 302  # to login
    account.refresh_from_db()
    assert account.rpm_limit_override is None


def test_a_batch_is_not_failed_by_limits_sized_for_interactive_traffic(
    openai_client, gateway, alice
):
    base_url, secret = gateway
    _plan_rpm(alice.org, 2)
    lines = [
        {
            "custom_id": f"item-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": BODY | {"messages": [{"role": "user", "content": f"question {i}"}]},
        }
        for i in range(6)
    ]
    file_id = openai_client.files.create(
        file=("in.jsonl", io.BytesIO(b"".join(json.dumps(x).encode() + b"\n" for x in lines))),
        purpose="batch",
    ).id
    batch = openai_client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch_run(batch.id) == "completed"
    done = openai_client.batches.retrieve(batch.id)
    assert (done.request_counts.completed, done.request_counts.failed) == (6, 0)

    # Nor does it use up the interactive minute: the organization's 2 requests are still there.
    assert _post(base_url, secret).status_code == 200
    assert _post(base_url, secret).status_code == 200
    assert _post(base_url, secret).status_code == 429
