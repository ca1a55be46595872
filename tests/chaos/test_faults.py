"""Faults of the platform's own parts, under load, each against a fresh deployment of real
processes (tests/chaos/harness.py): what the clients saw (served, refused with a 503 in the
OpenAI shape, failed: must be 0) and, once recovered, the ledger against the request logs
(lost: must be 0). Each test writes its figures to var/chaos/results.md before asserting.
"""

from __future__ import annotations

import time

from django.utils import timezone

from tests.chaos.books import figures, record, settle_books
from tests.chaos.load import Load

HERO_PROVIDERS = ("google-ai-studio", "vertex-ai", "openrouter", "private-vllm")


def fast(platform, latency_ms: float = 20) -> None:
    for slug in HERO_PROVIDERS:
        platform.sim_set(slug, latency_ms=latency_ms, tokens_per_second=0)


def check(load: Load, books, *, cut_allowed: bool = False) -> None:
    counts = load.counts()
    assert counts["failed"] == 0, (counts, load.failures())
    if not cut_allowed:
        assert counts["cut"] == 0, counts
    assert books.lost == 0, (books.lost, books.sample())


def test_no_fault_baseline(platform, tenant):
    organization, secret = tenant
    deployment = platform()
    fast(deployment)
    since = timezone.now()
    load = Load(deployment.apis, secret, clients=6).run_for(8)
    books = settle_books(
        deployment, organization, since=since, served=load.served(), cut=load.cut()
    )
    record("none (baseline)", figures(load, books))
    assert load.counts()["served"] > 50
    check(load, books)


def test_redis_stopped_15_s_and_restarted_under_load(platform, tenant):
    organization, secret = tenant
    deployment = platform()
    fast(deployment)
    since = timezone.now()
    load = Load(deployment.apis, secret, clients=6).start()
    time.sleep(5)
    deployment.redis.stop()  # no persistence: it comes back empty
    time.sleep(15)
    deployment.redis.start()
    back = time.monotonic()
    time.sleep(10)
    load.stop()
    books = settle_books(
        deployment, organization, since=since, served=load.served(), cut=load.cut()
    )
    record("Redis stopped 15 s, restarted", figures(load, books))
    assert load.served_after(back) > 20, load.counts()  # it recovered by itself
    check(load, books)
