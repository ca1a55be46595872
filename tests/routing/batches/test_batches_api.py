"""Files and batches through the real ASGI app and the official openai SDK; items run through
the gateway to the provider simulator."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import httpx
import openai
import pytest

from billing import selectors, services
from billing.models import LedgerEntry
from routing.batches.models import Batch, BatchItem
from routing.batches.tasks import batch_run, batch_sweep

HERO = "google/gemini-3.1-flash-lite"
HERO_PROVIDERS = ("google-ai-studio", "vertex-ai", "openrouter", "private-vllm")
NANO = Decimal(1_000_000_000)


def line(custom_id: str, prompt: str, **extra) -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": HERO,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 8,
            **extra,
        },
    }


def jsonl(lines: list) -> bytes:
    return b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines)


def upload(client: openai.OpenAI, lines: list) -> str:
    return client.files.create(file=("in.jsonl", io.BytesIO(jsonl(lines))), purpose="batch").id


def results(client: openai.OpenAI, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(x) for x in client.files.content(file_id).text.splitlines() if x]


def upstream_requests(sim) -> int:
    return sum(sim.stats(slug)["requests"] for slug in HERO_PROVIDERS)


def upstream_errors(sim) -> int:
    return sum(sum(sim.stats(slug)["errors"].values()) for slug in HERO_PROVIDERS)


def test_openai_sdk_round_trip(openai_client, sim, alice):
    lines = [line("a", "hello"), line("b", "world"), line("c", "hello")]
    file_id = upload(openai_client, lines)
    assert openai_client.files.retrieve(file_id).purpose == "batch"
    batch = openai_client.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "nightly"},
    )
    assert batch.status == "in_progress"
    assert batch.request_counts.total == 3
    assert batch.metadata == {"job": "nightly"}

    assert batch_run(batch.id) == "completed"
    done = openai_client.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (3, 0)
    assert done.error_file_id is None
    out = results(openai_client, done.output_file_id)
    assert [r["custom_id"] for r in out] == ["a", "b", "c"]
    by_id = {r["custom_id"]: r for r in out}
    assert all(r["response"]["status_code"] == 200 and r["error"] is None for r in out)
    # "a" and "c" are the same request: run once, answered twice, billed once.
    assert by_id["a"]["response"]["body"] == by_id["c"]["response"]["body"]
    assert by_id["a"]["response"]["request_id"] != by_id["b"]["response"]["request_id"]
    assert upstream_requests(sim) == 2
    services.usage_flush()
    entries = LedgerEntry.objects.filter(organization=alice.org, kind="usage")
    assert entries.count() == 2
    assert -sum(e.amount_nanousd for e in entries) == int(
        Decimal(str(done.model_extra["cost"])) * NANO
    )

    # Each upstream call is a generation like any other: logged for the organization.
    from observability.models import RequestLog
    from observability.writer import flush_now, log_buffer

    with log_buffer.paused():  # not while the writer's thread is half-way through a cycle
        flush_now()
    request_ids = {r["response"]["request_id"] for r in out}
    assert (
        RequestLog.objects.filter(organization=alice.org, generation_id__in=request_ids).count()
        == 2
    )

    listed = openai_client.batches.list(limit=10)
    assert [b.id for b in listed.data] == [batch.id]
    assert openai_client.files.delete(file_id).deleted
    with pytest.raises(openai.NotFoundError):
        openai_client.files.retrieve(file_id)


def test_batches_run_at_the_discount(openai_client, sim, settings, alice):
    settings.BATCH_DISCOUNT_PERCENT = 50
    live = openai_client.chat.completions.create(**line("x", "same prompt")["body"])
    live_cost = int(Decimal(str(live.usage.model_extra["cost"])) * NANO)
    batch = openai_client.batches.create(
        input_file_id=upload(openai_client, [line("x", "same prompt")]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    batch_run(batch.id)
    [result] = results(openai_client, openai_client.batches.retrieve(batch.id).output_file_id)
    cost = int(Decimal(result["response"]["body"]["usage"]["cost"]) * NANO)
    assert cost == live_cost * 50 // 100 and cost > 0


def test_a_thousand_lines_with_duplicates_and_faults(openai_client, sim, alice, settings):
    settings.BATCH_RETRY_BASE_SECONDS = 0.01
    unique = 600
    lines = [line(f"req-{i}", f"question {i % unique}") for i in range(1000)]
    # Every provider fails now and then: fallbacks within an item, and when all four fail
    # in a row, the item is retried later.
    for slug, rate in zip(HERO_PROVIDERS, ("0.25", "0.5", "0.5", "0.5"), strict=True):
        sim.set(slug, error_rate=rate, error_kind="500")
    batch = openai_client.batches.create(
        input_file_id=upload(openai_client, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    assert batch_run(batch.id) == "completed"
    done = openai_client.batches.retrieve(batch.id)
    out = results(openai_client, done.output_file_id)
    errors = results(openai_client, done.error_file_id)
    answered = [r["custom_id"] for r in out + errors]
    assert sorted(answered) == sorted(f"req-{i}" for i in range(1000))  # each exactly once
    assert (done.request_counts.completed, done.request_counts.failed) == (len(out), len(errors))
    assert len(out) == 1000 and not errors
    # One upstream call per unique request, plus one per failed call (retried or fallen back).
    assert upstream_requests(sim) == unique + upstream_errors(sim)
    assert upstream_errors(sim) > 0
    services.usage_flush()
    entries = LedgerEntry.objects.filter(organization=alice.org, kind="usage")
    item_costs = sum(
        int(Decimal(r["response"]["body"]["usage"]["cost"]) * NANO)
        for r in {r["response"]["request_id"]: r for r in out}.values()
    )
    assert -sum(e.amount_nanousd for e in entries) == item_costs
    assert item_costs == int(Decimal(str(done.model_extra["cost"])) * NANO)
    assert selectors.billing_check() == []


def test_an_item_failing_every_time_lands_in_the_error_file(openai_client, sim, settings):
    settings.BATCH_MAX_ATTEMPTS = 2
    batch = openai_client.batches.create(
        input_file_id=upload(
            openai_client, [line("bad", "x", max_tokens=10**6), line("good", "y")]
        ),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    batch_run(batch.id)
    done = openai_client.batches.retrieve(batch.id)
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    [error] = results(openai_client, done.error_file_id)
    assert error["custom_id"] == "bad"
    assert error["error"]["code"] == "max_tokens_exceeded"
    assert error["response"]["status_code"] == 400


def test_a_malformed_file_is_refused_with_line_numbers(gateway):
    base_url, secret = gateway
    body = jsonl(
        [
            line("ok", "fine"),
            b"{not json",
            {"custom_id": "m", "method": "GET", "url": "/v1/chat/completions", "body": {}},
            line("ok", "again"),
            {**line("t", "hi"), "body": {"model": HERO, "messages": [], "temperature": 9}},
        ]
    )
    response = httpx.post(
        f"{base_url}/files",
        headers={"Authorization": f"Bearer {secret}"},
        files={"file": ("in.jsonl", body)},
        data={"purpose": "batch"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "file" and error["code"] == "invalid_file"
    message = error["message"]
    for expected in ("line 2: not valid JSON", "line 3: 'method'", "line 4: 'custom_id'", "line 5"):
        assert expected in message, message
    assert "line 1" not in message


def test_a_file_over_the_size_limit_is_413(gateway, settings):
    settings.BATCH_MAX_FILE_BYTES = 500
    base_url, secret = gateway
    response = httpx.post(
        f"{base_url}/files",
        headers={"Authorization": f"Bearer {secret}"},
        files={"file": ("in.jsonl", jsonl([line(str(i), "x" * 50) for i in range(10)]))},
        data={"purpose": "batch"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"


def test_cancel_keeps_finished_results(openai_client, sim):
    batch = openai_client.batches.create(
        input_file_id=upload(openai_client, [line(str(i), f"q{i}") for i in range(5)]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    # Two items finished before the cancel (as a running worker would have).
    first = BatchItem.objects.filter(batch_id=batch.id).order_by("line")[:2]
    from routing.batches import services as batch_services

    claimed = batch_services.items_claim(batch_id=batch.id, limit=2, lease_seconds=60)
    assert [c["id"] for c in claimed] == [i.id for i in first]
    for item in claimed:
        batch_services.item_finish(
            item_id=item["id"],
            succeeded=True,
            status_code=200,
            response={"ok": True},
            error=None,
            generation_id=f"gen-{item['id']}",
            cost_nanousd=0,
        )
    cancelled = openai_client.batches.cancel(batch.id)
    assert cancelled.status == "cancelled"
    assert [r["custom_id"] for r in results(openai_client, cancelled.output_file_id)] == ["0", "1"]
    assert batch_run(batch.id) == "cancelled"  # nothing more runs
    assert upstream_requests(sim) == 0
    assert openai_client.batches.cancel(batch.id).status == "cancelled"  # idempotent


def test_a_finished_batch_cannot_be_cancelled(openai_client, sim):
    batch = openai_client.batches.create(
        input_file_id=upload(openai_client, [line("a", "b")]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    batch_run(batch.id)
    with pytest.raises(openai.ConflictError):
        openai_client.batches.cancel(batch.id)


def test_cancel_stops_a_running_batch(openai_client, sim):
    batch = openai_client.batches.create(
        input_file_id=upload(openai_client, [line(str(i), f"q{i}") for i in range(3)]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    Batch.objects.filter(pk=batch.id).update(status="cancelling")
    assert batch_run(batch.id) == "cancelled"
    assert upstream_requests(sim) == 0


def test_out_of_credit_pauses_and_a_top_up_resumes(openai_client, sim, alice):
    services.billing_account_for(organization=alice.org)
    services.ledger_post(
        organization=alice.org,
        kind=LedgerEntry.Kind.ADJUSTMENT,
        amount_nanousd=-selectors.ledger_sum(organization=alice.org),
        reference="test:drain",
    )
    batch = openai_client.batches.create(
        input_file_id=upload(openai_client, [line(str(i), f"q{i}") for i in range(4)]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    assert batch_run(batch.id) == "in_progress"
    paused = openai_client.batches.retrieve(batch.id)
    assert paused.status == "in_progress"
    assert "credit" in paused.model_extra["paused_reason"].lower()
    assert paused.request_counts.completed == paused.request_counts.failed == 0
    assert upstream_requests(sim) == 0

    services.ledger_post(
        organization=alice.org,
        kind=LedgerEntry.Kind.TOPUP,
        amount_nanousd=NANO.__int__(),
        reference="test:topup",
    )
    assert batch_sweep() == 1  # the periodic sweep restarts it
    done = openai_client.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert done.request_counts.completed == 4
    assert done.model_extra["paused_reason"] is None


def test_an_expired_batch_keeps_what_finished(openai_client, sim):
    from datetime import timedelta

    from django.utils import timezone

    batch = openai_client.batches.create(
        input_file_id=upload(openai_client, [line(str(i), f"q{i}") for i in range(3)]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    Batch.objects.filter(pk=batch.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    batch_sweep()
    assert openai_client.batches.retrieve(batch.id).status == "expired"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"endpoint": "/v1/chat/completions", "completion_window": "24h"}, "input_file_id"),
        ({"input_file_id": "FILE", "endpoint": "/v1/nope", "completion_window": "24h"}, "endpoint"),
        (
            {"input_file_id": "FILE", "endpoint": "/v1/embeddings", "completion_window": "24h"},
            "endpoint",
        ),
        (
            {
                "input_file_id": "FILE",
                "endpoint": "/v1/chat/completions",
                "completion_window": "1h",
            },
            "completion_window",
        ),
        (
            {
                "input_file_id": "FILE",
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"a": 1},
            },
            "metadata",
        ),
    ],
)
def test_bad_batch_requests_are_400(openai_client, gateway, body, param):
    base_url, secret = gateway
    file_id = upload(openai_client, [line("a", "b")])
    if body.get("input_file_id") == "FILE":
        body = {**body, "input_file_id": file_id}
    response = httpx.post(
        f"{base_url}/batches", headers={"Authorization": f"Bearer {secret}"}, json=body
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_another_tenants_files_and_batches_are_404(openai_client, gateway, charlie):
    from accounts import services as account_services

    base_url, _ = gateway
    file_id = upload(openai_client, [line("a", "b")])
    batch = openai_client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    _, other = account_services.api_key_create(
        organization=charlie.org, created_by=charlie.user, name="charlie"
    )
    headers = {"Authorization": f"Bearer {other}"}
    for method, path in [
        ("GET", f"/files/{file_id}"),
        ("GET", f"/files/{file_id}/content"),
        ("DELETE", f"/files/{file_id}"),
        ("GET", f"/batches/{batch.id}"),
        ("POST", f"/batches/{batch.id}/cancel"),
    ]:
        response = httpx.request(method, f"{base_url}{path}", headers=headers)
        assert response.status_code == 404, (method, path)
        assert "error" in response.json()
    response = httpx.post(
        f"{base_url}/batches",
        headers=headers,
        json={
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    assert response.status_code == 404
    listed = httpx.get(f"{base_url}/batches", headers=headers).json()
    assert listed["data"] == []
