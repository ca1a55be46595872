"""OpenAI-compatible endpoints: OpenAI, OpenRouter, Groq, vLLM, Ollama, ...

Almost a pass-through. The request keeps only OpenAI's own fields (our gateway fields such as
`provider`, `models`, `route` or `hedge_after_ms` never leave us), gets the endpoint's model
name, and, when streamed, always asks for the usage chunk: billing needs it; the gateway strips
it again if the client didn't ask.

`store` is always false upstream: a tenant's completions are never kept in our provider
account (OpenAI's stored completions, distillation, evals), whatever the client sent. OpenAI
accepts `metadata` only with `store` on (400 otherwise), and it only labels stored completions,
so it is dropped too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from routing.providers.base import (
    Adapter,
    ErrorKind,
    StreamDecoder,
    Target,
    UpstreamError,
    UpstreamRequest,
    Usage,
)
from routing.providers.common import (
    SSEStreamDecoder,
    auth_headers,
    body_excerpt,
    parse_json_body,
    retry_after,
)

CHAT_FIELDS = frozenset(
    {
        "messages",
        "model",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
EMBEDDING_FIELDS = frozenset({"input", "model", "encoding_format", "dimensions", "user"})
# Top-level fields of a chat.completion worth keeping besides choices (id, model, created and
# usage are the gateway's to write).
RESPONSE_FIELDS = ("system_fingerprint", "service_tier")


def openai_usage(usage: Mapping[str, Any] | None) -> Usage:
    if not usage:
        return Usage()
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(prompt_details.get("cached_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
        # OpenRouter reports the prompt tokens an Anthropic model wrote to its cache here.
        cache_write_tokens=int(prompt_details.get("cache_write_tokens") or 0),
    )


def _kind_for(status: int | None, error: Mapping[str, Any], message: str) -> ErrorKind:
    code = str(error.get("code") or "").lower()
    etype = str(error.get("type") or "").lower()
    text = message.lower()
    if code == "context_length_exceeded" or "maximum context length" in text:
        return ErrorKind.CONTEXT_LENGTH
    if code in ("content_filter", "content_policy_violation"):
        return ErrorKind.CONTENT_FILTER
    if status in (400, 403) and "flagged" in text:  # OpenRouter's moderation refusal
        return ErrorKind.CONTENT_FILTER
    if code == "insufficient_quota" or etype == "insufficient_quota":
        return ErrorKind.AUTH  # our account there is out of money: no point waiting
    if status is None and code.isdigit():  # OpenRouter puts the HTTP status in `code`
        status = int(code)
    if status in (401, 402, 403):
        return ErrorKind.AUTH  # 402: our OpenRouter credits ran out; another endpoint may do
    if status == 404:
        return ErrorKind.NOT_FOUND
    if status == 408:
        return ErrorKind.TIMEOUT
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status is None or status >= 500 or status == 409:
        return ErrorKind.OVERLOADED
    return ErrorKind.BAD_REQUEST


def openai_error(
    status: int | None, headers: Mapping[str, str], body: bytes | Mapping[str, Any]
) -> UpstreamError:
    data = body if isinstance(body, Mapping) else parse_json_body(body)
    error = data.get("error") if isinstance(data, Mapping) else None
    if isinstance(error, str):  # some OpenAI-compatible servers send {"error": "..."}
        error = {"message": error}
    if not isinstance(error, Mapping):
        error = {}
    message = str(error.get("message") or "")
    if not message:
        message = body_excerpt(body) if isinstance(body, bytes) else ""
        message = message or f"HTTP {status}"
    kind = _kind_for(status, error, message)
    return UpstreamError(
        kind,
        message,
        status=status,
        retry_after=retry_after(headers) if kind is ErrorKind.RATE_LIMITED else None,
        from_provider=True,
    )


class OpenAIStreamDecoder(SSEStreamDecoder):
    def _event(self, event: str, data: str, out: list[dict[str, Any]], final: bool) -> None:
        if data == "[DONE]":
            self.done = True
            return
        obj = self._json(data, final)
        if not isinstance(obj, dict):
            return
        if obj.get("error"):  # OpenRouter reports a failure mid-stream this way
            raise openai_error(None, {}, obj)
        usage = obj.get("usage") or (obj.get("x_groq") or {}).get("usage")
        if usage:
            self.usage = openai_usage(usage)
        choices = obj.get("choices")
        if not choices:  # the usage-only chunk: the gateway writes its own
            return
        for choice in choices:
            index = choice.get("index", 0)
            if index not in self._roles_sent:
                self._roles_sent.add(index)
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    delta.setdefault("role", "assistant")
        result: dict[str, Any] = {"object": "chat.completion.chunk", "choices": choices}
        if obj.get("system_fingerprint"):
            result["system_fingerprint"] = obj["system_fingerprint"]
        out.append(result)


class OpenAIAdapter(Adapter):
    wire = "openai"
    logprobs = True
    max_choices = 128

    def chat_request(
        self, target: Target, body: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        payload = {key: value for key, value in body.items() if key in CHAT_FIELDS}
        payload["model"] = target.upstream_model
        payload["store"] = False
        payload.pop("metadata", None)
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {
                **(payload.get("stream_options") or {}),
                "include_usage": True,
            }
        else:
            payload.pop("stream", None)
            payload.pop("stream_options", None)  # OpenAI rejects it without stream
        return UpstreamRequest(
            "POST", f"{target.base_url}/chat/completions", auth_headers(target), payload
        )

    def chat_response(self, target: Target, data: dict[str, Any]) -> tuple[dict[str, Any], Usage]:
        if data.get("error") and not data.get("choices"):  # OpenRouter can say 200 and fail
            raise openai_error(None, {}, data)
        result: dict[str, Any] = {"object": "chat.completion", "choices": data.get("choices") or []}
        for key in RESPONSE_FIELDS:
            if data.get(key) is not None:
                result[key] = data[key]
        return result, openai_usage(data.get("usage"))

    def stream_decoder(self, target: Target) -> StreamDecoder:
        return OpenAIStreamDecoder()

    def embeddings_request(self, target: Target, body: dict[str, Any]) -> UpstreamRequest:
        payload = {key: value for key, value in body.items() if key in EMBEDDING_FIELDS}
        payload["model"] = target.upstream_model
        return UpstreamRequest(
            "POST", f"{target.base_url}/embeddings", auth_headers(target), payload
        )

    def embeddings_response(
        self, target: Target, data: dict[str, Any]
    ) -> tuple[dict[str, Any], Usage]:
        if data.get("error") and not data.get("data"):
            raise openai_error(None, {}, data)
        usage = data.get("usage") or {}
        # `data` is forwarded as given: float lists or base64 strings, never re-encoded.
        return {"object": "list", "data": data.get("data") or []}, Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0)
        )

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return openai_error(status, headers, body)
