"""GET /v1/generation?id=gen-...: the facts of one generation, for its own organization's keys
(OpenRouter has the same call). Another organization's id answers 404, like an unknown one."""

from __future__ import annotations

from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema

from observability.models import RequestLog
from observability.selectors import request_log_find, usd
from routing.api import schema
from routing.api.base import GatewayApiView, authenticate
from routing.errors import GatewayError, upstream_failure


def _attempt_message(attempt) -> str:
    if attempt.outcome in ("ok", "cancelled"):
        return ""
    return upstream_failure(attempt.outcome, attempt.http_status)


def _usd_number(nano: int) -> orjson.Fragment:
    return orjson.Fragment(usd(nano))


def _iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def generation_json(log: RequestLog) -> dict[str, Any]:
    return {
        "id": log.generation_id,
        "created_at": _iso(log.received_at),
        "finished_at": _iso(log.finished_at),
        "model": log.model,
        "requested_model": log.requested_model,
        "provider": log.provider,
        "key_id": str(log.key_id) if log.key_id else None,
        "streamed": log.streamed,
        "status": log.status,
        "error": log.error_kind or None,
        "tokens_prompt": log.prompt_tokens,
        "tokens_completion": log.completion_tokens,
        "native_tokens_cached": log.cached_tokens,
        "native_tokens_reasoning": log.reasoning_tokens,
        "total_cost": _usd_number(log.cost_nanousd),
        "latency_ms": round(log.total_ms, 1),
        "gateway_ms": log.gateway_ms,
        "time_to_first_token_ms": log.ttft_ms,
        "tokens_per_second": log.tokens_per_second,
        "attempts": [
            {
                "provider": attempt.provider,
                "model": attempt.model,
                "outcome": attempt.outcome,
                "status": attempt.http_status,
                # What the provider said stays in our log: it can name our account there.
                "message": _attempt_message(attempt),
                "started_ms": attempt.offset_ms,
                "duration_ms": attempt.duration_ms,
                "time_to_first_token_ms": attempt.ttft_ms,
                "hedged": attempt.hedged,
            }
            for attempt in log.attempts.all()
        ],
    }


class GenerationApi(GatewayApiView):
    """GET /v1/generation?id=: one generation of the calling key's organization."""

    @extend_schema(
        operation_id="retrieveGeneration",
        summary="Look up one generation: tokens, cost, provider, timings and attempts",
        parameters=[
            OpenApiParameter(
                "id",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                required=True,
                description="The generation id (`gen-...`) from a completion's `id`.",
            )
        ],
        responses={200: dict, **schema.errors(400, 401, 404)},
    )
    async def get(self, request):
        key = await authenticate(request)
        generation_id = request.query_params.get("id", "").strip()
        if not generation_id:
            raise GatewayError(
                400, "Say which generation: ?id=gen-...", code="missing_id", param="id"
            )
        log = await sync_to_async(request_log_find)(
            organization_id=key.organization_id, generation_id=generation_id
        )
        if log is None:
            raise GatewayError(
                404,
                f"No generation '{generation_id[:80]}' in your organization. A generation is "
                "listed here a second or two after it ends.",
                code="generation_not_found",
                param="id",
            )
        return HttpResponse(
            orjson.dumps({"data": generation_json(log)}), content_type="application/json"
        )
