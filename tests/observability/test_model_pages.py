"""Public model pages: the catalog with measured provider figures, simulated providers
labelled, the platform's 30-day totals; no login needed."""

from __future__ import annotations

import httpx
import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application
from routing.http import close_client
from routing.services import catalog_load
from routing.snapshot import catalog
from tests.factories import OrganizationFactory
from tests.observability.helpers import ws_headers
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


@pytest.mark.django_db(transaction=True)
async def test_anyone_can_watch_the_platform_totals_move_after_an_api_call(gateway, alice):
    _, secret = gateway
    communicator = WebsocketCommunicator(application, "/ws/platform/live/", headers=ws_headers())
    connected, _ = await communicator.connect()
    assert connected  # no login: the totals are public
    snapshot = await communicator.receive_json_from(timeout=5)
    assert snapshot["type"] == "snapshot"
    before = snapshot["totals"]

    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        response = await client.post(
            "/v1/chat/completions",
            json={"model": HERO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
            headers={"Authorization": f"Bearer {secret}"},
        )
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]

    update = await communicator.receive_json_from(timeout=2)
    assert update == {
        "type": "update",
        "delta": {
            "requests": 1,
            "errors": 0,
            "rate_limited": 0,
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
        },
    }
    await communicator.disconnect()
    await close_client()
    # What the page adds up is what a fresh visitor is given.
    again = WebsocketCommunicator(application, "/ws/platform/live/", headers=ws_headers())
    await again.connect()
    fresh = (await again.receive_json_from(timeout=5))["totals"]
    await again.disconnect()
    assert fresh["requests"] == before["requests"] + 1
    assert fresh["prompt_tokens"] == before["prompt_tokens"] + usage["prompt_tokens"]
    assert fresh["completion_tokens"] == before["completion_tokens"] + usage["completion_tokens"]
    assert fresh["uptime"] == 100.0
