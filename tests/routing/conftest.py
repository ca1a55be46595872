"""Routing fixtures: the provider simulator, a real HTTP server in a background thread.

`simulator` is one server per test session (per xdist worker: each binds its own free port);
`sim` is the same server reset to its defaults first, and points settings.SIMULATOR_URL at it.
Every provider starts at 0 ms latency and unlimited tokens/s so tests stay fast; a test that
needs a provider's realistic profile or a fault sets it: `sim.set("openai", latency_ms=400)`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from routing.simulator import SimulatorServer

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
    return simulator
