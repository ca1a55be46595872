"""One tenant's big file and batch never stall another tenant's /v1 calls (issue 12, point 2).

Creating a file (parsing and validating every line) and a batch (inserting its items) used to
run on asgiref's one shared thread, where every /v1 database call of the process waits its
turn: a 30,000-line file held other tenants' cold-key requests for seconds. Both now run on a
thread and a database connection of their own.
"""

from __future__ import annotations

import io
import threading
import time

import httpx
import pytest
from django.core.cache import cache
from django.db import connection

from accounts import services as account_services
from accounts.api_key_auth import key_cache
from observability.writer import log_buffer
from tests.routing.batches.test_batches_api import HERO, jsonl, line

pytestmark = pytest.mark.django_db(transaction=True)


def lines() -> int:
    # The embedded default's SQLite has one writer: a bigger batch's inserts would keep other
    # writers (the request log) waiting past its busy timeout.
    return 30_000 if connection.vendor == "postgresql" else 20_000


def test_a_big_file_and_batch_never_stall_another_tenants_requests(openai_client, gateway, charlie):
    base_url, _ = gateway
    # Charlie's keys, each used once: every request looks its key up in the database.
    secrets = [
        account_services.api_key_create(
            organization=charlie.org, created_by=charlie.user, name=f"k{i}"
        )[1]
        for i in range(100)
    ]
    cache.clear()
    key_cache.clear_local()
    count = lines()
    body = jsonl([line(f"r{i}", f"question number {i} " + "x" * 80) for i in range(count)])

    done = threading.Event()
    created = {}

    def big_tenant() -> None:
        try:
            started = time.monotonic()
            file = openai_client.files.create(file=("big.jsonl", io.BytesIO(body)), purpose="batch")
            created["file_seconds"] = time.monotonic() - started
            batch = openai_client.batches.create(
                input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            created["batch"] = batch
            created["seconds"] = time.monotonic() - started
        finally:
            done.set()

    latencies = []
    with httpx.Client(base_url=base_url, timeout=60) as client:
        worker = threading.Thread(target=big_tenant)
        worker.start()
        for secret in secrets:
            if done.is_set():
                break
            started = time.monotonic()
            reply = client.post(
                "/chat/completions",
                headers={"Authorization": f"Bearer {secret}"},
                json={
                    "model": HERO,
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 8,
                },
            )
            latencies.append(time.monotonic() - started)
            assert reply.status_code == 200, reply.text
            time.sleep(0.1)
        worker.join(timeout=120)

    assert created["batch"].request_counts.total == count
    # Charlie's requests ran all along the big tenant's work, none waiting on it.
    assert len(latencies) >= 5, (latencies, created["seconds"])
    print(
        f"file+batch of {count} lines: {created['file_seconds']:.1f}+"
        f"{created['seconds'] - created['file_seconds']:.1f} s; other tenant's "
        f"{len(latencies)} cold-key requests: max {max(latencies):.2f} s"
    )
    assert max(latencies) < 2.0, latencies
    # The request logs of all this reach their queue before the test's tables go.
    deadline = time.monotonic() + 10
    while len(log_buffer) and time.monotonic() < deadline:
        time.sleep(0.05)
