"""Fixtures for tests that call the gateway over real HTTP: the provider simulator (a real HTTP
server in a background thread: `simulator` one per session or xdist worker, `sim` the same reset
to fast defaults with settings.SIMULATOR_URL pointing at it), the catalog loaded, the ASGI app
served by uvicorn, an API key, and the openai SDK."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from accounts import services as account_services
from routing import events
from routing.health import health_book
from routing.services import catalog_load
from routing.simulator import SimulatorServer
from routing.snapshot import catalog

FAST = {"*": {"latency_ms": 0, "tokens_per_second": 0}}


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorServer]:
    """The running simulator: `.url`, `.base_url(slug, wire)`, `.set(slug, **profile)`,
    `.stats(slug)`, `.reset()`. Shared by the session: use `sim` for a clean one."""
    server = SimulatorServer(profiles=FAST).start()
    yield server
    server.stop()


@pytest.fixture
def sim(simulator: SimulatorServer, settings) -> SimulatorServer:
    """The simulator with default profiles, zeroed counters and an empty prompt cache."""
    simulator.reset()
    settings.SIMULATOR_URL = simulator.url
    settings.SIMULATOR_CONTROL_TOKEN = simulator.control_token
    return simulator


@pytest.fixture
def gateway(sim, transactional_db, settings, asgi_server, alice):
    """A ready gateway: returns (base_url, api_key)."""
    catalog_load()
    catalog.invalidate()
    health_book.reset()
    settings.ROUTING_BACKOFF_SECONDS = 0.01
    key, secret = account_services.api_key_create(
        organization=alice.org, created_by=alice.user, name="tests"
    )
    yield f"{asgi_server.url}/v1", secret
    catalog.invalidate()
    health_book.reset()


@pytest.fixture
def openai_client(gateway):
    from openai import OpenAI

    base_url, secret = gateway
    with OpenAI(base_url=base_url, api_key=secret, max_retries=0, timeout=30) as client:
        yield client


@pytest.fixture
def generation_events():
    """Every generation the gateway finishes during the test (through the events hook that
    billing and observability subscribe to)."""
    seen: list[events.GenerationEvent] = []
    events.subscribe(seen.append)
    yield seen
    events.unsubscribe(seen.append)


@pytest.fixture
def anthropic_client(gateway):
    """The official anthropic SDK against the gateway (it appends /v1/messages itself)."""
    from anthropic import Anthropic

    base_url, secret = gateway
    with Anthropic(
        base_url=base_url.removesuffix("/v1"), api_key=secret, max_retries=0, timeout=30
    ) as client:
        yield client
