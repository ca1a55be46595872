"""A runner hit by Celery's soft time limit while its calls are upstream: SoftTimeLimitExceeded
is raised in the worker's main thread, as billiard's SIGUSR1 handler raises it in a prefork
child, and asyncio.run then cancels every call in flight. Those calls may have run upstream:
their holds are billed (at least the prompt), never released, and the next runner serves the
items under new generation ids, billed in full."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from billing import services
from billing.holds import holds_release_expired
from billing.models import LedgerEntry
from routing.batches.models import Batch, BatchItem
from routing.batches.tasks import batch_run
from tests.billing.test_multiprocess_gateway import HERO_PROVIDERS, _database_url, _redis_url
from tests.routing.batches.test_batch_worker_killed import shared_store  # noqa: F401
from tests.routing.batches.test_batches_api import line, upload

pytestmark = pytest.mark.django_db(transaction=True)

EMBEDDING_PROVIDERS = ("openai", "openrouter")


def embedding_line(custom_id: str, text: str) -> dict:
    # Long enough to cost something: ~1,000 tokens at $0.02-0.022 per million.
    body = {"model": "text-embedding-3-small", "input": f"{text} " + "word " * 800}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}


# endpoint -> (the providers that serve it, a line for it)
KINDS = {
    "/v1/chat/completions": (HERO_PROVIDERS, line),
    "/v1/embeddings": (EMBEDDING_PROVIDERS, embedding_line),
}


def upstream_requests(sim) -> int:
    return sum(sim.stats(slug)["requests"] for slug in HERO_PROVIDERS + EMBEDDING_PROVIDERS)


RUNNER = """
import signal, django
django.setup()
from billiard.pool import soft_timeout_sighandler
from routing.batches.tasks import batch_run
signal.signal(signal.SIGUSR1, soft_timeout_sighandler)  # as a prefork child does
batch_run({batch_id!r})
"""


def _start_runner(batch_id: str, sim, prefix: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": _redis_url(),
        "LLMAPI_API_KEY_PEPPER": settings.API_KEY_PEPPER,
        "LLMAPI_SIMULATOR_URL": sim.url,
        "LLMAPI_FORCE_SIMULATOR": "true",
        "LLMAPI_BILL_SIMULATED": "true",  # simulated generations cost $0 otherwise
        "LLMAPI_BILLING_REDIS_PREFIX": prefix,
    }
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER.format(batch_id=batch_id)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _stop_when_upstream(runner: subprocess.Popen, sim, calls: int, sig: int) -> str:
    """Send `sig` to the runner once `calls` calls are upstream; returns its stderr."""
    try:
        deadline = time.monotonic() + 60
        while upstream_requests(sim) < calls:
            assert runner.poll() is None, runner.stderr.read().decode(errors="replace")
            assert time.monotonic() < deadline, "the runner made no call"
            time.sleep(0.05)
        runner.send_signal(sig)
        runner.wait(timeout=15)
        return runner.stderr.read().decode(errors="replace")
    finally:
        if runner.poll() is None:
            runner.kill()
        runner.stderr.close()


def _next_runner(batch_id: str, sim) -> None:
    """The sweep's next runner, once whatever leases the stopped one left have run out."""
    for slug in HERO_PROVIDERS + EMBEDDING_PROVIDERS:
        sim.set(slug, latency_ms=0)
    past = timezone.now() - timedelta(seconds=1)
    Batch.objects.filter(pk=batch_id).update(runner_lease_until=past)
    BatchItem.objects.filter(batch_id=batch_id, status="running").update(lease_until=past)
    assert batch_run(batch_id) == "completed"


def _charges_after_items_billed_once(org, batch_id: str) -> dict[str, int]:
    """Checks every served item is billed once at its cost; returns the other charges."""
    services.usage_flush()
    charges = dict(
        LedgerEntry.objects.filter(organization=org, kind="usage").values_list(
            "reference", "amount_nanousd"
        )
    )
    items = list(BatchItem.objects.filter(batch_id=batch_id))
    free = [i.custom_id for i in items if i.cost_nanousd <= 0]
    assert free == [], f"{len(free)} of {len(items)} items served for $0"
    for item in items:
        assert charges.pop(item.generation_id) == -item.cost_nanousd
    return charges


def _slow_batch(openai_client, sim, count: int, endpoint: str = "/v1/chat/completions") -> str:
    providers, make_line = KINDS[endpoint]
    for slug in providers:
        sim.set(slug, latency_ms=20_000)
    lines = [make_line(f"r{i}", f"cut {i}") for i in range(count)]
    return openai_client.batches.create(
        input_file_id=upload(openai_client, lines), endpoint=endpoint, completion_window="24h"
    ).id


@pytest.mark.parametrize("endpoint", list(KINDS))
def test_soft_time_limit_mid_call_bills_the_calls_and_reruns_billed(
    openai_client,
    sim,
    alice,
    shared_store,  # noqa: F811
    endpoint,
):
    """Before: the 4 cut calls' holds were released ($0) and the items re-ran free (4 of 4
    items served for $0)."""
    batch_id = _slow_batch(openai_client, sim, 4, endpoint)
    runner = _start_runner(batch_id, sim, shared_store)
    stderr = _stop_when_upstream(runner, sim, 4, signal.SIGUSR1)  # the soft time limit
    assert "SoftTimeLimitExceeded" in stderr
    _next_runner(batch_id, sim)

    cut = _charges_after_items_billed_once(alice.org, batch_id)
    # The 4 calls cut by the soft limit reached the provider: each is billed, none released.
    assert len(cut) == 4 == upstream_requests(sim) - 4
    assert all(amount < 0 for amount in cut.values()), cut


def test_a_hold_that_expired_under_a_dead_runner_is_not_taken_for_billed(
    openai_client,
    sim,
    alice,
    shared_store,  # noqa: F811
):
    """A runner killed outright (SIGKILL) mid-call can bill nothing; its holds expire and
    the periodic job releases them. The next runner must not take those hold ids for
    "already billed": it serves the items under new ids, billed in full. Before: 4 of 4
    items served for $0."""
    batch_id = _slow_batch(openai_client, sim, 4)
    runner = _start_runner(batch_id, sim, shared_store)
    _stop_when_upstream(runner, sim, 4, signal.SIGKILL)
    later = timezone.now() + timedelta(seconds=settings.BILLING_HOLD_TTL_SECONDS + 1)
    assert holds_release_expired(now=later) == 4
    _next_runner(batch_id, sim)

    assert _charges_after_items_billed_once(alice.org, batch_id) == {}
