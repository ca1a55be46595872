"""The overview, the logs explorer (filters, keyset pages with pinned query counts, detail
with the attempt waterfall, CSV export) and GET /v1/generation; another tenant gets 404."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.test import AsyncClient
from django.urls import reverse
from django.utils import timezone

from accounts import services as account_services
from observability.services import request_logs_write
from observability.writer.records import event_to_record
from tests.observability.helpers import attempt, make_event


@pytest.fixture(autouse=True)
def _quiet_writer(settings):
    settings.OBSERVABILITY_LIVE_UPDATES = False


@pytest.fixture
def prod_key(alice):
    key, secret = account_services.api_key_create(
        organization=alice.org, created_by=alice.user, name="prod"
    )
    return key, secret


def write(*events):
    return request_logs_write(records=[event_to_record(e) for e in events])


def seconds_ago(seconds: float) -> float:
    return timezone.now().timestamp() - seconds


@pytest.fixture
def acme_logs(alice, prod_key):
    key, _ = prod_key
    events = []
    for i in range(7):
        at = seconds_ago(600 + i * 60)
        events.append(
            make_event(
                alice.org,
                key_id=str(key.id),
                received_at=at,
                finished_at=at + 0.4,
                model="anthropic/claude-3.5-haiku" if i % 2 else "google/gemini-3.1-flash-lite",
                provider="anthropic" if i % 2 else "google-ai-studio",
                error="overloaded" if i == 3 else None,
            )
        )
    fallback_at = seconds_ago(30)
    events.append(
        make_event(
            alice.org,
            key_id=str(key.id),
            received_at=fallback_at,
            finished_at=fallback_at + 1.0,
            provider="vertex-ai",
            attempts=(
                attempt("google-ai-studio", "overloaded", 500, 200.0, started_at=fallback_at),
                attempt("vertex-ai", "ok", None, 700.0, started_at=fallback_at + 0.25),
            ),
        )
    )
    write(*events)
    return events


def test_the_overview_shows_the_30_day_figures(login, alice, acme_logs):
    response = login(alice.user).get(reverse("org_overview", kwargs={"org_id": alice.org.id}))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="fig-requests">8<' in body
    assert 'data-testid="fig-uptime">87.5%<' in body
    assert 'id="live-config"' in body
    assert f"/ws/orgs/{alice.org.id}/live/" in body
    assert acme_logs[-1].generation_id in body  # the latest requests


def test_the_overview_has_a_fixed_number_of_queries(
    login, alice, acme_logs, django_assert_num_queries
):
    client = login(alice.user)
    url = reverse("org_overview", kwargs={"org_id": alice.org.id})
    client.get(url)  # warm the session
    # session, user, membership, key names, the figures, the by-model table, the latest
    # requests, the charts' series (by model, by key), the sidebar's organizations: all from
    # rollups but the latest requests, however many requests and models there are.
    with django_assert_num_queries(10):
        client.get(url)
    write(*[make_event(alice.org, model=f"m/{i}", provider=f"p{i}") for i in range(30)])
    with django_assert_num_queries(10):
        response = client.get(url)
    assert response.context["figures"]["requests"] == 38


def test_the_logs_list_filters_and_pages(login, alice, acme_logs, prod_key):
    client = login(alice.user)
    url = reverse("org_logs", kwargs={"org_id": alice.org.id})
    everything = client.get(url)
    assert everything.status_code == 200
    assert everything.content.decode().count('data-testid="log-link"') == 8

    by_model = client.get(url, {"model": "anthropic/claude-3.5-haiku"})
    assert by_model.content.decode().count('data-testid="log-link"') == 3
    failed = client.get(url, {"status": "error"})
    assert failed.content.decode().count('data-testid="log-link"') == 1
    by_provider = client.get(url, {"provider": "vertex-ai"})
    assert acme_logs[-1].generation_id in by_provider.content.decode()
    by_key = client.get(url, {"key": str(prod_key[0].id)})
    assert by_key.content.decode().count('data-testid="log-link"') == 8
    recent = client.get(url, {"range": "1h", "since": ""})
    assert recent.content.decode().count('data-testid="log-link"') == 8
    since = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    last_minutes = client.get(url, {"since": since})
    assert last_minutes.content.decode().count('data-testid="log-link"') == 1


def test_pages_follow_the_keyset_cursor(login, alice, acme_logs, monkeypatch):
    from observability import views

    monkeypatch.setattr(views, "PAGE_SIZE", 3)
    client = login(alice.user)
    url = reverse("org_logs", kwargs={"org_id": alice.org.id})
    seen = []
    query = {}
    for _ in range(5):
        response = client.get(url, query)
        page = response.context["rows"]
        seen.extend(row["log"].generation_id for row in page)
        if not response.context["next_query"]:
            break
        query = dict(x.split("=", 1) for x in response.context["next_query"].split("&"))
        query = {k: v.replace("%2C", ",") for k, v in query.items()}
    expected = [e.generation_id for e in sorted(acme_logs, key=lambda e: -e.received_at)]
    assert seen == expected


def test_the_logs_list_has_a_fixed_number_of_queries(
    login, alice, acme_logs, django_assert_num_queries
):
    client = login(alice.user)
    url = reverse("org_logs", kwargs={"org_id": alice.org.id})
    client.get(url)  # warm the session
    # session, user, membership (the tenant gate), key names, filter options (rollups), the
    # page of logs, the sidebar's organizations: the same for 8 rows as for 48.
    with django_assert_num_queries(7):
        client.get(url)
    write(*[make_event(alice.org) for _ in range(40)])
    with django_assert_num_queries(7):
        response = client.get(url)
    assert len(response.context["rows"]) == 48


def test_the_detail_page_shows_the_attempt_waterfall(login, alice, acme_logs):
    fallback = acme_logs[-1]
    response = login(alice.user).get(
        reverse(
            "org_log_detail",
            kwargs={"org_id": alice.org.id, "generation_id": fallback.generation_id},
        )
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.count('data-testid="attempt"') == 2
    assert "google-ai-studio" in body and "vertex-ai" in body
    bars = response.context["waterfall"]["bars"]
    assert bars[0]["x"] == 0 and bars[1]["x"] == 250.0  # 250 ms into a 1000 ms request
    labels = [label for label, _ in response.context["waterfall"]["breakdown"]]
    assert "Failed attempts and fallback" in labels


def test_csv_export_streams_the_filtered_logs(transactional_db, alice, acme_logs):
    # Served as under ASGI: an async iterator of CSV lines, chunk by chunk.
    client = AsyncClient()
    client.force_login(alice.user)
    import asyncio

    async def fetch():
        response = await client.get(
            reverse("org_logs_export", kwargs={"org_id": alice.org.id}),
            {"provider": "anthropic"},
        )
        content = b"".join([chunk async for chunk in response.streaming_content])
        return response, content

    response, content = asyncio.run(fetch())
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert len(rows) == 3
    assert {row["provider"] for row in rows} == {"anthropic"}
    assert rows[0]["key"] == "prod"
    assert rows[0]["cost_usd"] == "0.0000046"


def test_another_tenant_gets_404_on_pages_and_details(login, alice, charlie, acme_logs):
    client = login(charlie.user)
    generation_id = acme_logs[0].generation_id
    for url in (
        reverse("org_overview", kwargs={"org_id": alice.org.id}),
        reverse("org_logs", kwargs={"org_id": alice.org.id}),
        reverse("org_logs_export", kwargs={"org_id": alice.org.id}),
        reverse("org_log_detail", kwargs={"org_id": alice.org.id, "generation_id": generation_id}),
        # Charlie's own organization with alice's generation id.
        reverse(
            "org_log_detail", kwargs={"org_id": charlie.org.id, "generation_id": generation_id}
        ),
        reverse("org_log_detail", kwargs={"org_id": charlie.org.id, "generation_id": "nope"}),
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert b"Acme" not in response.content


# GET /v1/generation --------------------------------------------------------------------------


def _generation(client, secret, generation_id):
    return client.get(
        "/v1/generation", {"id": generation_id}, HTTP_AUTHORIZATION=f"Bearer {secret}"
    )


def test_the_generation_api_returns_the_facts_to_the_own_organization(
    client, alice, acme_logs, prod_key
):
    _, secret = prod_key
    fallback = acme_logs[-1]
    response = _generation(client, secret, fallback.generation_id)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["id"] == fallback.generation_id
    assert (data["provider"], data["status"]) == ("vertex-ai", "ok")
    assert (data["tokens_prompt"], data["tokens_completion"]) == (12, 30)
    assert data["total_cost"] == 0.0000046
    assert b'"total_cost":0.0000046' in response.content  # exact decimal, not a float
    assert [a["provider"] for a in data["attempts"]] == ["google-ai-studio", "vertex-ai"]
    assert data["latency_ms"] == pytest.approx(1000, abs=0.5)


def test_another_organizations_generation_is_404_in_the_openai_shape(client, charlie, acme_logs):
    _, secret = account_services.api_key_create(
        organization=charlie.org, created_by=charlie.user, name="globex"
    )
    response = _generation(client, secret, acme_logs[0].generation_id)
    assert response.status_code == 404
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "generation_not_found" and error["type"] == "not_found_error"


@pytest.mark.parametrize(
    ("generation_id", "status"),
    [("", 400), ("gen-nope", 404), ("\x00", 404), ("gen-" + "ab" * 16, 404)],
)
def test_bad_or_unknown_generation_ids(client, prod_key, generation_id, status, db):
    _, secret = prod_key
    assert _generation(client, secret, generation_id).status_code == status


def test_the_generation_api_needs_a_key(client, db):
    response = client.get("/v1/generation", {"id": f"gen-{uuid.uuid4().hex}"})
    assert response.status_code == 401
