"""Usage survives losing Redis (issue #11, point 5).

An operator restarts Redis (no persistence) while the gateway is under load: every generation
the gateway answered with a 200 still has exactly one ledger entry, at the cost its answer
reported, and a request log. Redis here is a server of the test's own on a free port, started
with `--save "" --appendonly no` and killed mid-load: the machine's shared Redis is never
touched.

And the reconciliation: a generation the request log knows and the ledger doesn't is reported
by `billing_check`, billed by `billing_check --fix` and by the periodic task, exactly once.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import subprocess
import threading
import time
import uuid
from datetime import timedelta

import httpx
import pytest
import redis
from django.core.management import CommandError, call_command
from django.db import connections
from django.utils import timezone

import billing.holds
from accounts import services as account_services
from billing import selectors
from billing.holds import RedisHoldStore, usage_flush
from billing.models import LedgerEntry
from billing.tasks import flush_usage, reconcile_usage
from observability.models import RequestLog
from observability.services import request_logs_flush, request_logs_write
from observability.writer.records import event_to_record
from tests.billing.test_multiprocess_gateway import (
    HERO_PROVIDERS,
    Servers,
    _cost,
    _free_port,
)
from tests.billing.test_multiprocess_gateway import ready as ready  # a fixture
from tests.observability.helpers import make_event

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")


class OwnRedis:
    """A redis-server of this test's own, without persistence: a restart comes back empty."""

    def __init__(self, *options: str) -> None:
        self.options = options or ("--save", "", "--appendonly", "no")
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603
            [
                shutil.which("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def keys(self) -> int:
        client = redis.Redis.from_url(self.url)
        try:
            return int(client.dbsize())
        finally:
            client.close()


@pytest.fixture
def own_redis():
    server = OwnRedis()
    server.start()
    yield server
    server.kill()


@pytest.mark.django_db(transaction=True)
def test_a_redis_restart_under_load_loses_no_usage_and_no_request_log(
    ready, sim, own_redis, settings, tmp_path
):
    alice = ready
    for slug in HERO_PROVIDERS:
        sim.set(slug, latency_ms=20, tokens_per_second=0)
    prefix = f"durable:{uuid.uuid4().hex[:10]}"
    log = (tmp_path / "servers.log").open("wb")
    servers = Servers(
        count=2,
        stderr=log,
        simulator_url=sim.url,
        prefix=prefix,
        extra_env={
            "REDIS_URL": own_redis.url,
            "CELERY_BROKER_URL": own_redis.url,
            # As in production: Celery workers write the request logs, not the web process.
            "LLMAPI_OBS_WRITE_IN_PROCESS": "false",
            # Usage reaches PostgreSQL this long after settling (the production default).
            "LLMAPI_BILLING_USAGE_FLUSH_SECONDS": "0.02",
        },
    )
    _, secret = account_services.api_key_create(
        organization=alice.org, created_by=alice.user, name="load"
    )
    served: dict[str, int] = {}
    statuses: dict[int, int] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def client(i: int) -> None:
        with httpx.Client(timeout=30) as http:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    response = http.post(
                        f"{servers.url(i + n)}/chat/completions",
                        json={
                            "model": "google/gemini-3.1-flash-lite",
                            "messages": [{"role": "user", "content": "hi"}],
                            "max_tokens": 16,
                        },
                        headers={"Authorization": f"Bearer {secret}"},
                    )
                except httpx.TransportError:
                    continue
                with lock:
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    if response.status_code == 200:
                        served[response.json()["id"]] = _cost(response)

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            running = [pool.submit(client, i) for i in range(4)]
            deadline = time.monotonic() + 30
            while len(served) < 50 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)
            before_restart = len(served)
            assert own_redis.keys() > 0  # the servers' holds, counters and queues live there
            own_redis.kill()  # Redis goes away mid-load, and comes back empty
            time.sleep(1.5)
            own_redis.start()
            # Load goes on until the servers have answered plenty after the restart too.
            after_restart = len(served)
            deadline = time.monotonic() + 30
            while len(served) < after_restart + 50 and time.monotonic() < deadline:
                time.sleep(0.2)
            stop.set()
            for future in running:
                future.result(timeout=60)
        assert before_restart >= 50, statuses
        assert len(served) >= after_restart + 50, statuses  # served again after the restart

        # What the deployment's Celery workers do (run here, against the servers' Redis):
        # write what is queued for the ledger and for the request logs.
        settings.REDIS_URL = own_redis.url
        settings.BILLING_REDIS_PREFIX = prefix
        store = RedisHoldStore(own_redis.url, prefix=prefix)
        billing.holds._store = store

        def billed() -> set[str]:
            flush_usage()
            return set(
                LedgerEntry.objects.filter(reference__in=list(served)).values_list(
                    "reference", flat=True
                )
            )

        deadline = time.monotonic() + 10
        while (missing := set(served) - billed()) and time.monotonic() < deadline:
            time.sleep(0.2)

        def logged() -> set[str]:
            request_logs_flush()
            return set(
                RequestLog.objects.filter(generation_id__in=list(served)).values_list(
                    "generation_id", flat=True
                )
            )

        # The servers queue their logs from a buffer they push now and then: wait for them.
        deadline = time.monotonic() + 10
        while (unlogged := set(served) - logged()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (len(missing), len(unlogged)) == (0, 0), (
            f"{len(missing)} of {len(served)} served generations have no ledger entry and "
            f"{len(unlogged)} no request log (statuses {statuses})"
        )
        # Exactly one entry each, at the cost each answer reported.
        entries = dict(
            LedgerEntry.objects.filter(reference__in=list(served)).values_list(
                "reference", "amount_nanousd"
            )
        )
        assert entries == {generation: -cost for generation, cost in served.items()}
        assert selectors.billing_check() == []
    finally:
        stop.set()
        servers.stop()
        billing.holds._store = None
        connections.close_all()


def _log_without_ledger_entry(organization, *, cost: int) -> str:
    """A generation whose request log was written and whose usage never reached the ledger
    (its record was in a Redis that restarted empty)."""
    event = make_event(
        organization,
        cost_nanousd=cost,
        received_at=(timezone.now() - timedelta(minutes=5)).timestamp(),
        finished_at=(timezone.now() - timedelta(minutes=5)).timestamp() + 0.5,
    )
    request_logs_write(records=[event_to_record(event)])
    return event.generation_id


def test_billing_check_finds_and_fixes_a_served_generation_missing_from_the_ledger(alice, capsys):
    from billing.services import billing_account_for

    billing_account_for(organization=alice.org)
    generation = _log_without_ledger_entry(alice.org, cost=7_500)
    balance = selectors.ledger_sum(organization=alice.org)

    with pytest.raises(CommandError, match="1 served generation"):
        call_command("billing_check")
    assert generation in capsys.readouterr().err
    assert not LedgerEntry.objects.filter(reference=generation).exists()  # only reported

    call_command("billing_check", "--fix")
    entry = LedgerEntry.objects.get(reference=generation)
    assert (entry.kind, entry.amount_nanousd) == ("usage", -7_500)
    assert entry.organization_id == alice.org.id
    assert selectors.ledger_sum(organization=alice.org) == balance - 7_500

    # Fixed means agreed: the check passes, and fixing again changes nothing.
    call_command("billing_check")
    call_command("billing_check", "--fix")
    assert LedgerEntry.objects.filter(reference=generation).count() == 1
    assert selectors.ledger_sum(organization=alice.org) == balance - 7_500
    assert selectors.billing_check() == []


def test_the_periodic_reconciliation_bills_what_the_ledger_missed_once(alice):
    from billing.services import billing_account_for

    billing_account_for(organization=alice.org)
    generation = _log_without_ledger_entry(alice.org, cost=3_000)
    balance = selectors.ledger_sum(organization=alice.org)
    assert reconcile_usage() == 1
    assert reconcile_usage() == 0
    assert LedgerEntry.objects.get(reference=generation).amount_nanousd == -3_000
    assert selectors.ledger_sum(organization=alice.org) == balance - 3_000


def test_reseeded_counters_count_usage_settled_but_not_yet_in_the_ledger(org):
    """Redis restarted empty a moment after two requests settled, before their usage reached
    the ledger: one still in this process's outbox, one in the outbox table (written by its
    process, not yet moved by the flush). The counters are seeded from the ledger *and* both,
    so the spend is not forgotten (forgetting it would let the balance be spent twice)."""
    from tests.billing.conftest import CENT, USD, delete_prefix, redis_store
    from tests.billing.helpers import gen_id, place, settle

    store = redis_store()
    try:
        in_table, in_outbox = gen_id(), gen_id()
        assert place(store, org, 2 * USD, hold_id=in_table).allowed
        settle(store, org, in_table, 2 * USD)
        store.outbox.flush()  # its batch is a row of the outbox table now
        assert place(store, org, USD, hold_id=in_outbox).allowed
        settle(store, org, in_outbox, USD)
        assert store.outbox.pending() == 1
        assert not LedgerEntry.objects.filter(reference__in=[in_table, in_outbox]).exists()
        delete_prefix(store.prefix)  # Redis comes back empty

        # $10 of credit, $3 spent: $7 is left, not $10.
        refused = place(store, org, 7 * USD + CENT)
        assert (refused.allowed, refused.balance_remaining_nanousd) == (False, 7 * USD)
        assert place(store, org, 7 * USD).allowed
        assert usage_flush(store=store) == 2
        assert selectors.usage_spent_total(organization_id=org.id) == 3 * USD
    finally:
        delete_prefix(store.prefix)


def test_the_redis_persistence_production_needs_is_checked_at_start(settings, tmp_path):
    """A Redis without an append-only file, or that may evict keys, is reported by the system
    check (manage.py runs it; the ASGI lifespan logs it) when production asks for it."""
    from billing.checks import redis_persistence_check

    bare = OwnRedis()
    bare.start()
    durable = OwnRedis(
        "--dir", str(tmp_path), "--appendonly", "yes", "--maxmemory-policy", "noeviction"
    )
    durable.start()
    try:
        settings.BILLING_CHECK_REDIS_PERSISTENCE = True
        settings.REDIS_URL = bare.url
        assert {problem.id for problem in redis_persistence_check()} == {"billing.W001"}
        client = redis.Redis.from_url(bare.url)
        client.config_set("maxmemory-policy", "allkeys-lru")
        client.close()
        assert {p.id for p in redis_persistence_check()} == {"billing.W001", "billing.W002"}
        settings.REDIS_URL = durable.url
        assert redis_persistence_check() == []
        settings.REDIS_URL = "redis://127.0.0.1:1/0"  # unreachable: said, not hidden
        assert [p.id for p in redis_persistence_check()] == ["billing.W003"]
        settings.BILLING_CHECK_REDIS_PERSISTENCE = False  # development: not asked
        settings.REDIS_URL = bare.url
        assert redis_persistence_check() == []
    finally:
        bare.kill()
        durable.kill()


@pytest.mark.django_db(transaction=True)
def test_a_server_stopping_writes_the_usage_it_still_holds(ready, sim, own_redis, settings):
    """A web process told to stop (a deploy, a scale-down) writes what its outbox holds
    before it exits: here its thread waits 60 s, so only the shutdown can have written it,
    and Redis (with the second copy) is gone before the stop."""
    alice = ready
    prefix = f"durable:{uuid.uuid4().hex[:10]}"
    servers = Servers(
        count=1,
        simulator_url=sim.url,
        prefix=prefix,
        extra_env={
            "REDIS_URL": own_redis.url,
            "CELERY_BROKER_URL": own_redis.url,
            "LLMAPI_OBS_WRITE_IN_PROCESS": "false",
            "LLMAPI_BILLING_USAGE_FLUSH_SECONDS": "60",
        },
    )
    try:
        _, secret = account_services.api_key_create(
            organization=alice.org, created_by=alice.user, name="deploy"
        )
        served = {}
        with httpx.Client(timeout=30) as http:
            for _ in range(5):
                response = http.post(
                    f"{servers.url(0)}/chat/completions",
                    json={
                        "model": "google/gemini-3.1-flash-lite",
                        "messages": [{"role": "user", "content": "hi"}],
                        "max_tokens": 16,
                    },
                    headers={"Authorization": f"Bearer {secret}"},
                )
                assert response.status_code == 200, response.text
                served[response.json()["id"]] = _cost(response)
        own_redis.kill()
    finally:
        servers.stop()  # SIGTERM: the ASGI lifespan's shutdown, then atexit
    usage_flush(store=RedisHoldStore(own_redis.url, prefix=prefix))
    entries = dict(
        LedgerEntry.objects.filter(reference__in=list(served)).values_list(
            "reference", "amount_nanousd"
        )
    )
    assert entries == {generation: -cost for generation, cost in served.items()}
