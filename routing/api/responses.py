"""/v1/responses: the Responses API (Open Responses), served by the chat completions path
through routing.wires.responses; stored responses can be retrieved, deleted and continued."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import orjson
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema

from config.db import run_db
from routing import gateway, selectors, services
from routing.api import schema
from routing.api.base import GatewayApiView, authenticate, read_json
from routing.api.views import json_response
from routing.errors import GatewayError, bad_request
from routing.response_store import response_writer
from routing.validation import parse_chat
from routing.wires import responses as wire


async def _history(key, request: wire.ResponsesRequest) -> list[dict[str, Any]] | None:
    """The stored conversation `previous_response_id` continues (one query, only then)."""
    if request.previous_response_id is None:
        return None
    await response_writer.written(request.previous_response_id)
    stored = await run_db(
        lambda: selectors.stored_response_get(
            organization_id=key.organization_id,
            response_id=request.previous_response_id,
            param="previous_response_id",
        )
    )
    return stored.conversation


def _store(
    key,
    request: wire.ResponsesRequest,
    history: list[dict[str, Any]] | None,
    response: dict[str, Any],
    turn: dict[str, Any],
    text: bytes | None = None,
) -> None:
    """Keep the answer (`text`: its JSON, when already written), behind it
    (routing.response_store)."""
    response_writer.add(
        {
            "response_id": response["id"],
            "organization_id": key.organization_id,
            "key_id": key.key_id,
            "response": (text or orjson.dumps(response)).decode(),
            "conversation": [*(history or ()), *request.messages, turn],
            "input_items": request.items,
        }
    )


async def _events(key, request, history, admission, chat, result):
    stream = wire.ResponseStream(
        request,
        generation_id=admission.generation_id,
        created_at=int(admission.received_at),
        model=result.endpoint.model_id,
        provider=result.endpoint.provider,
        simulated=result.endpoint.simulated,
    )
    # The events of one chat chunk go out in one write, as the chunk would have.
    yield b"".join(stream.start())
    # The chat stream's chunks as they are (not written as SSE and read back); closed with
    # this generator, so a client that leaves ends (and bills) the chat stream at once.
    async with aclosing(gateway.stream_events(admission, chat, result, sse=False)) as chunks:
        async for chunk in chunks:
            events = stream.feed(chunk)
            if events:
                yield events
    closing = stream.finish()
    if request.store:
        _store(key, request, history, stream.final, stream.turn)
    yield b"".join(closing)


class ResponsesApi(GatewayApiView):
    """POST /v1/responses."""

    @extend_schema(
        operation_id="createResponse",
        summary="Create a response (streamed as typed SSE events when stream is true)",
        request=schema.ResponseCreateRequest,
        responses={200: schema.ResponseObject, **schema.errors(400, 401, 403, 404, 413, 429, 502)},
        examples=[schema.RESPONSE_EXAMPLE],
        tags=["responses"],
    )
    async def post(self, request):
        key = await authenticate(request)
        asked = wire.read_request(read_json(request))
        history = await _history(key, asked)
        try:
            chat = parse_chat(asked.chat_body(history))
            admission = await gateway.admit_chat(key, chat)
        except GatewayError as error:
            raise wire.in_our_words(error) from None
        if not asked.stream:
            answer = await gateway.complete(admission, chat)
            response, turn = wire.response_from_chat(asked, answer)
            text = orjson.dumps(response)
            if asked.store:
                _store(key, asked, history, response, turn, text)
            answered = HttpResponse(text, content_type="application/json")
            for name, value in admission.headers.items():
                answered[name] = value
            return answered
        result = await gateway.open_stream(admission, chat)
        streamed = StreamingHttpResponse(
            _events(key, asked, history, admission, chat, result),
            content_type="text/event-stream",
        )
        streamed["Cache-Control"] = "no-cache"
        streamed["X-Accel-Buffering"] = "no"
        for name, value in admission.headers.items():
            streamed[name] = value
        return streamed


def _stored_json(stored) -> HttpResponse:
    return HttpResponse(stored.response, content_type="application/json")


class ResponseDetailApi(GatewayApiView):
    """GET and DELETE /v1/responses/{id}: the organization's own stored responses only."""

    @extend_schema(
        operation_id="retrieveResponse",
        responses={200: schema.ResponseObject, **schema.errors(401, 404)},
        tags=["responses"],
    )
    async def get(self, request, response_id: str):
        key = await authenticate(request)
        await response_writer.written(response_id)
        stored = await run_db(
            lambda: selectors.stored_response_get(
                organization_id=key.organization_id, response_id=response_id
            )
        )
        return _stored_json(stored)

    @extend_schema(
        operation_id="deleteResponse",
        responses={200: schema.ResponseDeleted, **schema.errors(401, 404)},
        tags=["responses"],
    )
    async def delete(self, request, response_id: str):
        key = await authenticate(request)
        await response_writer.written(response_id)

        def delete():
            stored = selectors.stored_response_get(
                organization_id=key.organization_id, response_id=response_id
            )
            services.stored_response_delete(stored=stored)

        await run_db(delete)
        return json_response({"id": response_id, "object": "response.deleted", "deleted": True})


def _item_id(response_id: str, n: int, item: dict[str, Any]) -> str:
    if isinstance(item.get("id"), str) and item["id"]:
        return item["id"]
    return f"in_{response_id.removeprefix(wire.RESPONSE_PREFIX)}_{n}"


class ResponseInputItemsApi(GatewayApiView):
    """GET /v1/responses/{id}/input_items: the items the response was created from."""

    @extend_schema(
        operation_id="listResponseInputItems",
        parameters=[
            OpenApiParameter("order", str, enum=["asc", "desc"], required=False),
            OpenApiParameter("limit", int, required=False),
            OpenApiParameter("after", str, required=False),
        ],
        responses={200: schema.ResponseItemList, **schema.errors(400, 401, 404)},
        tags=["responses"],
    )
    async def get(self, request, response_id: str):
        key = await authenticate(request)
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise bad_request("'order' must be asc or desc.", param="order")
        raw = request.query_params.get("limit", "20")
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise bad_request("'limit' must be between 1 and 100.", param="limit")
        limit = int(raw)
        await response_writer.written(response_id)
        stored = await run_db(
            lambda: selectors.stored_response_get(
                organization_id=key.organization_id, response_id=response_id
            )
        )
        items = [
            {**item, "id": _item_id(response_id, n, item)}
            for n, item in enumerate(stored.input_items)
        ]
        if order == "desc":
            items.reverse()
        after = request.query_params.get("after")
        if after:
            ids = [item["id"] for item in items]
            if after not in ids:
                raise bad_request("'after' is not an item of this response.", param="after")
            items = items[ids.index(after) + 1 :]
        page = items[:limit]
        return json_response(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(items) > limit,
            }
        )
