"""The OpenAI wire: Chat Completions, Embeddings and Models under `{SIM}/{slug}/v1`.

Shapes follow api.openai.com: `chat.completion` / `chat.completion.chunk` objects, SSE
`data: {...}` events ending with `data: [DONE]`, a usage-only chunk (empty `choices`) before it
when `stream_options.include_usage` is set (and `"usage": null` on every other chunk then),
`usage.prompt_tokens_details.cached_tokens`, `completion_tokens_details.reasoning_tokens`
(included in completion_tokens), and errors as `{"error": {message, type, param, code}}`.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
from aiohttp import web

from .generation import (
    DEFAULT_DIMENSIONS,
    MAX_DIMENSIONS,
    TOKENS_PER_IMAGE,
    TOKENS_PER_MESSAGE,
    BadRequest,
    ChatRequest,
    Output,
    Usage,
    count_words,
    digest,
    dumps_canonical,
    embedding,
    new_id,
    reasoning_for_budget,
    reasoning_for_effort,
    tool_call,
)
from .streaming import Frames, json_response, retry_after_value
from .tools import Tool, Turn, choose

WIRE = "openai"
STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"
FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool": "tool_calls"}
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
IMAGE_PARTS = frozenset({"image_url", "input_image", "input_audio", "file"})


def error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",  # noqa: A002 - the field's name in OpenAI's shape
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return json_response(orjson.dumps(body), status=status, headers=headers)


def bad_request(exc: BadRequest) -> web.Response:
    return error(400, exc.message, param=exc.param)


def fault(kind: str, retry_after: float) -> web.Response:
    if kind == "429":
        seconds = retry_after_value(retry_after)
        return error(
            429,
            f"Rate limit reached for requests (simulated). Please try again in {seconds}s.",
            type="requests",
            code="rate_limit_exceeded",
            headers={
                "Retry-After": seconds,
                "retry-after-ms": str(int(retry_after * 1000)),  # the OpenAI SDK prefers this
                "x-ratelimit-remaining-requests": "0",
            },
        )
    if kind == "503":
        return error(
            503,
            "The server is overloaded or not ready yet (simulated).",
            type="server_error",
        )
    return error(
        500,
        "The server had an error while processing your request. Sorry about that! (simulated)",
        type="server_error",
    )


def auth_error(request: web.Request) -> web.Response | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return None
    if not header:
        message = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        return error(401, message)
    return error(401, "Incorrect API key provided.", code="invalid_api_key")


# --- Chat Completions ---


def parse_chat(body: Any, request: web.Request) -> ChatRequest:
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array.", "messages")

    tools = _tools(body.get("tools"))
    prompt_tokens = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise BadRequest(f"Invalid value for 'messages[{i}].role'.", f"messages[{i}].role")
        prompt_tokens += TOKENS_PER_MESSAGE + _content_tokens(message.get("content"), i)
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            prompt_tokens += 1 + count_words(arguments)
    for tool in tools:
        prompt_tokens += 1 + count_words(tool.description)

    stream = body.get("stream") is True
    stream_options = body.get("stream_options")
    if stream_options is not None and not stream:
        raise BadRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )

    model_bytes = model.encode()
    messages_bytes = dumps_canonical(messages)
    keys = [digest(model_bytes, messages_bytes)]
    if len(messages) > 1:
        keys.append(digest(model_bytes, dumps_canonical(messages[:-1])))

    chat = ChatRequest(
        model=model,
        seed=keys[0],
        prompt_tokens=prompt_tokens,
        cache_keys=tuple(keys),
        stream=stream,
        max_tokens=_max_tokens(body),
        stop=_stop(body.get("stop")),
        reasoning=_reasoning(body),
        include_usage=bool(
            isinstance(stream_options, dict) and stream_options.get("include_usage")
        ),
    )
    chat.json_schema = _response_format(body.get("response_format"))
    if tools or chat.json_schema is not None:  # the plain text path reads none of this
        turn = _turn(messages)
        chat.prompt, chat.results, chat.instructions = turn.prompt, turn.results, turn.instructions
        chat.tool = _choose_tool(body.get("tool_choice"), tools, turn, chat.seed)
    return chat


def _content_tokens(content: Any, index: int) -> int:
    if content is None or isinstance(content, str):
        return count_words(content)
    if not isinstance(content, list):
        raise BadRequest(f"Invalid type for 'messages[{index}].content'.", f"messages[{index}]")
    total = 0
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            total += count_words(part.get("text"))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url.startswith(("http://", "https://", "data:")):
                raise BadRequest("Invalid image URL.", f"messages[{index}].content")
            if url.startswith("data:") and ";base64," not in url:
                raise BadRequest("Invalid base64 image data URL.", f"messages[{index}].content")
            total += TOKENS_PER_IMAGE
        elif kind in IMAGE_PARTS:
            total += TOKENS_PER_IMAGE
        elif kind == "refusal":
            total += count_words(part.get("refusal"))
        else:
            raise BadRequest(
                f"Invalid content part type {kind!r} in messages[{index}].",
                f"messages[{index}].content",
            )
    return total


def _max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"Invalid '{name}': expected an integer >= 1.", name)
        return value
    return None


def _stop(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and len(value) <= 4 and all(isinstance(s, str) for s in value):
        return value
    raise BadRequest("'stop' must be a string or an array of up to 4 strings.", "stop")


def _reasoning(body: dict[str, Any]) -> int:
    if (effort := body.get("reasoning_effort")) is not None:
        return reasoning_for_effort(effort)
    reasoning = body.get("reasoning")  # OpenRouter's unified form
    if isinstance(reasoning, dict) and reasoning.get("enabled", True) is not False:
        if "max_tokens" in reasoning:
            return reasoning_for_budget(reasoning["max_tokens"])
        if "effort" in reasoning:
            return reasoning_for_effort(reasoning["effort"])
        return reasoning_for_effort("medium")
    return 0


def _response_format(value: Any) -> Any:
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if kind == "json_object":
        return True
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise BadRequest(
                "Missing required parameter: 'response_format.json_schema.name'.",
                "response_format.json_schema",
            )
        schema = spec.get("schema")
        return schema if isinstance(schema, dict) else True
    if kind not in (None, "text"):
        raise BadRequest(f"Invalid response_format type {kind!r}.", "response_format.type")
    return None


def _tools(value: Any) -> list[Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("'tools' must be an array.", "tools")
    out = []
    for i, tool in enumerate(value):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest(f"Missing required parameter: 'tools[{i}].function'.", "tools")
        out.append(
            Tool(function["name"], function.get("description") or "", function.get("parameters"))
        )
    return out


def _choose_tool(choice: Any, tools: list[Tool], turn: Turn, seed: int):
    if not tools or choice == "none":
        return None
    named = isinstance(choice, dict)
    if named:
        name = (choice.get("function") or {}).get("name")
        tool = next((t for t in tools if t.name == name), None)
        if tool is None:
            raise BadRequest(f"Tool choice {name!r} is not one of the tools.", "tool_choice")
        if turn.results:  # after a result the model reports it, as it does unforced
            return None
    else:
        tool = choose(tools, turn, forced=choice == "required")
    if tool is None:
        return None
    return tool_call(
        seed,
        tool.name,
        tool.schema,
        id_prefix="call_",
        prompt=turn.prompt,
        instructions=turn.instructions,
        named=named,
    )


def _turn(messages: list) -> Turn:
    """The user's latest words and the tool results since the assistant last spoke."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
    tail = messages[last + 1 :]
    names: dict[Any, str] = {}
    if last >= 0:
        for call in messages[last].get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                names[call.get("id")] = str(function.get("name") or "")
    results = [
        (names.get(m.get("tool_call_id")) or str(m.get("name") or ""), _text(m.get("content")))
        for m in tail
        if m.get("role") in ("tool", "function")
    ]
    if results:
        prompt = " ".join(_text(m.get("content")) for m in tail if m.get("role") == "user")
    else:
        prompt = next(
            (_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
        )
    system = [_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")]
    return Turn(prompt, results, "\n".join([*system, prompt]))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def usage_dict(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _tool_call_dict(output: Output) -> dict[str, Any]:
    tool = output.tool
    assert tool is not None
    return {
        "id": tool.id,
        "type": "function",
        "function": {"name": tool.name, "arguments": tool.arguments_json},
    }


def render(chat: ChatRequest, output: Output, usage: Usage) -> bytes:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if output.tool else output.text,
        "refusal": None,
        "annotations": [],
    }
    if output.tool:
        message["tool_calls"] = [_tool_call_dict(output)]
    return orjson.dumps(
        {
            "id": new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": FINISH[output.finish],
                }
            ],
            "usage": usage_dict(usage),
            "service_tier": "default",
            "system_fingerprint": "fp_simulated",
        }
    )


def frames(chat: ChatRequest, output: Output, usage: Usage) -> Frames:
    # Every chunk shares its prefix; only the delta differs. Built from byte templates
    # because a 32-token stream would otherwise serialize 35 near-identical dicts.
    prefix = b"".join(
        (
            b'data: {"id":"',
            new_id("chatcmpl-").encode(),
            b'","object":"chat.completion.chunk","created":',
            str(int(time.time())).encode(),
            b',"model":',
            orjson.dumps(chat.model),
            b',"service_tier":"default","system_fingerprint":"fp_simulated","choices":[',
        )
    )
    end = b',"usage":null}\n\n' if chat.include_usage else b"}\n\n"

    def chunk(delta: bytes, finish: bytes = b"null") -> bytes:
        return b"".join(
            (
                prefix,
                b'{"index":0,"delta":',
                delta,
                b',"logprobs":null,"finish_reason":',
                finish,
                b"}]",
                end,
            )
        )

    out = Frames(hidden=output.reasoning_tokens)
    if output.tool:
        call = _tool_call_dict(output)
        call["function"]["arguments"] = ""
        head = {"role": "assistant", "content": None, "tool_calls": [{"index": 0, **call}]}
        out.add(chunk(orjson.dumps({**head, "refusal": None})))
        before, after = _split(chunk(b'{"tool_calls":[{"index":0,"function":{"arguments":\x00}}]}'))
    else:
        out.add(chunk(b'{"role":"assistant","content":"","refusal":null}'))
        before, after = _split(chunk(b'{"content":\x00}'))
    dumps = orjson.dumps
    out.extend([before + dumps(piece) + after for piece in output.pieces])
    out.end(chunk(b"{}", b'"' + FINISH[output.finish].encode() + b'"'))
    if chat.include_usage:
        out.end(prefix + b'],"usage":' + orjson.dumps(usage_dict(usage)) + b"}\n\n")
    out.end(b"data: [DONE]\n\n")
    return out


def _split(template: bytes) -> tuple[bytes, bytes]:
    """A frame template around its one NUL placeholder (a JSON value slot; orjson escapes NUL,
    so it occurs nowhere else), so a token's frame costs two concatenations."""
    before, _, after = template.partition(b"\x00")
    return before, after


# --- Embeddings ---


def parse_embeddings(body: Any) -> tuple[str, list[int], list[int], int, str]:
    """→ (model, seed per input, tokens per input, dimensions, encoding format)."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", "model")
    raw = body.get("input")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
        inputs = [raw]  # one string, or one array of token ids
    elif isinstance(raw, list) and raw:
        inputs = raw
    else:
        raise BadRequest("'input' must be a non-empty string or array.", "input")
    if len(inputs) > 2048:
        raise BadRequest("'input' can hold at most 2048 items.", "input")
    seeds, tokens = [], []
    model_bytes = model.encode()
    for item in inputs:
        if isinstance(item, str) and item:
            tokens.append(max(1, count_words(item)))
            seeds.append(digest(model_bytes, item.encode()))
        elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            tokens.append(len(item))
            seeds.append(digest(model_bytes, orjson.dumps(item)))
        else:
            raise BadRequest("'$.input' is invalid. Please check the API reference.", "input")
    dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
    if isinstance(dimensions, bool) or not isinstance(dimensions, int):
        raise BadRequest("'dimensions' must be an integer.", "dimensions")
    if not 1 <= dimensions <= MAX_DIMENSIONS:
        raise BadRequest(f"'dimensions' must be between 1 and {MAX_DIMENSIONS}.", "dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    return model, seeds, tokens, dimensions, encoding


def render_embeddings(
    model: str, seeds: list[int], tokens: list[int], dimensions: int, encoding: str
) -> bytes:
    data = []
    for index, seed in enumerate(seeds):
        values, packed = embedding(seed, dimensions)
        vector: Any = values if encoding == "float" else base64.b64encode(packed).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    total = sum(tokens)
    return orjson.dumps(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": total, "total_tokens": total},
        }
    )


def render_models(slug: str, models: list[str]) -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 1735689600, "owned_by": slug}
                for name in models
            ],
        }
    )
