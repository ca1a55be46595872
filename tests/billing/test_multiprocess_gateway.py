"""Spend limits through the real request path across server processes.

Two uvicorn processes serve the ASGI app on the same database and the same Redis, as two web
pods would behind a load balancer; the provider simulator answers. A key with a budget for N
requests receives 10×N simultaneous requests spread over both processes from many threads: at
most N+1 are admitted, every admitted request has exactly one usage entry at the cost it
reported, the key's spend never passes its limit, and no hold is left behind.

Then a crash: a process SIGKILLed while a request is upstream leaves its hold in Redis, and the
periodic job releases it once it expires.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from decimal import Decimal

import httpx
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

import billing.holds
from accounts import services as account_services
from accounts.models import APIKey
from billing import selectors, services
from billing.holds import RedisHoldStore, hold_parts, holds_release_expired, org_snapshots
from billing.holds.snapshot import snapshot_build
from billing.models import LedgerEntry
from billing.tasks import flush_usage, release_expired_holds
from routing.services import catalog_load
from routing.snapshot import catalog

HERO = "google/gemini-3.1-flash-lite"
NANO = Decimal(1_000_000_000)
HERO_PROVIDERS = ("google-ai-studio", "vertex-ai", "openrouter", "private-vllm")
N = 8

pytestmark = pytest.mark.django_db(transaction=True)


def _redis_url() -> str:
    # The suite's own Redis database when it runs on Redis; the embedded run still has the
    # machine's Redis, which is what lets several processes share holds.
    return settings.REDIS_URL or "redis://127.0.0.1:6379/14"


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Servers:
    """`count` uvicorn processes serving config.asgi:application on free ports."""

    def __init__(
        self, *, count: int, simulator_url: str, prefix: str, extra_env=None, stderr=None
    ) -> None:
        self.prefix = prefix
        env = {
            **os.environ,
            # Development settings: not the test settings, whose per-worker Redis database and
            # eager Celery belong to the test process.
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DJANGO_DEBUG": "false",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": _database_url(),
            "REDIS_URL": _redis_url(),
            "LLMAPI_API_KEY_PEPPER": settings.API_KEY_PEPPER,
            "LLMAPI_SIMULATOR_URL": simulator_url,
            "LLMAPI_FORCE_SIMULATOR": "true",
            "LLMAPI_BILL_SIMULATED": "true",  # simulated generations cost $0 otherwise
            "LLMAPI_BILLING_REDIS_PREFIX": prefix,
            # Servers write their settled usage to the ledger themselves, as in production.
            "LLMAPI_BILLING_USAGE_FLUSH_SECONDS": "0.2",
            "LLMAPI_OBS_STREAM": f"{prefix}:obs",
            **(extra_env or {}),
        }
        self.env = env  # for other processes of the same deployment (a Celery worker)
        self.ports = [_free_port() for _ in range(count)]
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "config.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                cwd=settings.BASE_DIR,
                env=env,
                stdout=subprocess.DEVNULL,
                # A file for a long-lived server (a pipe nobody reads could fill up and stall it).
                stderr=stderr or subprocess.PIPE,
            )
            for port in self.ports
        ]
        deadline = time.monotonic() + 60
        for port, proc in zip(self.ports, self.procs, strict=True):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        proc.stderr.read().decode(errors="replace") if proc.stderr else "exited"
                    )
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("a server process did not start")
                time.sleep(0.1)

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i % len(self.ports)]}/v1"

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()


def _delete_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(_redis_url())
    try:
        names = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if names:
            client.delete(*names)
    finally:
        client.close()


@pytest.fixture
def prefix():
    value = f"mptest:{uuid.uuid4().hex[:10]}"
    yield value
    _delete_prefix(value)


@pytest.fixture
def store(prefix, settings):
    """The servers' hold store, made this process's own, so the Celery tasks run here (usage
    flush, expired-hold release) work on the servers' Redis keys as a worker would."""
    settings.REDIS_URL = _redis_url()
    store = RedisHoldStore(_redis_url(), prefix=prefix)
    billing.holds._store = store
    yield store
    billing.holds._store = None


@pytest.fixture
def ready(sim, alice):
    catalog_load()
    catalog.invalidate()
    services.billing_account_for(organization=alice.org)  # alice's first: $1 free grant
    org_snapshots.clear_local()
    return alice


def _slow(sim, latency_ms: int) -> None:
    for slug in HERO_PROVIDERS:
        sim.set(slug, latency_ms=latency_ms, tokens_per_second=0)


def _chat(url: str, secret: str, **extra) -> httpx.Response:
    return httpx.post(
        f"{url}/chat/completions",
        json={"model": HERO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
        | extra,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=60,
    )


def _cost(response: httpx.Response) -> int:
    return int(Decimal(str(response.json()["usage"]["cost"])) * NANO)


def _parts(store: RedisHoldStore, org_id, key: APIKey) -> list:
    return hold_parts(
        snapshot=snapshot_build(org_id),
        key_id=str(key.id),
        key_limit_nanousd=key.spend_limit_nanousd,
        key_period=key.spend_limit_period,
        at=timezone.now(),
    )


def _wait_for(predicate, *, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_two_server_processes_never_spend_past_a_key_budget(ready, sim, prefix, store):
    alice = ready
    # Every request is upstream at once: the budget decides admission, not the timing.
    _slow(sim, 500)
    servers = Servers(count=2, simulator_url=sim.url, prefix=prefix)
    try:
        # The budget is exactly N requests at their real cost (the simulator answers the same
        # prompt the same way); each is held at its worst case, which is more.
        _, probe = account_services.api_key_create(
            organization=alice.org, created_by=alice.user, name="probe"
        )
        cost = _cost(_chat(servers.url(0), probe))
        assert cost > 0
        key, secret = account_services.api_key_create(
            organization=alice.org,
            created_by=alice.user,
            name="budget",
            spend_limit_nanousd=cost * N,
            spend_limit_period=APIKey.SpendPeriod.TOTAL,
        )
        with concurrent.futures.ThreadPoolExecutor(max_workers=10 * N) as pool:
            results = list(
                pool.map(lambda i: _chat(servers.url(i), secret), range(10 * N), chunksize=1)
            )
        statuses = sorted({r.status_code for r in results})
        admitted = [r for r in results if r.status_code == 200]
        refused = [r for r in results if r.status_code == 402]
        assert statuses == [200, 402], [r.text for r in results if r.status_code not in (200, 402)]
        assert len(admitted) + len(refused) == 10 * N
        assert 1 <= len(admitted) <= N + 1
        assert {r.json()["error"]["code"] for r in refused} == {"spend_limit_exceeded"}
        # Both processes took their share of the traffic and the refusals.
        assert {servers.ports.index(r.request.url.port) for r in refused} == {0, 1}

        # The periodic flush (the Celery beat task, run here) writes the settled usage.
        ids = {r.json()["id"] for r in admitted}
        assert flush_usage() >= len(ids) + 1  # and the probe's
        usage = LedgerEntry.objects.filter(key_id=key.id, kind=LedgerEntry.Kind.USAGE)
        # A second flush writes nothing new: the same records reach it again when a server's
        # outbox wrote them after the first one took them from the shared queue.
        written = LedgerEntry.objects.count()
        flush_usage()
        assert LedgerEntry.objects.count() == written
        assert set(usage.values_list("reference", flat=True)) == ids  # one per generation
        spent = selectors.usage_spent(
            organization_id=alice.org.id, key_id=key.id, period="total", at=timezone.now()
        )
        assert spent == sum(_cost(r) for r in admitted)
        assert spent <= cost * N
        assert selectors.billing_check() == []
        # No hold left behind: every counter holds nothing, and there is nothing to expire.
        for part in _parts(store, alice.org.id, key):
            counter = store.counter(part)
            assert counter is None or counter[1] == 0, part
        assert store.release_expired(now=10**12) == 0
        assert store.usage_pending() == 0
    finally:
        servers.stop()


def test_a_server_killed_mid_request_leaves_a_hold_the_periodic_job_releases(
    ready, sim, prefix, store
):
    alice = ready
    _slow(sim, 30_000)  # upstream until the process dies
    key, secret = account_services.api_key_create(
        organization=alice.org, created_by=alice.user, name="crash"
    )
    servers = Servers(
        count=1,
        simulator_url=sim.url,
        prefix=prefix,
        # A hold lives as long as its request may take (hold_ttl_seconds): with one attempt
        # that may wait 2.5 s, about 3 s here (the request is still waiting when killed).
        extra_env={
            "LLMAPI_BILLING_HOLD_TTL_SECONDS": "2",
            "LLMAPI_MAX_ATTEMPTS": "1",
            "LLMAPI_CONNECT_TIMEOUT": "0.5",
            "LLMAPI_ATTEMPT_TIMEOUT": "2",
        },
    )
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(_chat, servers.url(0), secret)

            def held():
                counters = [store.counter(part) for part in _parts(store, alice.org.id, key)]
                return all(c is not None and c[1] > 0 for c in counters[:3])

            _wait_for(held, what="the request's hold")
            servers.procs[0].send_signal(signal.SIGKILL)
            servers.procs[0].wait(timeout=10)
            with pytest.raises(httpx.TransportError):
                pending.result(timeout=30)
        # The hold outlives its process...
        assert held()
        assert holds_release_expired(store=store) == 0  # ...and is not released before it expires
        [(_, deadline_ms)] = store._sync_client().zrange(
            store.deadlines_key, 0, -1, withscores=True
        )
        assert deadline_ms / 1000 - time.time() < 5
        time.sleep(max(0.0, deadline_ms / 1000 - time.time()) + 0.3)
        # ...until the periodic job (the Celery beat task, run here) releases it.
        assert release_expired_holds() == 1
        for part in _parts(store, alice.org.id, key):
            counter = store.counter(part)
            assert counter is None or counter[1] == 0, part
        # Nothing was billed for a generation whose outcome no process learned.
        assert not LedgerEntry.objects.filter(organization=alice.org, kind="usage").exists()
        assert selectors.billing_check() == []
    finally:
        servers.stop()
