"""A running batch looks its key up again (every BATCH_KEY_RECHECK_SECONDS): once the key is
revoked or expired, no item reaches a provider any more and the rest fail with the reason."""

from __future__ import annotations

import io
import json
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import services as account_services
from accounts.models import APIKey
from routing import events
from routing.batches.models import Batch, BatchItem
from routing.batches.tasks import batch_run

HERO = "google/gemini-3.1-flash-lite"
HERO_PROVIDERS = ("google-ai-studio", "vertex-ai", "openrouter", "private-vllm")


def _batch(gateway, alice, n: int) -> str:
    """A batch made with a key of its own (the test reads its results with another)."""
    from openai import OpenAI

    _, secret = account_services.api_key_create(
        organization=alice.org, created_by=alice.user, name="batch"
    )
    client = OpenAI(base_url=gateway[0], api_key=secret, max_retries=0, timeout=30)
    lines = [
        {
            "custom_id": f"item-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": HERO,
                "messages": [{"role": "user", "content": f"question {i}"}],
                "max_tokens": 8,
            },
        }
        for i in range(n)
    ]
    data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    file_id = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch").id
    with client:
        return client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id


def _upstream_calls(sim) -> int:
    return sum(sim.stats(slug)["requests"] for slug in HERO_PROVIDERS)


def _after_generations(count: int, change) -> None:
    """Run `change` (on a thread of its own, as another server process would) right after the
    batch's `count`-th generation finishes."""
    seen = []

    def sink(event) -> None:
        seen.append(event)
        if len(seen) == count:
            thread = threading.Thread(target=change)
            thread.start()
            thread.join()

    events.subscribe(sink)
    return sink


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (
            lambda key: account_services.api_key_revoke(api_key=key, actor=None),
            "revoked_api_key",
        ),
        (
            lambda key: APIKey.objects.filter(pk=key.pk).update(
                expires_at=timezone.now() - timedelta(seconds=1)
            ),
            "expired_api_key",
        ),
    ],
    ids=["revoked", "expired"],
)
def test_a_key_revoked_or_expired_mid_run_stops_the_batch(
    openai_client, gateway, sim, settings, alice, change, code
):
    settings.BATCH_ORG_CONCURRENCY = 1  # one item at a time: the 3rd starts after the 2nd
    settings.BATCH_KEY_RECHECK_SECONDS = 0  # every item looks the key up again
    batch_id = _batch(gateway, alice, 6)
    key = APIKey.objects.get(id=Batch.objects.get(pk=batch_id).key_id)
    sink = _after_generations(2, lambda: change(key))
    try:
        assert batch_run(batch_id) == "failed"
    finally:
        events.unsubscribe(sink)

    # No provider call after the check that found the key unusable.
    assert _upstream_calls(sim) == 2
    batch = openai_client.batches.retrieve(batch_id)
    assert batch.status == "failed"
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 4)
    assert batch.errors.data[0].code == code
    failed = BatchItem.objects.filter(batch_id=batch_id, status="failed")
    assert failed.count() == 4
    assert all(item.error["code"] == code for item in failed)
    assert all("API key" in item.error["message"] for item in failed)
    errors = [
        json.loads(line)
        for line in openai_client.files.content(batch.error_file_id).text.splitlines()
    ]
    assert sorted(e["custom_id"] for e in errors) == [f"item-{i}" for i in range(2, 6)]


def test_a_batch_whose_key_is_revoked_before_it_starts_fails_without_a_call(
    openai_client, gateway, sim, alice
):
    batch_id = _batch(gateway, alice, 3)
    key = APIKey.objects.get(id=Batch.objects.get(pk=batch_id).key_id)
    account_services.api_key_revoke(api_key=key, actor=None)
    assert batch_run(batch_id) == "failed"
    assert _upstream_calls(sim) == 0
    batch = openai_client.batches.retrieve(batch_id)
    assert batch.request_counts.failed == 3


def test_a_valid_key_runs_its_batch_to_the_end(openai_client, gateway, sim, settings, alice):
    settings.BATCH_KEY_RECHECK_SECONDS = 0
    batch_id = _batch(gateway, alice, 4)
    assert batch_run(batch_id) == "completed"
    assert _upstream_calls(sim) == 4
