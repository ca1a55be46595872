"""A worker killed with SIGKILL mid-batch: the next runner takes back the items whose leases
ran out, and every line is answered exactly once, with nothing finished run again."""

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

import billing.holds
from billing import selectors, services
from billing.holds import RedisHoldStore
from billing.models import LedgerEntry
from routing.batches.models import Batch, BatchItem
from routing.batches.tasks import batch_run
from tests.billing.test_multiprocess_gateway import HERO_PROVIDERS, _database_url, _redis_url
from tests.routing.batches.test_batches_api import line, results, upload, upstream_requests

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shared_store(settings):
    """Holds and queued usage in Redis under a prefix of this test's, shared with the
    worker process, as two workers share them in production."""
    prefix = f"batchkill:{os.getpid()}:{time.monotonic_ns()}"
    settings.REDIS_URL = _redis_url()
    store = RedisHoldStore(_redis_url(), prefix=prefix)
    billing.holds._store = store
    yield prefix
    billing.holds._store = None


def test_a_killed_worker_loses_and_repeats_nothing(openai_client, sim, alice, shared_store):
    for slug in HERO_PROVIDERS:
        sim.set(slug, latency_ms=40)
    lines = [line(f"r{i}", f"question {i % 150}") for i in range(200)]  # 150 unique
    batch = openai_client.batches.create(
        input_file_id=upload(openai_client, lines),
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
        "LLMAPI_BILL_SIMULATED": "true",  # simulated generations cost $0 otherwise
        "LLMAPI_BILLING_REDIS_PREFIX": shared_store,
        "LLMAPI_BATCH_CLAIM_SIZE": "8",
        "LLMAPI_BATCH_ORG_CONCURRENCY": "8",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from routing.batches.tasks import batch_run; "
            f"batch_run({batch.id!r})",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        done = BatchItem.objects.filter(batch_id=batch.id, status="succeeded")
        while done.count() < 30:
            assert worker.poll() is None, worker.stderr.read().decode(errors="replace")
            assert time.monotonic() < deadline, "the worker made no progress"
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.stderr.close()
    before = dict(
        BatchItem.objects.filter(batch_id=batch.id, status="succeeded").values_list(
            "id", "generation_id"
        )
    )
    in_flight = BatchItem.objects.filter(batch_id=batch.id, status="running").count()
    assert 30 <= len(before) < 150
    assert openai_client.batches.retrieve(batch.id).status == "in_progress"

    # A new runner can't take the batch while the dead one's lease lasts...
    assert batch_run(batch.id) == "in_progress"
    # ...and takes it, with the dead runner's items, once the leases run out.
    past = timezone.now() - timedelta(seconds=1)
    Batch.objects.filter(pk=batch.id).update(runner_lease_until=past)
    BatchItem.objects.filter(batch_id=batch.id, status="running").update(lease_until=past)
    status = batch_run(batch.id)
    assert status == "completed", Batch.objects.values("paused_reason", "status").get(pk=batch.id)

    after = dict(
        BatchItem.objects.filter(batch_id=batch.id, id__in=before).values_list(
            "id", "generation_id"
        )
    )
    assert after == before  # finished items kept their one generation
    done_batch = openai_client.batches.retrieve(batch.id)
    out = results(openai_client, done_batch.output_file_id)
    assert sorted(r["custom_id"] for r in out) == sorted(f"r{i}" for i in range(200))
    assert done_batch.request_counts.completed == 200
    # Every unique request ran once, except those upstream when the worker died (at most
    # one claim), which ran again: their first answer was never recorded.
    assert 150 <= upstream_requests(sim) <= 150 + in_flight
    # Billing: every unique request is billed exactly once. A call the dead worker had
    # already settled is not billed again when it is re-run for its lost answer.
    services.usage_flush()
    charges = LedgerEntry.objects.filter(
        organization=alice.org, kind="usage", amount_nanousd__lt=0
    ).values_list("amount_nanousd", flat=True)
    assert len(charges) == 150
    recorded = sum(
        BatchItem.objects.filter(batch_id=batch.id).values_list("cost_nanousd", flat=True)
    )
    assert recorded <= -sum(charges)
    assert selectors.billing_check() == []
