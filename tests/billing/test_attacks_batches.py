"""Batches are billed even when their runner is interrupted (issue 11, point 4).

A real `celery worker --pool=prefork` runs the batch on the test's Redis broker and database,
as production does, under a soft time limit of a few seconds; the provider simulator answers
slowly. The prefork pool enforces soft limits (the solo pool of development does not): a
runner cut there used to release the holds of the calls in flight, and its successor took
the released hold ids for "already billed" and ran the items for free.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings

import billing.holds
from billing import services
from billing.holds import RedisHoldStore
from billing.models import LedgerEntry
from routing.batches import services as batch_services
from routing.batches.models import Batch, BatchItem
from tests.billing.test_multiprocess_gateway import HERO_PROVIDERS, _database_url, _redis_url
from tests.routing.batches.test_batches_api import line, upload, upstream_requests

pytestmark = pytest.mark.django_db(transaction=True)

SOFT_LIMIT = 3  # seconds: what the worker's pool allows each batch_run


class Worker:
    """A prefork Celery worker on a queue of this test's own, and a producer for it."""

    def __init__(self, *, simulator_url: str, prefix: str, log: Path) -> None:
        self.queue = f"batches-test-{os.getpid()}-{time.monotonic_ns()}"
        self.log = log
        self.producer = Celery("batch-attacks", broker=_redis_url(), set_as_current=False)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DATABASE_URL": _database_url(),
            "REDIS_URL": _redis_url(),
            "CELERY_BROKER_URL": _redis_url(),
            "LLMAPI_API_KEY_PEPPER": settings.API_KEY_PEPPER,
            "LLMAPI_SIMULATOR_URL": simulator_url,
            "LLMAPI_FORCE_SIMULATOR": "true",
            "LLMAPI_BILL_SIMULATED": "true",  # simulated generations cost $0 otherwise
            "LLMAPI_BILLING_REDIS_PREFIX": prefix,
            "LLMAPI_BATCH_CLAIM_SIZE": "4",
            "LLMAPI_BATCH_ORG_CONCURRENCY": "4",
            "LLMAPI_BATCH_LEASE_SECONDS": "3",
            "LLMAPI_BATCH_MAX_ATTEMPTS": "6",
            "LLMAPI_BATCH_DRAIN_SECONDS": "1.5",
        }
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool=prefork",
                "--concurrency=1",
                "-Q",
                self.queue,
                "-n",
                f"{self.queue}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=INFO",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while b"ready." not in log.read_bytes():
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, f"the worker did not start\n{self.output()}"
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_bytes().decode(errors="replace")

    def run(self, batch_id: str) -> None:
        """Start a runner, as the batch's creation and the sweep do, under the soft limit."""
        self.producer.send_task(
            "routing.batches.tasks.batch_run",
            args=(batch_id,),
            queue=self.queue,
            soft_time_limit=SOFT_LIMIT,
            time_limit=SOFT_LIMIT + 20,
        )

    def run_until_finished(self, batch_id: str, *, timeout: float) -> Batch:
        """Runners until the batch is finished; restarts it as the sweep would when no
        runner holds it (a runner stopped by the soft limit never restarts itself)."""
        deadline = time.monotonic() + timeout
        next_sweep = time.monotonic() + 2
        while True:
            batch = Batch.objects.get(pk=batch_id)
            if batch.status in Batch.FINISHED:
                return batch
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, f"the batch did not finish\n{self.output()}"
            if time.monotonic() >= next_sweep:
                if batch_id in batch_services.batches_to_resume():
                    self.run(batch_id)
                next_sweep = time.monotonic() + 2
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log_file.close()
        self.producer.close()


@pytest.fixture
def worker(sim, tmp_path, settings) -> Iterator[Worker]:
    # Holds and queued usage in Redis under a prefix of this test's, shared with the worker.
    prefix = f"batchattack:{os.getpid()}:{time.monotonic_ns()}"
    settings.REDIS_URL = _redis_url()
    billing.holds._store = RedisHoldStore(_redis_url(), prefix=prefix)
    started = Worker(simulator_url=sim.url, prefix=prefix, log=tmp_path / "worker.log")
    yield started
    started.stop()
    billing.holds._store = None


def usage_charges(org) -> dict[str, int]:
    """What the ledger billed, per generation id (positive nano-USD)."""
    services.usage_flush()
    return {
        reference: -amount
        for reference, amount in LedgerEntry.objects.filter(
            organization=org, kind="usage"
        ).values_list("reference", "amount_nanousd")
    }


def served(batch_id: str) -> list[BatchItem]:
    return list(BatchItem.objects.filter(batch_id=batch_id, leader__isnull=True))


def test_runner_within_its_budget_bills_every_item_once(openai_client, sim, alice, worker):
    """32 calls of 0.5 s, 4 at a time, take longer than one runner may live (3 s): each
    runner stops starting items in time, lets its calls finish, and hands over to the next.
    Before: the soft limit cut the runner mid-call, the holds were released, and the re-run
    served those items for $0 (4 of 32 items served free here)."""
    for slug in HERO_PROVIDERS:
        sim.set(slug, latency_ms=500)
    batch = openai_client.batches.create(
        input_file_id=upload(openai_client, [line(f"r{i}", f"question {i}") for i in range(32)]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    started = time.monotonic()
    worker.run(batch.id)
    done = worker.run_until_finished(batch.id, timeout=120)
    assert time.monotonic() - started > SOFT_LIMIT  # more than one runner's lifetime

    assert done.status == "completed"
    items = served(batch.id)
    assert {i.status for i in items} == {"succeeded"}
    charges = usage_charges(alice.org)
    free = [i.custom_id for i in items if i.cost_nanousd <= 0]
    assert free == [], f"{len(free)} of {len(items)} items served for $0"
    # Every item served is billed exactly once, at the cost it reports, and the batch's
    # total is the sum of its items.
    for item in items:
        assert charges.pop(item.generation_id) == item.cost_nanousd
    assert done.cost_nanousd == sum(i.cost_nanousd for i in items)
    # Nothing else was billed but calls cut short at a runner's end (none unless the machine
    # is too slow for a 0.5 s call to finish within the drain): each reached the provider.
    assert len(charges) == upstream_requests(sim) - len(items)
    assert all(cost > 0 for cost in charges.values()), charges
    # No runner was stopped by the soft limit: each left within its budget.
    assert "SoftTimeLimitExceeded" not in worker.output()
    assert services.get_hold_store().usage_pending() == 0


def test_calls_cut_short_are_billed_and_their_items_rerun_billed(openai_client, sim, alice, worker):
    """Calls slower than the runner's whole life are cut short: each is billed at least its
    prompt (it reached the provider), and its item runs again under a new generation id,
    billed in full. Before: the holds of the cut calls were released ($0) and the items then
    ran free under the "already billed" ids ($0 for all 4 items)."""
    for slug in HERO_PROVIDERS:
        sim.set(slug, latency_ms=6000)
    batch = openai_client.batches.create(
        input_file_id=upload(
            openai_client, [line(f"r{i}", f"slow question {i}") for i in range(4)]
        ),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    worker.run(batch.id)
    deadline = time.monotonic() + 30
    while upstream_requests(sim) < 4:  # the first calls reached the provider
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.05)
    time.sleep(SOFT_LIMIT + 0.5)  # past the runner's life: its calls were cut
    for slug in HERO_PROVIDERS:
        sim.set(slug, latency_ms=50)
    done = worker.run_until_finished(batch.id, timeout=120)

    items = served(batch.id)
    assert {i.status for i in items} == {"succeeded"}
    charges = usage_charges(alice.org)
    free = [i.custom_id for i in items if i.cost_nanousd <= 0]
    assert free == [], f"{len(free)} of {len(items)} items served for $0"
    for item in items:  # each served item billed once, at its cost
        assert charges.pop(item.generation_id) == item.cost_nanousd
    assert done.cost_nanousd == sum(i.cost_nanousd for i in items)
    # The calls cut short (each of the first 4, maybe again while the provider stayed slow)
    # reached the provider: each is billed at least its prompt, none released.
    assert len(charges) == upstream_requests(sim) - len(items) >= 4
    assert all(cost > 0 for cost in charges.values()), charges
    # The runner cut them itself, within its budget, before the soft limit would have.
    assert "SoftTimeLimitExceeded" not in worker.output()
