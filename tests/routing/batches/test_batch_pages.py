"""The dashboard's batch pages: list, detail with live progress over the organization's
WebSocket, downloads and cancel; members only."""

from __future__ import annotations

import asyncio
import io

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from accounts import services as account_services
from config.asgi import application
from routing.batches import files, services
from routing.batches.runner import run_batch
from routing.http import close_client
from tests.observability.helpers import session_cookie, ws_headers
from tests.routing.batches.test_batches_api import jsonl, line

pytestmark = pytest.mark.django_db(transaction=True)


def _batch(tenant, n: int = 3):
    key, _ = account_services.api_key_create(
        organization=tenant.org, created_by=tenant.user, name="batch"
    )
    stored = files.file_create(
        organization=tenant.org,
        upload=io.BytesIO(jsonl([line(f"c{i}", f"q{i}") for i in range(n)])),
        filename="in.jsonl",
        purpose="batch",
    )
    return services.batch_create(
        organization=tenant.org,
        key_id=key.id,
        input_file=stored,
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )


def test_the_list_and_the_detail_show_progress(alice, login, django_assert_num_queries):
    batches = [_batch(alice) for _ in range(3)]
    client = login(alice.user)
    url = f"/o/{alice.org.id}/batches/"
    client.get(url)  # warm the session
    with django_assert_num_queries(5):
        response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    for batch in batches:
        assert batch.id in body
    detail = client.get(f"/o/{alice.org.id}/batches/{batches[0].id}/")
    assert detail.status_code == 200
    assert 'data-testid="batch-cancel"' in detail.content.decode()
    assert "0</span> of 3 requests" in detail.content.decode()


async def test_progress_reaches_the_page_stream_and_results_download(sim, gateway, alice):
    batch = await _sync(_batch, alice)
    cookie = await _sync(session_cookie, alice.user)
    communicator = WebsocketCommunicator(
        application, f"/ws/orgs/{alice.org.id}/live/", headers=ws_headers(cookie)
    )
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from(timeout=5))["type"] == "snapshot"
    try:
        # The runner on this test's loop, where the consumer lives (in-memory channel layer).
        assert await run_batch(batch.id) == "completed"
    finally:
        await close_client()
    seen = []
    while not seen or seen[-1]["status"] != "completed":
        message = await communicator.receive_json_from(timeout=5)
        if message["type"] == "batch":
            seen.append(message["batch"])
    assert seen[-1]["id"] == batch.id
    assert (seen[-1]["completed"], seen[-1]["total"]) == (3, 3)
    await communicator.disconnect()


async def _sync(fn, *args):
    from asgiref.sync import sync_to_async

    return await sync_to_async(fn)(*args)


async def _read_all(chunks) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def test_download_and_cancel(sim, gateway, alice, login):
    from routing.batches.tasks import batch_run

    done = _batch(alice, 2)
    batch_run(done.id)
    client = login(alice.user)
    response = client.get(f"/o/{alice.org.id}/batches/{done.id}/output.jsonl")
    assert response.status_code == 200
    # Streamed as under ASGI: an async iterator of chunks.
    content = async_to_sync(_read_all)(response.streaming_content).decode()
    assert content.count("custom_id") == 2
    assert client.get(f"/o/{alice.org.id}/batches/{done.id}/errors.jsonl").status_code == 404

    running = _batch(alice, 2)
    response = client.post(f"/o/{alice.org.id}/batches/{running.id}/cancel")
    assert response.status_code == 302
    assert client.get(response.url).context["batch"].status == "cancelled"


def test_another_tenant_cannot_see_a_batch(alice, charlie, login):
    batch = _batch(alice)
    client = login(charlie.user)
    assert client.get(f"/o/{charlie.org.id}/batches/{batch.id}/").status_code == 404
    assert client.get(f"/o/{alice.org.id}/batches/{batch.id}/").status_code == 404
    assert batch.id not in client.get(f"/o/{charlie.org.id}/batches/").content.decode()


async def test_two_batches_of_one_organization_share_its_cap(sim, gateway, alice, settings):
    from django.core.cache import cache

    from routing.batches import runner

    settings.BATCH_ORG_CONCURRENCY = 3
    for slug in ("google-ai-studio", "vertex-ai", "openrouter", "private-vllm"):
        await _sync(lambda s=slug: sim.set(s, latency_ms=60))
    first = await _sync(_batch, alice, 8)
    second = await _sync(_batch, alice, 8)
    runner.concurrency["max"] = 0
    try:
        statuses = await asyncio.gather(run_batch(first.id), run_batch(second.id))
    finally:
        await close_client()
    assert statuses == ["completed", "completed"]
    # Two runners with a cap of 3 each would reach 6 calls at once; the organization's
    # shared cap (the cache, so across worker processes too) holds them to 3 together.
    assert runner.concurrency["max"] == 3
    assert await cache.aget(f"batches:inflight:{alice.org.id}") == 0
