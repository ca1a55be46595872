"""A stream cut by its server process dying is billed what it used, and logged.

The gateway records a stream's cost so far on its spend hold as it goes (after its first
chunks, then every second). The process is SIGKILLed mid-stream: nobody settles the hold,
so when it expires the periodic job settles it at that recorded cost instead of releasing it,
writes its usage to the ledger once, and the request log records the generation (how it
ended: server_stopped) at the same cost. A hold without progress (the process died before any
chunk) is still released, billing nothing.
"""

from __future__ import annotations

import concurrent.futures
import signal
import time

import httpx
import pytest

from accounts import services as account_services
from billing import selectors
from billing.holds import holds_release_expired, orphans_subscribe, orphans_unsubscribe
from billing.models import LedgerEntry
from billing.tasks import flush_usage, release_expired_holds
from observability.models import RequestLog
from observability.writer import flush_now
from tests.billing.conftest import USD, call
from tests.billing.helpers import counters, gen_id, place, settle
from tests.billing.test_multiprocess_gateway import (
    HERO,
    HERO_PROVIDERS,
    Servers,
    _parts,
)
from tests.billing.test_multiprocess_gateway import prefix as prefix  # fixtures
from tests.billing.test_multiprocess_gateway import ready as ready
from tests.billing.test_multiprocess_gateway import store as store

NOTE = {"m": "google/gemini-3.1-flash-lite", "pv": "vertex-ai", "u": [10, 3, 0, 0]}


@pytest.fixture
def orphans():
    seen = []

    def sink(record, note):
        seen.append((record, note))

    orphans_subscribe(sink)
    yield seen
    orphans_unsubscribe(sink)


def _progress(store, org, hold_id: str, cost: int) -> bool:
    from billing.holds import hold_progress

    return call(
        store,
        hold_progress,
        hold_id=hold_id,
        cost_nanousd=cost,
        organization_id=org.id,
        key_id=None,
        note=NOTE,
        store=store,
    )


class TestTheStore:
    """Both hold stores (in process, Redis): `store` from tests/billing/conftest.py."""

    @pytest.fixture
    def store(self, request):
        from tests.billing.conftest import delete_prefix, redis_store

        if request.param == "memory":
            from billing.holds import InProcessHoldStore

            yield InProcessHoldStore(auto_flush=False)
            return
        s = redis_store()
        yield s
        delete_prefix(s.prefix)

    @pytest.mark.parametrize("store", ["memory", "redis"], indirect=True)
    def test_an_expired_hold_with_progress_is_settled_at_it_once(self, store, org, orphans):
        hold_id = gen_id()
        assert place(store, org, USD, hold_id=hold_id).allowed
        assert _progress(store, org, hold_id, USD // 10)
        assert _progress(store, org, hold_id, USD // 4)  # the latest counts
        assert holds_release_expired(store=store) == 0  # not before its deadline
        later = time.time() + 10**6
        assert store.release_expired(now=later) == 1
        assert store.release_expired(now=later) == 0
        assert store.hold_state(hold_id) == "settled"
        # Held no more, spent what the stream had used; and in the ledger once.
        assert counters(store, org)["bal"] == (USD // 4, 0)
        from billing.holds import usage_flush

        assert usage_flush(store=store) >= 1
        entry = LedgerEntry.objects.get(reference=hold_id)
        assert (entry.kind, entry.amount_nanousd) == ("usage", -(USD // 4))
        assert [(r.reference, r.cost_nanousd, n) for r, n in orphans] == [(hold_id, USD // 4, NOTE)]
        # A settle that comes late (the process was only slow) changes nothing.
        assert not settle(store, org, hold_id, USD // 2)

    @pytest.mark.parametrize("store", ["memory", "redis"], indirect=True)
    def test_progress_does_not_outlive_the_settlement(self, store, org, orphans):
        settled, bare = gen_id(), gen_id()
        assert place(store, org, USD, hold_id=settled).allowed
        assert place(store, org, USD, hold_id=bare).allowed
        assert _progress(store, org, settled, USD // 10)
        assert settle(store, org, settled, USD // 5)  # the stream ended: its real cost
        assert not _progress(store, org, settled, USD // 3)  # too late: ignored
        assert store.release_expired(now=time.time() + 10**6) == 1  # `bare` only: released
        assert store.hold_state(bare) == "expired"
        assert orphans == []
        assert counters(store, org)["bal"] == (USD // 5, 0)


def _stream_some(url: str, secret: str, lines: list[str], started) -> None:
    with httpx.stream(
        "POST",
        f"{url}/chat/completions",
        json={
            "model": HERO,
            "messages": [{"role": "user", "content": "tell me a long story"}],
            "max_tokens": 400,
            "stream": True,
        },
        headers={"Authorization": f"Bearer {secret}"},
        timeout=60,
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                lines.append(line)
                if len(lines) >= 5:
                    started.set()


@pytest.mark.django_db(transaction=True)
def test_a_stream_cut_by_its_server_dying_is_billed_and_logged(ready, sim, prefix, store):
    import threading

    alice = ready
    # 400 tokens at 40 a second: the stream runs ~10 s, and the server dies ~2 s in.
    for slug in HERO_PROVIDERS:
        sim.set(slug, latency_ms=10, tokens_per_second=40, output_tokens=400)
    key, secret = account_services.api_key_create(
        organization=alice.org, created_by=alice.user, name="cut"
    )
    balance = selectors.ledger_sum(organization=alice.org)
    servers = Servers(
        count=1,
        simulator_url=sim.url,
        prefix=prefix,
        extra_env={
            "LLMAPI_BILLING_HOLD_TTL_SECONDS": "1",
            "LLMAPI_MAX_ATTEMPTS": "1",
            "LLMAPI_CONNECT_TIMEOUT": "0.5",
            "LLMAPI_ATTEMPT_TIMEOUT": "1",
            "LLMAPI_STREAM_PROGRESS_SECONDS": "0.5",
        },
    )
    lines: list[str] = []
    started = threading.Event()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(_stream_some, servers.url(0), secret, lines, started)
            assert started.wait(30), "the stream did not start"
            time.sleep(1.5)  # a second and a half of tokens, and of progress records
            servers.procs[0].send_signal(signal.SIGKILL)
            servers.procs[0].wait(timeout=10)
            with pytest.raises(httpx.HTTPError):
                pending.result(timeout=30)
        generation = orjson_id(lines[0])
        assert len(lines) >= 10  # the client saw tokens, and was cut
        deadline_ms = store._sync_client().zscore(store.deadlines_key, generation)
        assert deadline_ms is not None, "the cut stream's hold is not waiting to expire"
        time.sleep(max(0.0, deadline_ms / 1000 - time.time()) + 0.3)
        # The periodic job (the Celery beat task, run here) ends the hold...
        assert release_expired_holds() == 1
        for part in _parts(store, alice.org.id, key):
            counter = store.counter(part)
            assert counter is None or counter[1] == 0, part  # nothing left held
        # ...billing what the stream had used by the last progress record: its prompt and
        # at least the tokens the client had seen before the one before last record.
        flush_usage()
        entry = LedgerEntry.objects.get(reference=generation)
        assert entry.kind == "usage" and entry.amount_nanousd < 0
        flush_now()
        log = RequestLog.objects.get(generation_id=generation)
        assert (log.status, log.streamed) == ("server_stopped", True)
        assert log.cost_nanousd == -entry.amount_nanousd
        assert log.completion_tokens >= 10
        assert selectors.ledger_sum(organization=alice.org) == balance + entry.amount_nanousd
        # Billed once: the job again, the reconciliation, and the check change nothing.
        assert release_expired_holds() == 0
        assert selectors.billing_check() == []
        assert LedgerEntry.objects.filter(reference=generation).count() == 1
    finally:
        servers.stop()


def orjson_id(line: str) -> str:
    import orjson

    return orjson.loads(line.removeprefix("data: "))["id"]
