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
from billing.models import LedgerEntry
from routing.batches.models import Batch, BatchItem
from routing.batches.tasks import batch_run
from tests.billing.test_multiprocess_gateway import HERO_PROVIDERS, _database_url, _redis_url
from tests.routing.batches.test_batch_worker_killed import shared_store  # noqa: F401
from tests.routing.batches.test_batches_api import line, upload, upstream_requests

pytestmark = pytest.mark.django_db(transaction=True)

RUNNER = """
import signal, django
django.setup()
from billiard.pool import soft_timeout_sighandler
from routing.batches.tasks import batch_run
signal.signal(signal.SIGUSR1, soft_timeout_sighandler)  # as a prefork child does
batch_run({batch_id!r})
"""


def test_soft_time_limit_mid_call_bills_the_calls_and_reruns_billed(
    openai_client,
    sim,
    alice,
    shared_store,  # noqa: F811
):
    for slug in HERO_PROVIDERS:
        sim.set(slug, latency_ms=20_000)
    batch = openai_client.batches.create(
        input_file_id=upload(openai_client, [line(f"r{i}", f"cut {i}") for i in range(4)]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": _redis_url(),
        "LLMAPI_API_KEY_PEPPER": settings.API_KEY_PEPPER,
        "LLMAPI_SIMULATOR_URL": sim.url,
        "LLMAPI_FORCE_SIMULATOR": "true",
        "LLMAPI_BILLING_REDIS_PREFIX": shared_store,
    }
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER.format(batch_id=batch.id)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while upstream_requests(sim) < 4:  # every call is upstream
            assert runner.poll() is None, runner.stderr.read().decode(errors="replace")
            assert time.monotonic() < deadline, "the runner made no call"
            time.sleep(0.05)
        runner.send_signal(signal.SIGUSR1)  # the soft time limit
        runner.wait(timeout=15)
        stderr = runner.stderr.read().decode(errors="replace")
    finally:
        if runner.poll() is None:
            runner.kill()
        runner.stderr.close()
    assert "SoftTimeLimitExceeded" in stderr

    for slug in HERO_PROVIDERS:
        sim.set(slug, latency_ms=0)
    # The sweep's next runner, once whatever leases the stopped one left have run out.
    past = timezone.now() - timedelta(seconds=1)
    Batch.objects.filter(pk=batch.id).update(runner_lease_until=past)
    BatchItem.objects.filter(batch_id=batch.id, status="running").update(lease_until=past)
    assert batch_run(batch.id) == "completed"

    services.usage_flush()
    charges = dict(
        LedgerEntry.objects.filter(organization=alice.org, kind="usage").values_list(
            "reference", "amount_nanousd"
        )
    )
    items = list(BatchItem.objects.filter(batch_id=batch.id))
    free = [i.custom_id for i in items if i.cost_nanousd <= 0]
    assert free == [], f"{len(free)} of {len(items)} items served for $0"
    for item in items:  # each served item billed once, at its cost
        assert charges.pop(item.generation_id) == -item.cost_nanousd
    # The 4 calls cut by the soft limit reached the provider: each is billed, none released.
    assert len(charges) == 4 == upstream_requests(sim) - len(items)
    assert all(amount < 0 for amount in charges.values()), charges
