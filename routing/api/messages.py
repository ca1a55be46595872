"""Anthropic's Messages API: POST /v1/messages and /v1/messages/count_tokens, on the chat
completions' request path (routing.wires.anthropic translates), errors in Anthropic's shape."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.utils import extend_schema

from routing import gateway
from routing.api import schema
from routing.api.base import GatewayApiView, authenticate, read_json
from routing.api.views import json_response
from routing.errors import GatewayError
from routing.snapshot import catalog
from routing.tokens import estimate_prompt
from routing.validation import parse_chat
from routing.wires import anthropic as wire


class AnthropicApiView(GatewayApiView):
    """Errors as Anthropic sends them: {"type": "error", "error": {"type", "message"}}, with
    the status (and headers: Retry-After, rate limits) the chat API would answer."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        error = (response.data or {}).get("error") if isinstance(response.data, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        response.data = wire.error_body(response.status_code, message or response.reason_phrase)
        return response


class MessagesApi(AnthropicApiView):
    """POST /v1/messages: Anthropic's Messages API for every chat model in the catalog."""

    @extend_schema(
        operation_id="createMessage",
        summary="Create a message, Anthropic's Messages API (streamed as SSE when stream is true)",
        request=dict,
        responses={200: dict, **schema.errors(400, 401, 402, 403, 404, 413, 429, 502)},
    )
    async def post(self, request):
        key = await authenticate(request)
        chat = parse_chat(wire.messages_to_chat(read_json(request)))
        admission = await gateway.admit_chat(key, chat)
        if not chat.stream:
            answer = await gateway.complete(admission, chat)
            return json_response(wire.chat_to_message(answer), headers=admission.headers)
        result = await gateway.open_stream(admission, chat)
        events = wire.message_events(
            gateway.stream_events(admission, chat, result, sse=False),
            input_tokens=admission.prompt_for(result.endpoint),
        )
        response = StreamingHttpResponse(events, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        for name, value in admission.headers.items():
            response[name] = value
        return response


class CountTokensApi(AnthropicApiView):
    """POST /v1/messages/count_tokens: the prompt's tokens as the gateway counts them for its
    limits (an estimate: the provider counts exactly when it answers)."""

    @extend_schema(
        operation_id="countMessageTokens",
        request=dict,
        responses={200: dict, **schema.errors(400, 401, 404)},
    )
    async def post(self, request):
        await authenticate(request)
        body = read_json(request)
        if isinstance(body, dict):
            body = {**body, "max_tokens": body.get("max_tokens", 1)}
        chat = parse_chat(wire.messages_to_chat(body))
        snapshot = await catalog.aget()
        if snapshot.resolve(chat.model_names[0]) is None:
            raise GatewayError(
                404,
                f"model: {chat.model_names[0]} is not a model of this gateway.",
                code="model_not_found",
                param="model",
            )
        return json_response({"input_tokens": estimate_prompt(wire.count_text(chat.body)).typical})
