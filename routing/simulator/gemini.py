"""The Google Gemini wire: generateContent, streamGenerateContent, embedContent.

Two URL families: AI Studio (`{SIM}/{slug}/v1beta/models/{model}:{action}`, key in
`x-goog-api-key` or `?key=`) and Vertex AI (`{SIM}/{slug}/v1/projects/{p}/locations/{l}/
publishers/google/models/{model}:{action}`, `Authorization: Bearer`). Shapes follow Google's:
`candidates[].content.parts[]` (text, `thought: true` summaries, functionCall), `usageMetadata`
where promptTokenCount INCLUDES cachedContentTokenCount and thoughtsTokenCount is NOT part of
candidatesTokenCount; zero counts are omitted, as proto3 JSON does. `?alt=sse` streams
`data: {GenerateContentResponse}` events separated by CRLF CRLF (as Google's servers send them),
each with the CUMULATIVE usageMetadata and no end marker but the final chunk's finishReason;
without `alt=sse` the stream is one JSON array. Errors are `{"error": {code, message, status}}`.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from aiohttp import web

from .generation import (
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

WIRE = "gemini"
STREAM_CONTENT_TYPE = "text/event-stream"
ARRAY_CONTENT_TYPE = "application/json; charset=UTF-8"
FINISH = {"stop": "STOP", "stop_sequence": "STOP", "length": "MAX_TOKENS", "tool": "STOP"}
DEFAULT_EMBEDDING_DIMENSIONS = 3072
STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def error(
    status: int,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    err: dict[str, Any] = {"code": status, "message": message, "status": STATUS[status]}
    if details:
        err["details"] = details
    return json_response(orjson.dumps({"error": err}), status=status, headers=headers)


def bad_request(exc: BadRequest) -> web.Response:
    where = f"* GenerateContentRequest.{exc.param}: " if exc.param else ""
    return error(400, f"{where}{exc.message}")


def fault(kind: str, retry_after: float) -> web.Response:
    if kind == "429":
        seconds = retry_after_value(retry_after)
        return error(
            429,
            "Resource has been exhausted (e.g. check quota). (simulated)",
            details=[
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{seconds}s"}
            ],
            headers={"Retry-After": seconds},
        )
    if kind == "503":
        return error(503, "The model is overloaded. Please try again later. (simulated)")
    return error(500, "An internal error has occurred. Please retry. (simulated)")


def auth_error(request: web.Request, *, vertex: bool) -> web.Response | None:
    if vertex:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return None
        return error(
            401,
            "Request is missing required authentication credential. Expected OAuth 2 access "
            "token, login cookie or other valid authentication credential.",
        )
    if request.headers.get("x-goog-api-key", "").strip() or request.query.get("key", "").strip():
        return None
    return error(
        403,
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
    )


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    # Google's JSON mapping accepts both spellings of every field.
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def parse_chat(body: Any, request: web.Request, *, model: str, stream: bool) -> ChatRequest:
    if not isinstance(body, dict):
        raise BadRequest("Invalid JSON payload received.")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("contents is not specified", "contents")

    system = _get(body, "systemInstruction", "system_instruction")
    prompt_tokens = 0
    if system:
        parts = system.get("parts") if isinstance(system, dict) else None
        prompt_tokens += TOKENS_PER_MESSAGE + _parts_tokens(parts, "system_instruction")
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            raise BadRequest("Invalid value (content)", f"contents[{i}]")
        role = content.get("role", "user")
        if role not in ("user", "model", "function", "tool"):
            raise BadRequest("Please use a valid role: user, model.", f"contents[{i}].role")
        prompt_tokens += TOKENS_PER_MESSAGE + _parts_tokens(
            content.get("parts"), f"contents[{i}].parts"
        )

    tools = _tools(body.get("tools"))
    for tool in tools:
        prompt_tokens += 1 + count_words(tool.description)

    config = _get(body, "generationConfig", "generation_config") or {}
    if not isinstance(config, dict):
        raise BadRequest("Invalid value (generation_config)", "generation_config")
    max_tokens = _get(config, "maxOutputTokens", "max_output_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise BadRequest("max_output_tokens must be positive", "generation_config")
    stop = _get(config, "stopSequences", "stop_sequences") or []
    if not isinstance(stop, list) or len(stop) > 5 or not all(isinstance(s, str) for s in stop):
        raise BadRequest("stop_sequences must be up to 5 strings", "generation_config")

    thinking = _get(config, "thinkingConfig", "thinking_config") or {}
    reasoning, include_thoughts = _thinking(thinking)

    model_bytes = model.encode()
    system_bytes = dumps_canonical(system)
    keys = [digest(model_bytes, system_bytes, dumps_canonical(contents))]
    if len(contents) > 1:
        keys.append(digest(model_bytes, system_bytes, dumps_canonical(contents[:-1])))

    chat = ChatRequest(
        model=model,
        seed=keys[0],
        prompt_tokens=prompt_tokens,
        cache_keys=tuple(keys),
        stream=stream,
        max_tokens=max_tokens,
        stop=stop,
        reasoning=reasoning,
        json_schema=_json_schema(config),
        include_thoughts=include_thoughts,
        alt_sse=request.query.get("alt") == "sse",
    )
    if tools or chat.json_schema is not None:  # the plain text path reads none of this
        turn = _turn(system, contents)
        chat.prompt, chat.results, chat.instructions = turn.prompt, turn.results, turn.instructions
        chat.tool = _choose_tool(body, tools, turn, chat.seed)
    return chat


def _parts_tokens(parts: Any, where: str) -> int:
    if not isinstance(parts, list) or not parts:
        raise BadRequest("must include at least one parts field", where)
    total = 0
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            raise BadRequest("Invalid value (part)", f"{where}[{j}]")
        if "text" in part:
            if not part.get("thought"):
                total += count_words(part["text"])
        elif (inline := _get(part, "inlineData", "inline_data")) is not None:
            if not isinstance(inline, dict) or not _get(inline, "mimeType", "mime_type"):
                raise BadRequest("inline_data.mime_type is required", f"{where}[{j}]")
            if not isinstance(inline.get("data"), str) or not inline["data"]:
                raise BadRequest("inline_data.data is required", f"{where}[{j}]")
            total += TOKENS_PER_IMAGE
        elif (file := _get(part, "fileData", "file_data")) is not None:
            if not isinstance(file, dict) or not _get(file, "fileUri", "file_uri"):
                raise BadRequest("file_data.file_uri is required", f"{where}[{j}]")
            total += TOKENS_PER_IMAGE
        elif (call := _get(part, "functionCall", "function_call")) is not None:
            total += 1 + count_words(orjson.dumps(call.get("args") or {}).decode())
        elif (result := _get(part, "functionResponse", "function_response")) is not None:
            total += 1 + count_words(orjson.dumps(result.get("response") or {}).decode())
        elif not _get(part, "thoughtSignature", "thought_signature"):
            raise BadRequest("Unknown part type", f"{where}[{j}]")
    return total


def _thinking(config: Any) -> tuple[int, bool]:
    if not isinstance(config, dict):
        return 0, False
    include = bool(_get(config, "includeThoughts", "include_thoughts"))
    level = _get(config, "thinkingLevel", "thinking_level")
    if level is not None:
        if not isinstance(level, str) or level.lower() not in ("minimal", "low", "medium", "high"):
            raise BadRequest(
                "thinking_level must be MINIMAL, LOW, MEDIUM or HIGH", "thinking_config"
            )
        return reasoning_for_effort(level.lower()), include
    budget = _get(config, "thinkingBudget", "thinking_budget")
    if budget is not None:
        return reasoning_for_budget(budget), include and budget != 0
    return 0, False


def _json_schema(config: dict[str, Any]) -> Any:
    mime = _get(config, "responseMimeType", "response_mime_type")
    schema = (
        _get(config, "responseJsonSchema", "response_json_schema")
        or _get(config, "responseSchema", "response_schema")
        or config.get("_responseJsonSchema")
    )
    if mime == "application/json":
        return schema if isinstance(schema, dict) else True
    if schema is not None:
        raise BadRequest(
            "response_mime_type must be application/json when a response schema is set",
            "generation_config",
        )
    return None


def _tools(value: Any) -> list[Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("Invalid value (tools)", "tools")
    out = []
    for tool in value:
        declarations = _get(tool, "functionDeclarations", "function_declarations") or []
        for declaration in declarations:
            if not isinstance(declaration, dict) or not declaration.get("name"):
                raise BadRequest("function_declarations[].name is required", "tools")
            schema = _get(declaration, "parametersJsonSchema", "parameters_json_schema")
            out.append(
                Tool(
                    declaration["name"],
                    declaration.get("description") or "",
                    schema or declaration.get("parameters"),
                )
            )
    return out


def _choose_tool(body: dict[str, Any], tools: list[Tool], turn: Turn, seed: int):
    if not tools:
        return None
    tool_config = _get(body, "toolConfig", "tool_config") or {}
    calling = _get(tool_config, "functionCallingConfig", "function_calling_config") or {}
    mode = str(calling.get("mode", "AUTO")).upper()
    if mode == "NONE":
        return None
    allowed = _get(calling, "allowedFunctionNames", "allowed_function_names")
    if allowed:
        tools = [t for t in tools if t.name in allowed]
        if not tools and mode == "ANY":
            raise BadRequest("allowed_function_names must name declared functions", "tool_config")
    tool = choose(tools, turn, forced=mode == "ANY")
    if tool is None:
        return None
    return tool_call(
        seed,
        tool.name,
        tool.schema,
        id_prefix="",
        prompt=turn.prompt,
        instructions=turn.instructions,
        named=mode == "ANY" and len(tools) == 1 and bool(allowed),
    )


def _turn(system: Any, contents: list) -> Turn:
    """The user's latest words and the function responses since the model last spoke."""
    last = max((i for i, c in enumerate(contents) if c.get("role") == "model"), default=-1)
    results: list[tuple[str, str]] = []
    words: list[str] = []
    for content in contents[last + 1 :]:
        for part in content.get("parts") or ():
            if not isinstance(part, dict):
                continue
            response = _get(part, "functionResponse", "function_response")
            if isinstance(response, dict):
                value = response.get("response")
                if isinstance(value, dict) and set(value) <= {"output", "result", "content"}:
                    value = next(iter(value.values()), value)  # the SDKs' {"result": ...}
                text = value if isinstance(value, str) else orjson.dumps(value).decode()
                results.append((str(response.get("name") or ""), text))
            elif isinstance(part.get("text"), str) and not part.get("thought"):
                words.append(part["text"])
    prompt = " ".join(words)
    if not results and not prompt:
        prompt = next((_text(c) for c in reversed(contents) if c.get("role", "user") == "user"), "")
    parts = system.get("parts") if isinstance(system, dict) else None
    instructions = _text({"parts": parts}) if isinstance(parts, list) else ""
    return Turn(prompt, results, "\n".join([instructions, prompt]))


def _text(content: Any) -> str:
    return " ".join(
        p["text"]
        for p in content.get("parts") or ()
        if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")
    )


def usage_dict(usage: Usage, *, candidates: int | None = None) -> dict[str, Any]:
    visible = usage.output_tokens if candidates is None else candidates
    meta: dict[str, Any] = {
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": visible,
        "totalTokenCount": usage.prompt_tokens + visible + usage.reasoning_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": usage.prompt_tokens}],
    }
    if usage.cached_tokens:
        meta["cachedContentTokenCount"] = usage.cached_tokens
        meta["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": usage.cached_tokens}]
    if usage.reasoning_tokens:
        meta["thoughtsTokenCount"] = usage.reasoning_tokens
    return meta


def _signature(output: Output) -> str:
    return base64.b64encode(b"simulated-thought-" + output.seed.to_bytes(8, "little")).decode()


def _function_call_part(output: Output) -> dict[str, Any]:
    tool = output.tool
    assert tool is not None
    part: dict[str, Any] = {"functionCall": {"name": tool.name, "args": tool.arguments}}
    if output.reasoning_tokens:  # thinking models sign their calls; the client sends it back
        part["thoughtSignature"] = _signature(output)
    return part


def render(chat: ChatRequest, output: Output, usage: Usage) -> bytes:
    parts: list[dict[str, Any]] = []
    if chat.include_thoughts and output.reasoning_tokens:
        parts.append({"text": "".join(output.thinking_pieces()), "thought": True})
    if output.tool:
        parts.append(_function_call_part(output))
    else:
        parts.append({"text": output.text})
    return orjson.dumps(
        {
            "candidates": [
                {
                    "content": {"parts": parts, "role": "model"},
                    "finishReason": FINISH[output.finish],
                    "index": 0,
                }
            ],
            "usageMetadata": usage_dict(usage),
            "modelVersion": chat.model,
            "responseId": new_id("sim"),
        }
    )


def frames(chat: ChatRequest, output: Output, usage: Usage) -> Frames:
    suffix = (
        b"".join(
            (
                b',"modelVersion":',
                orjson.dumps(chat.model),
                b',"responseId":"',
                new_id("sim").encode(),
            )
        )
        + b'"}'
    )
    first = True

    def wrap(obj: bytes) -> bytes:
        nonlocal first
        if chat.alt_sse:
            return b"data: " + obj + b"\r\n\r\n"
        lead, first = (b"[" if first else b",\r\n"), False
        return lead + obj

    def chunk(part: bytes, candidates: int, finish: bytes = b"") -> bytes:
        return wrap(
            b"".join(
                (
                    b'{"candidates":[{"content":{"parts":[',
                    part,
                    b'],"role":"model"},',
                    finish,
                    b'"index":0}],"usageMetadata":',
                    orjson.dumps(usage_dict(usage, candidates=candidates)),
                    suffix,
                )
            )
        )

    out = Frames()
    if chat.include_thoughts and output.reasoning_tokens:
        # NUL marks the text's slot: orjson escapes it, so it occurs nowhere else.
        thought = chunk(b'{"text":\x00,"thought":true}', 0).partition(b"\x00")
        out.extend([thought[0] + orjson.dumps(p) + thought[2] for p in output.thinking_pieces()])
    else:
        out.hidden = output.reasoning_tokens
    if output.tool:
        out.add(
            chunk(orjson.dumps(_function_call_part(output)), len(output.pieces)), len(output.pieces)
        )
    else:
        for n, piece in enumerate(output.pieces, 1):
            out.add(chunk(b'{"text":' + orjson.dumps(piece) + b"}", n), 1)
    finish = b'"finishReason":"' + FINISH[output.finish].encode() + b'",'
    out.end(chunk(b'{"text":""}', len(output.pieces), finish))
    if not chat.alt_sse:
        out.end(b"]")
    return out


# --- Embeddings ---


def _embed_one(request: Any, model: str, where: str) -> tuple[int, int, int]:
    """→ (seed, tokens, dimensions) of one EmbedContentRequest."""
    if not isinstance(request, dict) or not isinstance(request.get("content"), dict):
        raise BadRequest("content is required", where)
    parts = request["content"].get("parts")
    tokens = _parts_tokens(parts, f"{where}.content.parts")
    dims = _get(request, "outputDimensionality", "output_dimensionality")
    if dims is None:
        dims = DEFAULT_EMBEDDING_DIMENSIONS
    if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= MAX_DIMENSIONS:
        raise BadRequest("output_dimensionality is out of range", where)
    seed = digest(model.encode(), dumps_canonical(parts))
    return seed, max(tokens, 1), dims


def parse_embed(body: Any, model: str, *, batch: bool) -> list[tuple[int, int, int]]:
    if not isinstance(body, dict):
        raise BadRequest("Invalid JSON payload received.")
    if not batch:
        return [_embed_one(body, model, "EmbedContentRequest")]
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise BadRequest("requests is required", "requests")
    return [_embed_one(r, model, f"requests[{i}]") for i, r in enumerate(requests)]


def render_embed(items: list[tuple[int, int, int]], *, batch: bool) -> bytes:
    vectors = [{"values": embedding(seed, dims)[0]} for seed, _, dims in items]
    return orjson.dumps({"embeddings": vectors} if batch else {"embedding": vectors[0]})
