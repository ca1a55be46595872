"""The /v1 API: chat completions, embeddings, models, and the calling key."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema

from config.db import run_db
from routing import gateway
from routing.api import schema
from routing.api.base import GatewayApiView, authenticate, read_json
from routing.errors import GatewayError
from routing.snapshot import catalog
from routing.validation import parse_chat, parse_embeddings


def json_response(data, *, status: int = 200, headers: dict[str, str] | None = None):
    response = HttpResponse(orjson.dumps(data), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response[name] = value
    return response


class ChatCompletionsApi(GatewayApiView):
    """POST /v1/chat/completions: OpenAI-compatible, routed across providers."""

    @extend_schema(
        operation_id="createChatCompletion",
        summary="Create a chat completion (streamed as SSE when stream is true)",
        request=schema.ChatCompletionRequest,
        responses={
            (200, "application/json"): schema.ChatCompletion,
            (200, "text/event-stream"): schema.ChatCompletionChunk,
            **schema.errors(400, 401, 403, 404, 413, 429, 502),
        },
        examples=[schema.CHAT_EXAMPLE],
    )
    async def post(self, request):
        key = await authenticate(request)
        chat = parse_chat(read_json(request))
        admission = await gateway.admit_chat(key, chat)
        if not chat.stream:
            body = await gateway.complete(admission, chat)
            return json_response(body, headers=admission.headers)
        result = await gateway.open_stream(admission, chat)
        response = StreamingHttpResponse(
            gateway.stream_events(admission, chat, result), content_type="text/event-stream"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        for name, value in admission.headers.items():
            response[name] = value
        return response


class EmbeddingsApi(GatewayApiView):
    """POST /v1/embeddings."""

    @extend_schema(
        operation_id="createEmbeddings",
        request=schema.EmbeddingsRequest,
        responses={200: schema.EmbeddingsResponse, **schema.errors(400, 401, 403, 404, 429, 502)},
    )
    async def post(self, request):
        key = await authenticate(request)
        model, inputs, body = parse_embeddings(read_json(request))
        answer, headers = await gateway.embed(key, model, inputs, body)
        return json_response(answer, headers=headers)


def model_json(model, *, detail: bool = False) -> dict:
    cheapest = min(model.endpoints, key=lambda e: e.blended_price, default=None)
    data = {
        "id": model.id,
        "object": "model",
        "created": model.created,
        "owned_by": model.id.split("/", 1)[0],
        "name": model.name,
        "description": model.description,
        "aliases": list(model.aliases),
        "context_length": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "input_modalities": list(model.input_modalities),
        "capabilities": {
            "tools": model.supports_tools,
            "structured_output": model.supports_structured_output,
            "reasoning_levels": list(model.reasoning_levels),
            "embeddings": model.is_embedding,
        },
        "pricing": {
            "prompt": gateway.price_usd(cheapest.input_price) if cheapest else None,
            "completion": gateway.price_usd(cheapest.output_price) if cheapest else None,
            "unit": "USD per 1M tokens",
        },
    }
    if detail:
        data["endpoints"] = [
            {
                "provider": e.provider,
                "provider_name": e.provider_name,
                "region": e.region,
                "upstream_model": e.target.upstream_model,
                "simulated": e.simulated,
                "context_length": e.context_window,
                "max_output_tokens": e.max_output_tokens,
                "pricing": {
                    "prompt": gateway.price_usd(e.input_price),
                    "cached_prompt": gateway.price_usd(e.cached_input_price),
                    # Prompt tokens written to the cache (cache_control), by TTL.
                    "cache_write": gateway.price_usd(e.cache_write_price),
                    "cache_write_1h": gateway.price_usd(e.cache_write_1h_price),
                    "completion": gateway.price_usd(e.output_price),
                    "reasoning": gateway.price_usd(e.reasoning_price),
                    "unit": "USD per 1M tokens",
                },
                "nominal_latency_ms": e.nominal_latency_ms,
                "nominal_throughput_tps": e.nominal_throughput_tps,
            }
            for e in sorted(model.endpoints, key=lambda e: e.blended_price)
        ]
    return data


def anthropic_model_json(model) -> dict:
    """A model as Anthropic's Models API lists it (for clients that send anthropic-version)."""
    created = datetime.fromtimestamp(model.created or 0, tz=UTC)
    return {
        "type": "model",
        "id": model.id,
        "display_name": model.name,
        "created_at": created.isoformat().replace("+00:00", "Z"),
    }


def speaks_anthropic(request) -> bool:
    return "HTTP_ANTHROPIC_VERSION" in request.META


class ModelListApi(GatewayApiView):
    """GET /v1/models: the catalog. Public, like the model pages. In Anthropic's shape when
    the request carries an anthropic-version header (the Anthropic SDKs send it)."""

    @extend_schema(operation_id="listModels", responses={200: schema.ModelList}, auth=[])
    async def get(self, request):
        snapshot = await catalog.aget()
        models = [m for m in snapshot.models if m.endpoints]
        if speaks_anthropic(request):
            data = [anthropic_model_json(m) for m in models]
            return json_response(
                {
                    "data": data,
                    "has_more": False,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                }
            )
        return json_response({"object": "list", "data": [model_json(m) for m in models]})


class ModelDetailApi(GatewayApiView):
    """GET /v1/models/{id}: one model with its endpoints, prices and context."""

    @extend_schema(
        operation_id="retrieveModel", responses={200: schema.Model, **schema.errors(404)}, auth=[]
    )
    async def get(self, request, model_id: str):
        snapshot = await catalog.aget()
        model = snapshot.resolve(model_id)
        if model is None:
            raise GatewayError(
                404,
                f"The model '{model_id}' does not exist. "
                f"Did you mean: {', '.join(snapshot.suggest(model_id))}?",
                code="model_not_found",
                param="model",
            )
        if speaks_anthropic(request):
            return json_response(anthropic_model_json(model))
        return json_response(model_json(model, detail=True))


class KeyInfoApi(GatewayApiView):
    """GET /v1/key: what the calling key is and may do (OpenRouter has the same call)."""

    @extend_schema(operation_id="retrieveKey", responses={200: dict, **schema.errors(401)})
    async def get(self, request):
        key = await authenticate(request)
        spend = await run_db(lambda: _key_spend(key))
        return json_response(
            {
                "data": {
                    "id": str(key.key_id),
                    "name": key.name,
                    "organization_id": str(key.organization_id),
                    "expires_at": key.expires_at.isoformat() if key.expires_at else None,
                    "limits": {
                        "spend_limit_usd_nano": key.spend_limit_nanousd,
                        "spend_limit_period": key.spend_limit_period,
                        "rpm": key.rpm_limit,
                        "tpm": key.tpm_limit,
                    },
                    "allowed_models": list(key.allowed_models),
                    **spend,
                }
            }
        )


def _key_spend(key) -> dict:
    """This period's spend of the key, and what is left of its limit and of the prepaid credit
    (as the ledger says; requests still in flight are not counted yet)."""
    from billing import selectors as billing

    now = timezone.now()
    spent = billing.usage_spent(
        organization_id=key.organization_id,
        key_id=key.key_id,
        period=key.spend_limit_period,
        at=now,
    )
    account = billing.ledger_credits(organization_id=key.organization_id)
    balance = account[1] if account else 0
    limit = key.spend_limit_nanousd
    return {
        "usage": {
            "period": key.spend_limit_period,
            "spent_usd": gateway.usd_fragment(spent),
            "limit_usd": gateway.usd_fragment(limit) if limit is not None else None,
            "limit_remaining_usd": (
                gateway.usd_fragment(max(limit - spent, 0)) if limit is not None else None
            ),
        },
        "credit_remaining_usd": gateway.usd_fragment(max(balance, 0)),
    }
