"""Anthropic's Messages API (`POST /v1/messages`) spoken to clients, on the chat path.

A Messages request becomes a chat body (`messages_to_chat`), so admission, limits, holds,
routing, fallback, billing and logs are the chat completions' own; the chat answer, or its
chunk stream, becomes a Message or Anthropic's event stream on the way back.

Anthropic endpoints get the client's request itself (the chat body carries it under
`NATIVE`, and routing.providers.anthropic sends it with only the model and the held output
cap replaced): cache_control on any block, thinking blocks with their signatures, top_k,
documents and tool results reach Anthropic as sent, and what Anthropic answers (its content
blocks, or its events) comes back as it was. Other providers get the translation:

- system (string or text blocks) becomes a system message; text, image (base64 or URL) and
  document (base64 PDF or plain text) blocks become content parts; tool_use blocks become
  tool calls and tool_result blocks tool messages; thinking blocks passed back are dropped
  (only the model that wrote them can read their signature);
- tools, tool_choice (auto, any, tool, none, disable_parallel_tool_use), stop_sequences,
  temperature, top_p and metadata.user_id map to their chat names; thinking (enabled with a
  budget, or adaptive) becomes a reasoning effort;
- the answer's reasoning becomes a thinking block (with an empty signature), its text a text
  block, its tool calls tool_use blocks; finish reasons map to stop reasons.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

import orjson

from routing.errors import GatewayError
from routing.providers.anthropic import NATIVE_REQUEST as NATIVE

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# Our status → Anthropic's error type (the SDKs pick their exception class from the status).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    406: "invalid_request_error",
    409: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# Budgets at or under these become the effort (routing.providers.anthropic maps them back).
EFFORTS = ((1024, "low"), (4096, "medium"))
# Fields of a Messages request a translated call has no use for, but which are not errors.
_ACCEPTED = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "stream",
        "tools",
        "tool_choice",
        "thinking",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
        "output_config",
        "inference_geo",
        # ours, as on chat completions
        "models",
        "provider",
        "route",
        "hedge_after_ms",
    }
)


def error_body(status: int, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
    }


def _bad(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, code="invalid_request_error", param=param)


def _require(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise _bad(f"{where}: {message}", param=where)


# --- request -------------------------------------------------------------------------------


def _media(source: Any, where: str, *, document: bool) -> dict[str, Any]:
    _require(isinstance(source, dict), f"{where}.source", "must be an object.")
    kind = source.get("type")
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        _require(
            isinstance(media_type, str) and isinstance(data, str) and bool(data),
            f"{where}.source",
            "a base64 source needs 'media_type' and 'data'.",
        )
        url = f"data:{media_type};base64,{data}"
        if document:
            return {"type": "file", "file": {"file_data": url}}
        return {"type": "image_url", "image_url": {"url": url}}
    if kind == "url":
        url = source.get("url")
        _require(
            isinstance(url, str) and url.startswith(("http://", "https://")),
            f"{where}.source.url",
            "must be an http(s) URL.",
        )
        if document:
            raise _bad(
                f"{where}: documents by URL reach Anthropic models only; send the PDF as base64.",
                param=where,
            )
        return {"type": "image_url", "image_url": {"url": url}}
    if kind == "text" and document:
        data = source.get("data")
        _require(isinstance(data, str), f"{where}.source.data", "must be a string.")
        return {"type": "text", "text": data}
    raise _bad(f"{where}.source.type: {kind!r} is not supported here.", param=f"{where}.source")


def _text_part(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    _require(isinstance(block.get("text"), str), f"{where}.text", "must be a string.")
    part: dict[str, Any] = {"type": "text", "text": block["text"]}
    if block.get("cache_control"):
        part["cache_control"] = block["cache_control"]
    return part


def _tool_result_text(content: Any, where: str) -> str | list[dict[str, Any]]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    _require(isinstance(content, list), f"{where}.content", "must be a string or blocks.")
    parts = []
    for k, block in enumerate(content):
        at = f"{where}.content[{k}]"
        _require(isinstance(block, dict), at, "must be an object.")
        if block.get("type") == "text":
            parts.append(_text_part(block, at))
        elif block.get("type") == "image":
            parts.append(_media(block.get("source"), at, document=False))
        else:
            raise _bad(f"{at}.type: tool results hold text and image blocks.", param=at)
    return parts


def _user_turn(content: Any, where: str) -> list[dict[str, Any]]:
    """One user turn → chat messages: its tool results first (tool messages), then the rest."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    _require(isinstance(content, list), f"{where}.content", "must be a string or blocks.")
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for k, block in enumerate(content):
        at = f"{where}.content[{k}]"
        _require(isinstance(block, dict), at, "must be an object with a 'type'.")
        kind = block.get("type")
        if kind == "text":
            parts.append(_text_part(block, at))
        elif kind == "image":
            parts.append(_media(block.get("source"), at, document=False))
        elif kind == "document":
            parts.append(_media(block.get("source"), at, document=True))
        elif kind == "tool_result":
            call = block.get("tool_use_id")
            _require(isinstance(call, str) and bool(call), f"{at}.tool_use_id", "is required.")
            text = _tool_result_text(block.get("content"), at)
            if block.get("is_error") and isinstance(text, str):
                text = f"Error: {text}"
            tools.append({"role": "tool", "tool_call_id": call, "content": text})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # only the model that wrote it reads it
        else:
            raise _bad(f"{at}.type: {kind!r} blocks are not supported.", param=at)
    messages = list(tools)
    if parts:
        messages.append({"role": "user", "content": parts})
    return messages


def _assistant_turn(content: Any, where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    _require(isinstance(content, list), f"{where}.content", "must be a string or blocks.")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for k, block in enumerate(content):
        at = f"{where}.content[{k}]"
        _require(isinstance(block, dict), at, "must be an object with a 'type'.")
        kind = block.get("type")
        if kind == "text":
            texts.append(_text_part(block, at)["text"])
        elif kind == "tool_use":
            name, call = block.get("name"), block.get("id")
            _require(isinstance(name, str) and bool(name), f"{at}.name", "is required.")
            _require(isinstance(call, str) and bool(call), f"{at}.id", "is required.")
            arguments = block.get("input")
            _require(isinstance(arguments, dict), f"{at}.input", "must be an object.")
            calls.append(
                {
                    "id": call,
                    "type": "function",
                    "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise _bad(f"{at}.type: {kind!r} blocks are not supported.", param=at)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _system(system: Any) -> dict[str, Any] | None:
    if system is None or system == "":
        return None
    if isinstance(system, str):
        return {"role": "system", "content": system}
    _require(isinstance(system, list), "system", "must be a string or text blocks.")
    parts = []
    for k, block in enumerate(system):
        at = f"system[{k}]"
        _require(isinstance(block, dict) and block.get("type") == "text", at, "must be text.")
        parts.append(_text_part(block, at))
    return {"role": "system", "content": parts} if parts else None


def _tools(tools: Any) -> list[dict[str, Any]]:
    _require(isinstance(tools, list), "tools", "must be a list.")
    result = []
    for k, tool in enumerate(tools):
        at = f"tools[{k}]"
        _require(isinstance(tool, dict), at, "must be an object.")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise _bad(
                f"{at}.type: Anthropic's server tools ({kind}) are not offered here; "
                "define the tool yourself.",
                param=at,
            )
        name = tool.get("name")
        _require(isinstance(name, str) and bool(name), f"{at}.name", "is required.")
        schema = tool.get("input_schema")
        _require(isinstance(schema, dict), f"{at}.input_schema", "must be a JSON schema object.")
        function: dict[str, Any] = {"name": name, "parameters": schema}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        result.append({"type": "function", "function": function})
    return result


def _tool_choice(choice: Any, chat: dict[str, Any]) -> None:
    _require(
        isinstance(choice, dict) and choice.get("type") in ("auto", "any", "tool", "none"),
        "tool_choice",
        'must be {"type": "auto" | "any" | "tool" | "none"}.',
    )
    kind = choice["type"]
    if kind == "tool":
        name = choice.get("name")
        _require(isinstance(name, str) and bool(name), "tool_choice.name", "is required.")
        chat["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        chat["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if choice.get("disable_parallel_tool_use"):
        chat["parallel_tool_calls"] = False


def _effort(thinking: Any) -> str | None:
    _require(isinstance(thinking, dict), "thinking", "must be an object.")
    kind = thinking.get("type")
    if kind == "disabled":
        return None
    if kind == "adaptive":
        return "medium"
    _require(kind == "enabled", "thinking.type", "must be enabled, adaptive or disabled.")
    budget = thinking.get("budget_tokens")
    _require(
        isinstance(budget, int) and not isinstance(budget, bool) and budget >= 1024,
        "thinking.budget_tokens",
        "must be an integer of at least 1024.",
    )
    return next((effort for limit, effort in EFFORTS if budget <= limit), "high")


# Fields an Anthropic endpoint would honour by charging beyond the listed prices (a dearer tier
# or region, MCP and code-execution tool use): refused, since the request reaches Anthropic as
# the client sent it and nothing held covers those charges.
_PRICED = {
    "mcp_servers": "Remote MCP servers are",
    "container": "Code execution containers are",
}


def _check_priced(body: dict[str, Any]) -> None:
    tier = body.get("service_tier")
    if tier not in (None, "auto", "standard_only"):
        raise _bad(
            f"service_tier: {tier!r} is not available: requests run on the standard tier, at "
            "the prices listed for each model. Omit it, or send 'auto' or 'standard_only'.",
            param="service_tier",
        )
    geo = body.get("inference_geo")
    if geo not in (None, "global"):
        raise _bad(
            f"inference_geo: {geo!r} is priced above the listed prices; omit it.",
            param="inference_geo",
        )
    for name, what in _PRICED.items():
        if body.get(name) is not None:
            raise _bad(f"{name}: {what} not supported; remove it from the request.", param=name)


def messages_to_chat(body: Any) -> dict[str, Any]:
    """A Messages request → the chat body the gateway routes (errors: 400, Anthropic's words)."""
    _require(isinstance(body, dict), "body", "must be a JSON object.")
    unknown = sorted(set(body) - _ACCEPTED)
    if unknown:
        raise _bad(f"{unknown[0]}: Extra inputs are not permitted", param=unknown[0])
    _check_priced(body)
    model = body.get("model")
    _require(isinstance(model, str) and bool(model.strip()), "model", "is required.")
    max_tokens = body.get("max_tokens")
    _require(
        isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens >= 1,
        "max_tokens",
        "is required: a positive integer.",
    )
    messages = body.get("messages")
    _require(isinstance(messages, list) and bool(messages), "messages", "must be a non-empty list.")
    chat_messages: list[dict[str, Any]] = []
    system = _system(body.get("system"))
    if system:
        chat_messages.append(system)
    for i, message in enumerate(messages):
        at = f"messages[{i}]"
        _require(isinstance(message, dict), at, "must be an object.")
        role = message.get("role")
        _require(role in ("user", "assistant"), f"{at}.role", "must be user or assistant.")
        if role == "user":
            chat_messages.extend(_user_turn(message.get("content"), at))
        else:
            chat_messages.append(_assistant_turn(message.get("content"), at))
    chat: dict[str, Any] = {"model": model, "messages": chat_messages, "max_tokens": max_tokens}
    for name in ("models", "provider", "route", "hedge_after_ms", "temperature", "top_p"):
        if name in body:
            chat[name] = body[name]
    stream = body.get("stream", False)
    _require(isinstance(stream, bool), "stream", "must be true or false.")
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"], chat)
    if body.get("thinking") is not None:
        effort = _effort(body["thinking"])
        if effort:
            chat["reasoning_effort"] = effort
            chat["include_reasoning"] = True  # thinking blocks are what the client asked for
    stop = body.get("stop_sequences")
    if stop is not None:
        _require(
            isinstance(stop, list) and all(isinstance(s, str) for s in stop),
            "stop_sequences",
            "must be a list of strings.",
        )
        _require(len(stop) <= 4, "stop_sequences", "at most 4 are supported.")
        if stop:
            chat["stop"] = stop
    top_k = body.get("top_k")
    if top_k is not None:
        _require(
            isinstance(top_k, int) and not isinstance(top_k, bool) and top_k >= 0,
            "top_k",
            "must be a non-negative integer.",
        )
    metadata = body.get("metadata")
    if metadata is not None:
        _require(isinstance(metadata, dict), "metadata", "must be an object.")
        user = metadata.get("user_id")
        if user is not None:
            _require(isinstance(user, str), "metadata.user_id", "must be a string.")
            chat["user"] = user
    chat[NATIVE] = {k: v for k, v in body.items() if k not in ("models", "provider", "route")}
    return chat


# --- response ------------------------------------------------------------------------------


def message_id(generation_id: str) -> str:
    """A Message id for a generation: its hex, so the two are found from each other."""
    return "msg_" + generation_id.removeprefix("gen-")


def _usage(chat_usage: Mapping[str, Any]) -> dict[str, Any]:
    prompt = int(chat_usage.get("prompt_tokens") or 0)
    details = chat_usage.get("prompt_tokens_details") or {}
    read = int(details.get("cached_tokens") or 0)
    written = int(details.get("cache_write_tokens") or 0)
    usage = {
        "input_tokens": max(prompt - read - written, 0),
        "output_tokens": int(chat_usage.get("completion_tokens") or 0),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
    }
    if "cost" in chat_usage:
        usage["cost"] = chat_usage["cost"]
    return usage


def _arguments(text: Any) -> dict[str, Any]:
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def chat_to_message(answer: dict[str, Any]) -> dict[str, Any]:
    """A chat completion (the gateway's answer) → a Message."""
    choice = (answer.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    native = answer.get("native")
    if native:
        content = native.get("content") or []
        stop_reason = native.get("stop_reason")
        stop_sequence = native.get("stop_sequence")
    else:
        content = []
        reasoning = message.get("reasoning") or message.get("reasoning_content")
        if reasoning:
            content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
        if message.get("content"):
            content.append({"type": "text", "text": message["content"]})
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                    "name": function.get("name"),
                    "input": _arguments(function.get("arguments")),
                }
            )
        stop_reason = STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn")
        stop_sequence = None
    result = {
        "id": message_id(answer["id"]),
        "type": "message",
        "role": "assistant",
        "model": answer.get("model"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _usage(answer.get("usage") or {}),
        "provider": answer.get("provider"),
    }
    if answer.get("simulated"):
        result["simulated"] = True
    return result


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class MessageStream:
    """The gateway's chat chunks (SSE bytes) → Anthropic's event sequence: message_start,
    ping, per block content_block_start / _delta / _stop, message_delta (stop reason and the
    whole usage), message_stop; a failure after the first byte is an `error` event."""

    def __init__(self, *, input_tokens: int) -> None:
        self.input_tokens = input_tokens
        self.started = False
        self.block: tuple[str, int] | None = None  # (kind, tool call index) of the open block
        self.index = -1
        self.stop_reason: str | None = None
        self.native = False  # an Anthropic endpoint's own events are passed on
        self.pending_delta: dict[str, Any] | None = None  # its message_delta, sent last

    def _start(self, chunk: dict[str, Any]) -> list[bytes]:
        self.started = True
        message = {
            "id": message_id(chunk["id"]),
            "type": "message",
            "role": "assistant",
            "model": chunk.get("model"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.input_tokens,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
            "provider": chunk.get("provider"),
        }
        return [
            _event("message_start", {"type": "message_start", "message": message}),
            _event("ping", {"type": "ping"}),
        ]

    def _close(self) -> list[bytes]:
        if self.block is None:
            return []
        self.block = None
        return [_event("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _open(self, kind: str, call: int, content_block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self.index += 1
        self.block = (kind, call)
        out.append(
            _event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": self.index,
                    "content_block": content_block,
                },
            )
        )
        return out

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _event(
            "content_block_delta",
            {"type": "content_block_delta", "index": self.index, "delta": delta},
        )

    def _native(self, chunk: dict[str, Any], raw: dict[str, Any]) -> list[bytes]:
        """An Anthropic endpoint's own event, passed on (its message_start with our id and
        model; message_stop waits for the bill)."""
        kind = raw.get("type")
        if kind == "message_start":
            message = dict(raw.get("message") or {})
            message["id"] = message_id(chunk["id"])
            message["model"] = chunk.get("model")
            message["provider"] = chunk.get("provider")
            self.started = True
            return [_event("message_start", {**raw, "message": message})]
        if kind == "message_stop" or not kind:
            return []
        if kind == "message_delta":
            self.stop_reason = (raw.get("delta") or {}).get("stop_reason")
            self.pending_delta = raw
            return []
        return [_event(kind, raw)]

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        natives = chunk.get("native_events")
        if natives is not None:
            self.native = True
            for raw in natives:
                out.extend(self._native(chunk, raw))
        if not self.started:
            out.extend(self._start(chunk))
        if chunk.get("error"):
            return out + self._fail(chunk["error"])
        for choice in chunk.get("choices") or ():
            if not self.native:
                out.extend(self._choice(choice))
            reason = choice.get("finish_reason")
            if reason and not self.native:
                self.stop_reason = STOP_REASONS.get(reason, "end_turn")
        if chunk.get("usage") is not None:
            out.extend(self._finish(chunk["usage"]))
        return out

    def _choice(self, choice: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning") or delta.get("reasoning_content")
        if reasoning:
            if self.block is None or self.block[0] != "thinking":
                block = {"type": "thinking", "thinking": "", "signature": ""}
                out += self._open("thinking", 0, block)
            out.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
        if delta.get("content"):
            if self.block is None or self.block[0] != "text":
                out += self._open("text", 0, {"type": "text", "text": ""})
            out.append(self._delta({"type": "text_delta", "text": delta["content"]}))
        for call in delta.get("tool_calls") or ():
            index = call.get("index", 0)
            function = call.get("function") or {}
            if self.block != ("tool", index):
                out += self._open(
                    "tool",
                    index,
                    {
                        "type": "tool_use",
                        "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                        "name": function.get("name"),
                        "input": {},
                    },
                )
            if function.get("arguments"):
                out.append(
                    self._delta({"type": "input_json_delta", "partial_json": function["arguments"]})
                )
        return out

    def _finish(self, chat_usage: dict[str, Any]) -> list[bytes]:
        out = self._close()
        usage = _usage(chat_usage)
        delta = dict((self.pending_delta or {}).get("delta") or {})
        delta.setdefault("stop_reason", self.stop_reason or "end_turn")
        delta.setdefault("stop_sequence", None)
        out.append(
            _event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        )
        out.append(_event("message_stop", {"type": "message_stop"}))
        return out

    def _fail(self, error: dict[str, Any]) -> list[bytes]:
        code = str(error.get("code") or "")
        kind = "overloaded_error" if code in ("overloaded", "rate_limited") else "api_error"
        body = {"type": "error", "error": {"type": kind, "message": error.get("message") or ""}}
        return [_event("error", body)]


async def message_events(
    chunks: AsyncIterator[dict[str, Any]], *, input_tokens: int
) -> AsyncIterator[bytes]:
    """The gateway's chat chunks (`stream_events(sse=False)`) → Anthropic's SSE body, the
    events of one chunk in one write."""
    stream = MessageStream(input_tokens=input_tokens)
    async with aclosing(chunks):
        async for chunk in chunks:
            events = stream.feed(chunk)
            if events:
                yield b"".join(events)


def count_text(body: dict[str, Any]) -> dict[str, Any]:
    """The chat body to estimate a count_tokens request from (the stream flag off)."""
    return {k: v for k, v in body.items() if k not in ("stream", "stream_options", NATIVE)}
