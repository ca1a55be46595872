"""The usage page: requests, tokens and cost by model, key or provider over 7, 30 or 90 days
and per day, read from the rollups (so it survives the logs' purge), with a CSV export, pinned
query counts and 404 for another tenant."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import services as account_services
from observability.models import RequestLog
from observability.services import request_logs_write
from observability.writer.records import event_to_record
from tests.observability.helpers import make_event

OTHER = "anthropic/claude-3.5-haiku"


@pytest.fixture(autouse=True)
def _quiet_writer(settings):
    settings.OBSERVABILITY_LIVE_UPDATES = False


def _at(days_ago: float) -> float:
    return timezone.now().timestamp() - days_ago * 86400


@pytest.fixture
def traffic(alice, charlie):
    prod, _ = account_services.api_key_create(
        organization=alice.org, created_by=alice.user, name="prod"
    )
    ci, _ = account_services.api_key_create(
        organization=alice.org, created_by=alice.user, name="ci"
    )

    def event(org, key=None, days_ago=0, **fields):
        at = _at(days_ago)
        key_id = str(key.id) if key else str(uuid.uuid4())
        return make_event(org, key_id=key_id, received_at=at, finished_at=at, **fields)

    other = {"model": OTHER, "requested_model": OTHER, "provider": "anthropic"}
    events = [
        # Today: two on the default model with the prod key, one failed on another.
        event(alice.org, prod),
        event(alice.org, prod),
        event(alice.org, ci, cost_nanousd=1_000_000, **other),
        event(alice.org, ci, cost_nanousd=0, error="overloaded", **other),
        # Ten days ago, and forty (inside 90 days, outside 30).
        event(alice.org, prod, days_ago=10),
        event(alice.org, prod, days_ago=40),
        # Another organization's: never counted here.
        event(charlie.org, cost_nanousd=9_999_999),
    ]
    request_logs_write(records=[event_to_record(e) for e in events])
    return {"prod": prod, "ci": ci}


def _url(org, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("org_usage", kwargs={"org_id": org.id}) + (f"?{query}" if query else "")


def test_usage_by_model_over_30_days(login, alice, traffic):
    response = login(alice.user).get(_url(alice.org))
    assert response.status_code == 200
    usage = response.context["usage"]
    rows = {row["name"]: row for row in usage["rows"]}
    assert set(rows) == {"google/gemini-3.1-flash-lite", OTHER}
    hero = rows["google/gemini-3.1-flash-lite"]
    assert (hero["requests"], hero["prompt_tokens"], hero["completion_tokens"]) == (3, 36, 90)
    assert hero["cost_usd"] == "0.0000138"  # 3 x 4,600 nano-USD, exact
    other = rows[OTHER]
    assert (other["requests"], other["errors"], other["cost_usd"]) == (2, 1, "0.001")
    # Sorted by cost, with each one's share of it.
    assert [row["name"] for row in usage["rows"]] == [OTHER, "google/gemini-3.1-flash-lite"]
    assert other["cost_share"] == 98.6
    assert usage["total"]["requests"] == 5 and usage["total"]["cost_usd"] == "0.0010138"
    days = {day["day"]: day for day in usage["days"]}
    assert len(days) == 30
    today = datetime.now(UTC).date()
    assert days[today]["requests"] == 4
    body = response.content.decode()
    assert 'data-testid="usage-requests">5<' in body
    # The per-day table shows the days with traffic: today and ten days ago.
    assert body.count("<tr data-day=") == 2
    assert f'<tr data-day="{today.isoformat()}">' in body


def test_usage_by_key_names_the_keys_and_90_days_reach_further(login, alice, traffic):
    client = login(alice.user)
    usage = client.get(_url(alice.org, by="key")).context["usage"]
    by_label = {row["label"]: row["requests"] for row in usage["rows"]}
    assert by_label == {"prod": 3, "ci": 2}
    usage = client.get(_url(alice.org, by="key", days=90)).context["usage"]
    assert {row["label"]: row["requests"] for row in usage["rows"]} == {"prod": 4, "ci": 2}
    usage = client.get(_url(alice.org, by="provider", days=7)).context["usage"]
    assert {row["name"]: row["requests"] for row in usage["rows"]} == {
        "google-ai-studio": 2,
        "anthropic": 2,
    }


def test_usage_is_read_from_rollups_and_outlives_the_logs(login, alice, traffic):
    RequestLog.objects.filter(organization=alice.org).delete()  # as the retention purge does
    usage = login(alice.user).get(_url(alice.org)).context["usage"]
    assert usage["total"]["requests"] == 5


def test_unknown_parameters_fall_back_to_30_days_by_model(login, alice, traffic):
    response = login(alice.user).get(_url(alice.org, days="9999", by="nonsense"))
    assert response.status_code == 200
    assert response.context["days"] == 30 and response.context["by"] == "model"


def test_the_usage_page_has_a_fixed_number_of_queries(
    login, alice, traffic, django_assert_num_queries
):
    client = login(alice.user)
    client.get(_url(alice.org, by="key"))  # warm the session
    # session, user, membership, key names, the breakdown, the days, the sidebar's
    # organizations: the same however many requests, models and keys there are.
    with django_assert_num_queries(7):
        client.get(_url(alice.org, by="key"))
    with django_assert_num_queries(6):
        client.get(_url(alice.org, by="model"))  # no key names needed
    request_logs_write(
        records=[
            event_to_record(make_event(alice.org, model=f"m/{i}", provider=f"p{i}"))
            for i in range(30)
        ]
    )
    with django_assert_num_queries(6):
        response = client.get(_url(alice.org, by="model"))
    assert len(response.context["usage"]["rows"]) == 32


def test_the_csv_export_has_a_row_per_day_model_provider_and_key(login, alice, traffic):
    response = login(alice.user).get(
        reverse("org_usage_export", kwargs={"org_id": alice.org.id}) + "?days=90"
    )
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert sum(int(row["requests"]) for row in rows) == 6
    anthropic = [row for row in rows if row["provider"] == "anthropic"]
    assert len(anthropic) == 1  # two requests, one day, one key
    assert anthropic[0]["key"] == "ci" and anthropic[0]["cost_usd"] == "0.001"
    assert anthropic[0]["errors"] == "1"


def test_another_tenant_gets_404(login, alice, charlie, traffic):
    client = login(charlie.user)
    assert client.get(_url(alice.org)).status_code == 404
    export = reverse("org_usage_export", kwargs={"org_id": alice.org.id})
    assert client.get(export).status_code == 404
