"""Public model pages: the catalog with measured provider figures, simulated providers
labelled, the platform's 30-day totals; no login needed."""

from __future__ import annotations

import pytest

from routing.services import catalog_load
from routing.snapshot import catalog
from tests.factories import OrganizationFactory
from tests.observability.test_health import _write, attempt

HERO = "google/gemini-3.1-flash-lite"


@pytest.fixture
def loaded(db, settings):
    settings.ROUTING_FORCE_SIMULATOR = True
    catalog_load()
    catalog.invalidate()
    yield
    catalog.invalidate()


def test_the_model_list_shows_every_model_and_the_totals(loaded, client, django_assert_num_queries):
    org = OrganizationFactory()
    for _ in range(2):
        _write(org, minutes_ago=1, attempts=[attempt(duration_ms=150)])
    client.get("/models/")
    with django_assert_num_queries(1):  # the totals; the catalog is in memory
        response = client.get("/models/")
    assert response.status_code == 200
    body = response.content.decode()
    assert f'href="/models/{HERO}/"' in body
    assert "simulated" in body
    assert response.context["totals"]["requests"] == 2
    assert response.context["totals"]["prompt_tokens"] == 24


def test_a_model_page_compares_its_providers_from_measured_traffic(
    loaded, client, django_assert_num_queries
):
    org = OrganizationFactory()
    for duration in (150, 150, 600):
        _write(org, minutes_ago=2, attempts=[attempt(duration_ms=duration)])
    _write(org, minutes_ago=2, attempts=[attempt(outcome="overloaded"), attempt("vertex-ai")])
    client.get(f"/models/{HERO}/")
    with django_assert_num_queries(3):
        response = client.get(f"/models/{HERO}/")
    assert response.status_code == 200
    rows = {row["endpoint"].provider: row for row in response.context["providers"]}
    assert set(rows) == {"google-ai-studio", "vertex-ai", "openrouter", "private-vllm"}
    studio = rows["google-ai-studio"]
    assert (studio["ttft_p50"], studio["throughput_p50"], studio["uptime_1d"]) == (
        200.0,
        200.0,
        75.0,
    )
    assert rows["openrouter"]["uptime_1d"] is None  # no traffic, no figure
    assert studio["input"] == "0.05" and studio["output"] == "0.15"
    body = response.content.decode()
    assert body.count('data-testid="simulated"') == 4
    assert "≤ 200 ms" in body


def test_an_unknown_model_is_404(loaded, client):
    assert client.get("/models/nobody/nothing/").status_code == 404
