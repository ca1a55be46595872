"""The Anthropic wire: Messages under `{SIM}/{slug}` (POST /v1/messages).

Shapes follow api.anthropic.com: `x-api-key` and `anthropic-version` headers required; a
`message` with content blocks (thinking, text, tool_use); `usage.input_tokens` EXCLUDES the
tokens read from the cache (`cache_read_input_tokens`) and those written to it for blocks with
`cache_control` (`cache_creation_input_tokens`, split by TTL in `cache_creation`: the first
prompt writes its prefix up to the last breakpoint, the next reads it); streams are named SSE events
(message_start, content_block_start/delta/stop, ping, message_delta with CUMULATIVE usage,
message_stop); errors are `{"type": "error", "error": {"type", "message"}}`.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from aiohttp import web

from .generation import (
    TOKENS_PER_IMAGE,
    TOKENS_PER_MESSAGE,
    BadRequest,
    ChatRequest,
    Output,
    Usage,
    count_words,
    digest,
    dumps_canonical,
    new_id,
    reasoning_for_budget,
    reasoning_for_effort,
    tool_call,
)
from .streaming import Frames, json_response, retry_after_value
from .tools import Tool, Turn, choose

WIRE = "anthropic"
STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"
STOP_REASON = {
    "stop": "end_turn",
    "stop_sequence": "stop_sequence",
    "length": "max_tokens",
    "tool": "tool_use",
}
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
MIN_THINKING_BUDGET = 1024


def error(status: int, kind: str, message: str, headers: dict[str, str] | None = None):
    body = {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": new_id("req_"),
    }
    return json_response(orjson.dumps(body), status=status, headers=headers)


def bad_request(exc: BadRequest) -> web.Response:
    message = f"{exc.param}: {exc.message}" if exc.param else exc.message
    return error(400, "invalid_request_error", message)


def fault(kind: str, retry_after: float) -> web.Response:
    if kind == "429":
        return error(
            429,
            "rate_limit_error",
            "This request would exceed your organization's rate limit (simulated).",
            headers={"retry-after": retry_after_value(retry_after)},
        )
    if kind == "503":  # Anthropic's "overloaded" is its own status code
        return error(529, "overloaded_error", "Overloaded (simulated)")
    return error(500, "api_error", "Internal server error (simulated)")


def auth_error(request: web.Request) -> web.Response | None:
    if not request.headers.get("x-api-key", "").strip():
        return error(401, "authentication_error", "x-api-key header is required")
    if not request.headers.get("anthropic-version", "").strip():
        return error(400, "invalid_request_error", "anthropic-version: header is required")
    return None


def parse_chat(body: Any, request: web.Request) -> ChatRequest:
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("Field required", "model")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise BadRequest("Field required", "max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest("Input should be a valid integer >= 1", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("Field required (a non-empty list)", "messages")

    system = body.get("system")
    prompt_tokens = 0
    if system:  # a prompt's system part costs what a message does, on every wire
        prompt_tokens += TOKENS_PER_MESSAGE + _blocks_tokens(system, "system")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise BadRequest("Input should be 'user' or 'assistant'", f"messages.{i}.role")
        prompt_tokens += TOKENS_PER_MESSAGE + _blocks_tokens(
            message.get("content"), f"messages.{i}.content"
        )

    tools = _tools(body.get("tools"))
    for tool in tools:
        prompt_tokens += 1 + count_words(tool.description)

    model_bytes = model.encode()
    system_bytes = dumps_canonical(system)
    keys = [digest(model_bytes, system_bytes, dumps_canonical(messages))]
    if len(messages) > 1:
        keys.append(digest(model_bytes, system_bytes, dumps_canonical(messages[:-1])))

    stop = body.get("stop_sequences") or []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise BadRequest("Input should be a valid list of strings", "stop_sequences")

    segments, prefix = _cache_breakpoints(tools, system, messages)
    chat = ChatRequest(
        model=model,
        seed=keys[0],
        prompt_tokens=prompt_tokens,
        cache_keys=tuple(keys),
        cache_segments=segments,
        cache_prefix_key=digest(model_bytes, dumps_canonical(prefix)) if segments else None,
        stream=body.get("stream") is True,
        max_tokens=max_tokens,
        stop=stop,
        reasoning=_thinking(body.get("thinking"), max_tokens),
        json_schema=_output_format(body),
    )
    if tools or chat.json_schema is not None:  # the plain text path reads none of this
        turn = _turn(system, messages)
        chat.prompt, chat.results, chat.instructions = turn.prompt, turn.results, turn.instructions
        chat.tool = _choose_tool(body.get("tool_choice"), tools, turn, chat.seed)
    return chat


def _cache_breakpoints(
    tools: list[Tool], system: Any, messages: list
) -> tuple[tuple[tuple[int, str], ...], list[Any]]:
    """The cache_control breakpoints of a prompt, in Anthropic's caching order (tools, system,
    messages): the tokens since the previous breakpoint with each breakpoint's TTL, and the
    prefix up to the last one (what identifies the cache entry)."""
    segments: list[tuple[int, str]] = []
    prefix: list[Any] = []
    seen: list[Any] = []
    running = sum(1 + count_words(tool.description) for tool in tools)
    marked = 0

    def walk(blocks: Any, where: str) -> None:
        nonlocal running, marked, prefix
        if isinstance(blocks, str):
            running += count_words(blocks)
            seen.append(blocks)
            return
        for block in blocks or ():
            running += _blocks_tokens([block], where)
            seen.append(block)
            control = block.get("cache_control") if isinstance(block, dict) else None
            if isinstance(control, dict) and control.get("type") == "ephemeral":
                ttl = "1h" if control.get("ttl") == "1h" else "5m"
                segments.append((running - marked, ttl))
                marked = running
                prefix = list(seen)

    if system:
        running += TOKENS_PER_MESSAGE
        walk(system, "system")
    for i, message in enumerate(messages):
        running += TOKENS_PER_MESSAGE
        walk(message.get("content"), f"messages.{i}.content")
    return tuple(segments), prefix


def _blocks_tokens(content: Any, where: str) -> int:
    if isinstance(content, str):
        return count_words(content)
    if not isinstance(content, list):
        raise BadRequest("Input should be a valid string or list of content blocks", where)
    total = 0
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            total += count_words(block.get("text"))
        elif kind in ("image", "document"):
            _check_source(block.get("source"), kind, f"{where}.{j}.source")
            total += TOKENS_PER_IMAGE
        elif kind == "tool_use":
            total += 1 + count_words(orjson.dumps(block.get("input") or {}).decode())
        elif kind == "tool_result":
            inner = block.get("content")
            if inner is not None:
                total += _blocks_tokens(inner, f"{where}.{j}.content")
        elif kind in ("thinking", "redacted_thinking"):
            pass  # earlier turns' thinking is stripped from the context
        else:
            raise BadRequest(f"Unknown content block type {kind!r}", f"{where}.{j}.type")
    return total


def _check_source(source: Any, kind: str, where: str) -> None:
    if not isinstance(source, dict):
        raise BadRequest("Field required", where)
    if source.get("type") == "base64":
        if kind == "image" and source.get("media_type") not in IMAGE_TYPES:
            raise BadRequest(
                "Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'",
                f"{where}.media_type",
            )
        if not isinstance(source.get("data"), str) or not source["data"]:
            raise BadRequest("Field required", f"{where}.data")
    elif source.get("type") == "url":
        if not str(source.get("url", "")).startswith(("http://", "https://")):
            raise BadRequest("Input should be a valid URL", f"{where}.url")
    elif source.get("type") not in ("text", "content", "file"):
        raise BadRequest("Input tag does not match any of the expected tags", f"{where}.type")


def _thinking(value: Any, max_tokens: int) -> int:
    if not isinstance(value, dict):
        return 0
    kind = value.get("type")
    if kind == "enabled":
        budget = value.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int):
            raise BadRequest("Field required", "thinking.enabled.budget_tokens")
        if budget < MIN_THINKING_BUDGET:
            raise BadRequest(
                f"Input should be greater than or equal to {MIN_THINKING_BUDGET}",
                "thinking.enabled.budget_tokens",
            )
        if budget >= max_tokens:
            raise BadRequest(
                "`max_tokens` must be greater than `thinking.budget_tokens`", "max_tokens"
            )
        return reasoning_for_budget(budget)
    if kind == "adaptive":
        return reasoning_for_effort("medium")
    return 0


def _output_format(body: dict[str, Any]) -> Any:
    # Anthropic's newer structured outputs; older requests ask via a tool or the prompt.
    config = body.get("output_config")
    fmt = body.get("output_format") or (config.get("format") if isinstance(config, dict) else None)
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return fmt.get("schema") if isinstance(fmt.get("schema"), dict) else True
    return None


def _tools(value: Any) -> list[Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("Input should be a valid list", "tools")
    out = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise BadRequest("Field required", f"tools.{i}.name")
        if "input_schema" not in tool and "type" in tool:
            continue  # a server tool (web search, ...): never called here
        out.append(Tool(tool["name"], tool.get("description") or "", tool.get("input_schema")))
    return out


def _choose_tool(choice: Any, tools: list[Tool], turn: Turn, seed: int):
    if not tools:
        return None
    kind = choice.get("type") if isinstance(choice, dict) else "auto"
    if kind == "none":
        return None
    if kind == "tool":
        name = choice.get("name")
        tool = next((t for t in tools if t.name == name), None)
        if tool is None:
            raise BadRequest(f"Tool '{name}' not found in tools", "tool_choice.name")
        if turn.results:  # after a result the model reports it, as it does unforced
            return None
    else:
        tool = choose(tools, turn, forced=kind == "any")
    if tool is None:
        return None
    return tool_call(
        seed,
        tool.name,
        tool.schema,
        id_prefix="toolu_01",
        prompt=turn.prompt,
        instructions=turn.instructions,
        named=kind == "tool",
    )


def _turn(system: Any, messages: list) -> Turn:
    """The user's latest words and the tool results since the assistant last spoke."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
    names: dict[Any, str] = {}
    if last >= 0 and isinstance(messages[last].get("content"), list):
        for block in messages[last]["content"]:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                names[block.get("id")] = str(block.get("name") or "")
    results: list[tuple[str, str]] = []
    words: list[str] = []
    for message in messages[last + 1 :]:
        content = message.get("content")
        if isinstance(content, str):
            words.append(content)
            continue
        for block in content if isinstance(content, list) else ():
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_result":
                text = _text(block.get("content"))
                results.append((names.get(block.get("tool_use_id"), ""), text))
            elif block.get("type") == "text" and isinstance(block.get("text"), str):
                words.append(block["text"])
    prompt = " ".join(words)
    if not results and not prompt:
        prompt = next(
            (_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
        )
    return Turn(prompt, results, "\n".join([_text(system), prompt]))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)
        )
    return ""


def _signature(output: Output) -> str:
    return base64.b64encode(b"simulated-signature-" + output.seed.to_bytes(8, "little")).decode()


def usage_dict(usage: Usage, *, output_tokens: int | None = None) -> dict[str, Any]:
    written = usage.cache_write_tokens
    return {
        "input_tokens": usage.prompt_tokens - usage.cached_tokens - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": written - usage.cache_write_1h_tokens,
            "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens,
        },
        "output_tokens": usage.completion_tokens if output_tokens is None else output_tokens,
    }


def render(chat: ChatRequest, output: Output, usage: Usage) -> bytes:
    content: list[dict[str, Any]] = []
    if output.reasoning_tokens:
        content.append(
            {
                "type": "thinking",
                "thinking": "".join(output.thinking_pieces()),
                "signature": _signature(output),
            }
        )
    if output.tool:
        tool = output.tool
        content.append(
            {"type": "tool_use", "id": tool.id, "name": tool.name, "input": tool.arguments}
        )
    elif output.pieces or not content:
        content.append({"type": "text", "text": output.text})
    return orjson.dumps(
        {
            "id": new_id("msg_01"),
            "type": "message",
            "role": "assistant",
            "model": chat.model,
            "content": content,
            "stop_reason": STOP_REASON[output.finish],
            "stop_sequence": output.stop_sequence,
            "usage": {**usage_dict(usage), "service_tier": "standard"},
        }
    )


def _event(name: bytes, data: Any) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _delta(index: int, kind: bytes, field: bytes, value: str) -> bytes:
    before, after = _delta_template(index, kind, field)
    return before + orjson.dumps(value) + after


def _delta_template(index: int, kind: bytes, field: bytes) -> tuple[bytes, bytes]:
    return (
        b"".join(
            (
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":',
                str(index).encode(),
                b',"delta":{"type":"',
                kind,
                b'","',
                field,
                b'":',
            )
        ),
        b"}}\n\n",
    )


def _deltas(index: int, kind: bytes, field: bytes, values: list[str]) -> list[bytes]:
    before, after = _delta_template(index, kind, field)
    dumps = orjson.dumps
    return [before + dumps(value) + after for value in values]


def frames(chat: ChatRequest, output: Output, usage: Usage) -> Frames:
    out = Frames()
    message = {
        "id": new_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": chat.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        # output_tokens starts at 1, as Anthropic's does: only message_delta's count is final.
        "usage": {**usage_dict(usage, output_tokens=1), "service_tier": "standard"},
    }
    out.add(_event(b"message_start", {"type": "message_start", "message": message}))
    index = 0
    pinged = False

    def start(block: dict[str, Any]) -> None:
        nonlocal pinged
        out.add(
            _event(
                b"content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        if not pinged:
            out.add(b'event: ping\ndata: {"type": "ping"}\n\n')
            pinged = True

    def stop() -> None:
        nonlocal index
        out.add(_event(b"content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1

    if output.reasoning_tokens:
        start({"type": "thinking", "thinking": "", "signature": ""})
        out.extend(_deltas(index, b"thinking_delta", b"thinking", output.thinking_pieces()))
        out.add(_delta(index, b"signature_delta", b"signature", _signature(output)))
        stop()
    if output.tool:
        tool = output.tool
        start({"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}})
        out.add(_delta(index, b"input_json_delta", b"partial_json", ""))
        out.extend(_deltas(index, b"input_json_delta", b"partial_json", output.pieces))
        stop()
    elif output.pieces or not output.reasoning_tokens:
        start({"type": "text", "text": ""})
        out.extend(_deltas(index, b"text_delta", b"text", output.pieces))
        stop()
    out.end(
        _event(
            b"message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": STOP_REASON[output.finish],
                    "stop_sequence": output.stop_sequence,
                },
                "usage": usage_dict(usage),  # cumulative: the final count, not an increment
            },
        )
    )
    out.end(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    return out
