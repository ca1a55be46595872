"""Anthropic Messages API (`POST {base_url}/v1/messages`).

Translation notes:
- system and developer messages become the top-level `system` (joined by blank lines, or as
  blocks when a part carries `cache_control`); consecutive same-role messages are merged
  because Anthropic wants user and assistant turns to alternate, and `tool` messages become
  `tool_result` blocks of a user turn.
- `response_format` (json_schema or json_object) has no Anthropic equivalent: it is emulated
  with a tool named `json_output` whose input_schema is the schema, forced through
  tool_choice (or `any` when the client also offered tools). On the way back a `json_output`
  call becomes `message.content` (a JSON string) with finish_reason "stop"; streamed, its
  `input_json_delta`s become content deltas. A client tool of that name would be misread.
- `reasoning_effort` becomes `thinking` with a token budget (low 1024, medium 4096,
  high 16384). Anthropic counts thinking inside max_tokens and needs it above the budget: the
  gateway asks `output_cap` for budget + the answer's room and holds that; a request whose cap
  is still at or below the budget gets half the cap as budget, or no thinking below 2,048
  (the adapter never raises the cap it was given: that is what was held). Thinking is left
  off where Anthropic forbids it: forced tool use (named or `required` tool_choice, the JSON
  emulation) and an ongoing tool loop (Anthropic wants the earlier turn's signed thinking
  blocks back, which an OpenAI client does not keep). With thinking on, temperature is
  dropped and a top_p below 0.95 too (Anthropic rejects them).
- temperature is capped at 1.0 (Anthropic's range is 0..1, OpenAI's 0..2).
- thinking text comes back as `message.reasoning` / `delta.reasoning` (as OpenRouter does).
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
    chunk,
    dumps,
    function_tools,
    image_url_of,
    max_tokens_of,
    parse_arguments,
    parse_data_url,
    parse_json_body,
    retry_after,
    stop_list,
)

ANTHROPIC_VERSION = "2023-06-01"
# The key of a chat body under which /v1/messages (routing.wires.anthropic) puts the client's
# own Messages request: sent as it was, with our model name and the held output cap.
NATIVE_REQUEST = "anthropic_request"
JSON_TOOL = "json_output"
DEFAULT_MAX_TOKENS = 4096
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}
MIN_THINKING_BUDGET = 1024  # Anthropic refuses a smaller budget_tokens
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
ERROR_TYPES = {
    "invalid_request_error": ErrorKind.BAD_REQUEST,
    "request_too_large": ErrorKind.BAD_REQUEST,
    "authentication_error": ErrorKind.AUTH,
    "permission_error": ErrorKind.AUTH,
    "billing_error": ErrorKind.AUTH,
    "not_found_error": ErrorKind.NOT_FOUND,
    "rate_limit_error": ErrorKind.RATE_LIMITED,
    "timeout_error": ErrorKind.TIMEOUT,
    "api_error": ErrorKind.OVERLOADED,
    "overloaded_error": ErrorKind.OVERLOADED,
}
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


# --- request -------------------------------------------------------------------------------


def _image_block(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        media_type, data = parse_data_url(url)
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _text_block(part: Mapping[str, Any]) -> dict[str, Any] | None:
    text = part.get("text") or ""
    if not text:  # Anthropic rejects empty text blocks
        return None
    block: dict[str, Any] = {"type": "text", "text": text}
    if part.get("cache_control"):  # prompt caching hints some clients send (OpenRouter style)
        block["cache_control"] = part["cache_control"]
    return block


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            block = _text_block(part)
            if block:
                blocks.append(block)
        elif kind == "image_url":
            blocks.append(_image_block(image_url_of(part)))
        elif kind == "file":
            file = part.get("file") or {}
            data_url = file.get("file_data") or ""
            if not data_url.startswith("data:"):
                raise UpstreamError(ErrorKind.BAD_REQUEST, "file parts need inline file_data")
            media_type, data = parse_data_url(data_url)
            blocks.append(
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": media_type, "data": data},
                }
            )
        elif kind == "refusal":
            continue
        else:
            raise UpstreamError(ErrorKind.BAD_REQUEST, f"anthropic does not take {kind!r} parts")
    return blocks


def _assistant_blocks(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    blocks = _content_blocks(message.get("content"))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": parse_arguments(function.get("arguments")),
            }
        )
    return blocks


def _tool_result(message: Mapping[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    content = message.get("content")
    if isinstance(content, list):
        content = _content_blocks(content)
    if content:
        block["content"] = content
    return block


def _translate_messages(
    messages: list[Mapping[str, Any]],
) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def push(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(
                block
                for block in _content_blocks(message.get("content"))
                if block["type"] == "text"
            )
        elif role == "user":
            push("user", _content_blocks(message.get("content")))
        elif role == "assistant":
            push("assistant", _assistant_blocks(message))
        elif role == "tool":
            push("user", [_tool_result(message)])
        else:
            raise UpstreamError(ErrorKind.BAD_REQUEST, f"unsupported message role {role!r}")

    for turn in turns:  # a lone plain text block reads better (and is shorter) as a string
        blocks = turn["content"]
        if len(blocks) == 1 and blocks[0]["type"] == "text" and len(blocks[0]) == 2:
            turn["content"] = blocks[0]["text"]
    system_value: str | list[dict[str, Any]] | None = None
    if system:
        plain = all(len(block) == 2 for block in system)
        system_value = "\n\n".join(block["text"] for block in system) if plain else system
    return system_value, turns


def _tool_choice(body: Mapping[str, Any], has_tools: bool, json_mode: bool) -> dict | None:
    if not (has_tools or json_mode):
        return None  # Anthropic takes tool_choice only beside tools
    choice = body.get("tool_choice")
    result: dict[str, Any] | None
    if isinstance(choice, Mapping):
        name = (choice.get("function") or {}).get("name")
        result = {"type": "tool", "name": name}
    elif json_mode:
        # Answer through json_output; with client tools, let the model pick a tool or it.
        result = (
            {"type": "any"}
            if has_tools and choice not in ("none",)
            else {"type": "tool", "name": JSON_TOOL}
        )
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        result = {"type": "none"}
    elif choice == "auto":
        result = {"type": "auto"}
    else:
        result = None
    if body.get("parallel_tool_calls") is False and (has_tools or json_mode):
        result = result or {"type": "auto"}
        if result["type"] != "none":
            result["disable_parallel_tool_use"] = True
    return result


def _thinking_budget(body: Mapping[str, Any]) -> int | None:
    """The thinking budget `reasoning_effort` asks for, None where Anthropic forbids thinking:
    forced tool use (a named or `required` tool_choice, the JSON emulation) and an ongoing
    tool loop. Read from the OpenAI body, so the hold (`output_cap`) and the request agree."""
    budget = THINKING_BUDGETS.get(body.get("reasoning_effort") or "")
    if not budget:
        return None
    response_format = body.get("response_format") or {}
    json_mode = response_format.get("type") in ("json_schema", "json_object")
    has_tools = bool(function_tools(body.get("tools")))
    choice = _tool_choice(body, has_tools, json_mode)
    if choice and choice["type"] in ("any", "tool"):
        return None
    # The last assistant turn (consecutive assistant messages merge into one) called tools.
    messages = body.get("messages") or []
    seen_assistant = False
    for message in reversed(messages):
        if message.get("role") == "assistant":
            seen_assistant = True
            if message.get("tool_calls"):
                return None
        elif seen_assistant:
            break
    return budget


def _native_budget(body: Mapping[str, Any]) -> int | None:
    """The thinking budget of a client's own Messages request (NATIVE_REQUEST), if enabled."""
    native = body.get(NATIVE_REQUEST)
    thinking = native.get("thinking") if isinstance(native, Mapping) else None
    if isinstance(thinking, Mapping) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        return budget if isinstance(budget, int) and budget > 0 else None
    return None


# --- response ------------------------------------------------------------------------------


def anthropic_usage(usage: Mapping[str, Any] | None) -> Usage:
    """`input_tokens` excludes the tokens read from and written to the cache. Writes are
    split by TTL in `cache_creation` (5 min at 1.25x the input price, 1 h at 2x); without
    that breakdown (older API versions) they are all 5-minute writes."""
    if not usage:
        return Usage()
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    by_ttl = usage.get("cache_creation")
    written_1h = 0
    if isinstance(by_ttl, Mapping):
        written_1h = int(by_ttl.get("ephemeral_1h_input_tokens") or 0)
        written_5m = int(by_ttl.get("ephemeral_5m_input_tokens") or 0)
        cache_write = max(cache_write, written_5m + written_1h)
    return Usage(
        prompt_tokens=int(usage.get("input_tokens") or 0) + cache_read + cache_write,
        completion_tokens=int(usage.get("output_tokens") or 0),
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=min(written_1h, cache_write),
    )


def anthropic_error(
    status: int | None, headers: Mapping[str, str], body: bytes | Mapping[str, Any]
) -> UpstreamError:
    data = body if isinstance(body, Mapping) else parse_json_body(body)
    error = data.get("error") if isinstance(data, Mapping) else None
    if not isinstance(error, Mapping):
        error = {}
    etype = str(error.get("type") or "")
    message = str(error.get("message") or "")
    if not message:
        message = (body_excerpt(body) if isinstance(body, bytes) else "") or f"HTTP {status}"
    text = message.lower()
    if status is None:
        status = ERROR_STATUS.get(etype)
    if "prompt is too long" in text or "exceed context limit" in text:
        kind = ErrorKind.CONTEXT_LENGTH
    elif "credit balance is too low" in text:
        kind = ErrorKind.AUTH  # our Anthropic account can't pay; another endpoint might
    elif status in (401, 402, 403):
        kind = ErrorKind.AUTH
    elif status == 404:
        kind = ErrorKind.NOT_FOUND
    elif status == 408:
        kind = ErrorKind.TIMEOUT
    elif status == 429:
        kind = ErrorKind.RATE_LIMITED
    elif status is not None and 400 <= status < 500:
        kind = ErrorKind.BAD_REQUEST  # 400 invalid_request_error, 413 request_too_large
    else:
        kind = ERROR_TYPES.get(etype, ErrorKind.OVERLOADED)  # 500 api_error, 529 overloaded
    return UpstreamError(
        kind,
        message,
        status=status,
        retry_after=retry_after(headers) if kind is ErrorKind.RATE_LIMITED else None,
        from_provider=True,
    )


class AnthropicStreamDecoder(SSEStreamDecoder):
    def __init__(self) -> None:
        super().__init__()
        self._usage: dict[str, Any] = {}
        self._blocks: dict[int, tuple[str, int]] = {}  # block index → (kind, tool call index)
        self._tool_calls = 0

    def _set_usage(self, usage: Mapping[str, Any] | None) -> None:
        if not usage:
            return
        # message_delta repeats the counts cumulatively: keep the latest, never add.
        for key, value in usage.items():
            if isinstance(value, int) or (key == "cache_creation" and isinstance(value, Mapping)):
                self._usage[key] = value
        self.usage = anthropic_usage(self._usage)

    def _event(self, event: str, data: str, out: list[dict[str, Any]], final: bool) -> None:
        obj = self._json(data, final)
        if not isinstance(obj, dict):
            return
        if not self.native:
            return self._translate(event, obj, out)
        before = len(out)
        try:
            self._translate(event, obj, out)
        finally:
            # The event itself rides on the first chunk it made, or on an empty one.
            if len(out) == before:
                out.append(chunk({}, None, 0))
            out[before].setdefault("native_events", []).append(obj)

    def _translate(self, event: str, obj: dict[str, Any], out: list[dict[str, Any]]) -> None:
        kind = obj.get("type") or event
        if kind == "content_block_delta":
            self._delta(obj, out)
        elif kind == "content_block_start":
            self._block_start(obj, out)
        elif kind == "message_start":
            self._set_usage((obj.get("message") or {}).get("usage"))
            out.append(self._chunk({"content": ""}))
        elif kind == "message_delta":
            self._set_usage(obj.get("usage"))
            reason = (obj.get("delta") or {}).get("stop_reason")
            if reason:
                finish = STOP_REASONS.get(reason, "stop")
                if finish == "tool_calls" and not self._tool_calls:
                    finish = "stop"  # only the json_output emulation was called
                out.append(self._chunk({}, finish))
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            raise anthropic_error(None, {}, obj)

    def _block_start(self, obj: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        block = obj.get("content_block") or {}
        index = obj.get("index", 0)
        btype = block.get("type")
        if btype == "text":
            self._blocks[index] = ("text", 0)
            if block.get("text"):
                out.append(self._chunk({"content": block["text"]}))
        elif btype == "tool_use" and block.get("name") == JSON_TOOL:
            self._blocks[index] = ("json", 0)
        elif btype == "tool_use":
            call = self._tool_calls
            self._tool_calls += 1
            self._blocks[index] = ("tool", call)
            out.append(
                self._chunk(
                    {
                        "tool_calls": [
                            {
                                "index": call,
                                "id": block.get("id"),
                                "type": "function",
                                "function": {"name": block.get("name"), "arguments": ""},
                            }
                        ]
                    }
                )
            )
        elif btype == "thinking":
            self._blocks[index] = ("thinking", 0)
        else:  # redacted_thinking, server tools: nothing an OpenAI client can use
            self._blocks[index] = ("skip", 0)

    def _delta(self, obj: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        delta = obj.get("delta") or {}
        dtype = delta.get("type")
        kind, call = self._blocks.get(obj.get("index", 0), ("text", 0))
        if dtype == "text_delta":
            text = delta.get("text")
            if text:
                out.append(self._chunk({"content": text}))
        elif dtype == "input_json_delta":
            partial = delta.get("partial_json")
            if not partial:
                return
            if kind == "json":
                out.append(self._chunk({"content": partial}))
            elif kind == "tool":
                out.append(
                    self._chunk(
                        {"tool_calls": [{"index": call, "function": {"arguments": partial}}]}
                    )
                )
        elif dtype == "thinking_delta":
            thinking = delta.get("thinking")
            if thinking:
                out.append(self._chunk({"reasoning": thinking}))
        # signature_delta, citations_delta: nothing to forward


class AnthropicAdapter(Adapter):
    wire = "anthropic"  # no log probabilities, one choice a call

    def output_cap(self, body, *, requested, endpoint_max):
        # Anthropic counts thinking inside max_tokens and wants it above the budget: the
        # budget is added to the answer's room, within what the endpoint can write.
        budget = _native_budget(body) or _thinking_budget(body)
        if budget and requested <= budget:
            requested = budget + requested
        return max(min(requested, endpoint_max), 1)

    def chat_request(
        self, target: Target, body: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        if (body.get("n") or 1) > 1:
            raise UpstreamError(
                ErrorKind.BAD_REQUEST, "anthropic endpoints return one choice (n=1)"
            )
        native = body.get(NATIVE_REQUEST)
        if isinstance(native, Mapping):
            return self._native_request(target, body, native, stream=stream)
        system, messages = _translate_messages(body.get("messages") or [])
        requested_max = max_tokens_of(body)
        max_tokens = requested_max or DEFAULT_MAX_TOKENS
        payload: dict[str, Any] = {"model": target.upstream_model, "messages": messages}
        if system:
            payload["system"] = system

        tools = []
        for function in function_tools(body.get("tools")):
            schema = dict(function.get("parameters") or {"type": "object", "properties": {}})
            schema.setdefault("type", "object")
            tool = {"name": function.get("name"), "input_schema": schema}
            if function.get("description"):
                tool["description"] = function["description"]
            tools.append(tool)
        has_tools = bool(tools)

        response_format = body.get("response_format") or {}
        json_schema = description = None
        if response_format.get("type") == "json_schema":
            spec = response_format.get("json_schema") or {}
            json_schema = spec.get("schema") or {"type": "object"}
            description = spec.get("description")
        elif response_format.get("type") == "json_object":
            json_schema = {"type": "object"}
        if json_schema is not None:
            tools.append(
                {
                    "name": JSON_TOOL,
                    "description": description
                    or "Give your final answer as JSON by calling this tool.",
                    "input_schema": json_schema,
                }
            )
        if tools:
            payload["tools"] = tools
        tool_choice = _tool_choice(body, has_tools, json_schema is not None)
        if tool_choice:
            payload["tool_choice"] = tool_choice

        temperature = body.get("temperature")
        top_p = body.get("top_p")
        budget = _thinking_budget(body)
        if budget and requested_max is None and max_tokens <= budget:
            max_tokens = budget + max_tokens  # a direct call without a cap (not the gateway's)
        if budget and max_tokens <= budget:
            # The cap is what was held: the budget shrinks to fit under it, never the reverse.
            budget = max_tokens // 2 if max_tokens // 2 >= MIN_THINKING_BUDGET else None
        if budget:
            payload["thinking"] = {"type": "enabled", "budget_tokens": budget}
            temperature = None
            if top_p is not None and top_p < 0.95:
                top_p = None
        payload["max_tokens"] = max_tokens
        if temperature is not None:
            payload["temperature"] = min(float(temperature), 1.0)
        if top_p is not None:
            payload["top_p"] = top_p
        stop = stop_list(body.get("stop"))
        if stop:
            payload["stop_sequences"] = stop
        if body.get("user"):
            payload["metadata"] = {"user_id": body["user"]}
        if stream:
            payload["stream"] = True

        headers = auth_headers(target)
        headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
        return UpstreamRequest("POST", f"{target.base_url}/v1/messages", headers, payload)

    def _native_request(
        self, target: Target, body: dict[str, Any], native: Mapping[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        """The client's Messages request as it was, with our model name and the output cap
        that was held (a thinking budget shrinks to fit under it, never the reverse)."""
        payload = {k: v for k, v in native.items() if k != "stream"}
        payload["model"] = target.upstream_model
        cap = max_tokens_of(body) or int(native.get("max_tokens") or DEFAULT_MAX_TOKENS)
        payload["max_tokens"] = cap
        thinking = payload.get("thinking")
        if isinstance(thinking, Mapping) and thinking.get("type") == "enabled":
            budget = int(thinking.get("budget_tokens") or 0)
            if budget >= cap:
                budget = cap // 2
                payload["thinking"] = (
                    {**thinking, "budget_tokens": budget}
                    if budget >= MIN_THINKING_BUDGET
                    else {"type": "disabled"}
                )
        if stream:
            payload["stream"] = True
        headers = auth_headers(target)
        headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
        return UpstreamRequest(
            "POST", f"{target.base_url}/v1/messages", headers, payload, native=True
        )

    def chat_response(self, target: Target, data: dict[str, Any]) -> tuple[dict[str, Any], Usage]:
        if data.get("type") == "error":
            raise anthropic_error(None, {}, data)
        texts: list[str] = []
        thinking: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        json_text = None
        for block in data.get("content") or ():
            btype = block.get("type")
            if btype == "text":
                texts.append(block.get("text") or "")
            elif btype == "thinking":
                thinking.append(block.get("thinking") or "")
            elif btype == "tool_use" and block.get("name") == JSON_TOOL:
                json_text = dumps(block.get("input") or {})
            elif btype == "tool_use":
                tool_calls.append(
                    {
                        "id": block.get("id"),
                        "type": "function",
                        "function": {
                            "name": block.get("name"),
                            "arguments": dumps(block.get("input") or {}),
                        },
                    }
                )
        finish = STOP_REASONS.get(data.get("stop_reason") or "", "stop")
        if finish == "tool_calls" and not tool_calls:
            finish = "stop"  # the json_output emulation answered
        if json_text is not None:
            content: str | None = json_text
        else:
            content = "".join(texts) or (None if tool_calls else "")
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        if thinking:
            message["reasoning"] = "".join(thinking)
        result = {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        }
        return result, anthropic_usage(data.get("usage"))

    def stream_decoder(self, target: Target) -> StreamDecoder:
        return AnthropicStreamDecoder()

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return anthropic_error(status, headers, body)
