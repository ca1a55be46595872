"""File downloads stream chunk by chunk under ASGI (Django would read a synchronous file
iterator whole into memory first, and says so with a warning), through the API and the page."""

from __future__ import annotations

import io
import warnings

import httpx
import pytest

from accounts import services as account_services
from config.asgi import application
from routing.batches import files as batch_files
from tests.observability.helpers import session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

LINE = (
    b'{"custom_id": "%d", "method": "POST", "url": "/v1/chat/completions", "body": '
    b'{"model": "google/gemini-3.1-flash-lite", "messages": [{"role": "user", "content": "hi"}]}}\n'
)


def _big_file(org):
    content = b"".join(LINE % i for i in range(8000))  # ~1 MB: several chunks
    stored = batch_files.file_create(
        organization=org, upload=io.BytesIO(content), filename="in.jsonl", purpose="batch"
    )
    return stored, content


async def _get(path: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        return await client.get(path, headers=headers)


async def test_the_api_streams_a_file_without_reading_it_whole(alice):
    from asgiref.sync import sync_to_async

    stored, content = await sync_to_async(_big_file)(alice.org)
    _, secret = await sync_to_async(account_services.api_key_create)(
        organization=alice.org, created_by=alice.user, name="files"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = await _get(
            f"/v1/files/{stored.id}/content", {"Authorization": f"Bearer {secret}"}
        )
    assert response.status_code == 200
    assert response.content == content
    assert response.headers["content-type"] == "application/jsonl"
    assert 'filename="in.jsonl"' in response.headers["content-disposition"]
    assert not [w for w in caught if "iterator" in str(w.message)]


async def test_the_batch_page_download_streams_too(alice):
    from asgiref.sync import sync_to_async

    from routing.batches import services as batch_services

    def setup():
        stored, content = _big_file(alice.org)
        key, _ = account_services.api_key_create(
            organization=alice.org, created_by=alice.user, name="files"
        )
        batch = batch_services.batch_create(
            organization=alice.org,
            key_id=key.id,
            input_file=stored,
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        output = batch_files.output_file_create(
            organization=alice.org,
            name="out.jsonl",
            handle=io.BytesIO(content),
            size=len(content),
            lines=8000,
        )
        batch.output_file = output
        batch.save(update_fields=["output_file"])
        return batch, content, session_cookie(alice.user)

    batch, content, cookie = await sync_to_async(setup)()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = await _get(
            f"/o/{alice.org.id}/batches/{batch.id}/output.jsonl",
            {"Cookie": cookie.decode()},
        )
    assert response.status_code == 200, response.status_code
    assert response.content == content
    assert not [w for w in caught if "iterator" in str(w.message)]
