"""Google Gemini `generateContent` / `streamGenerateContent?alt=sse`, on AI Studio
(target.auth "x-goog-api-key") and Vertex AI (target.auth "bearer", an access token; the
base URL already holds the project, location and `publishers/google`).

Translation notes:
- system and developer messages → `systemInstruction`; assistant → role "model"; `tool`
  messages → a user turn of `functionResponse` parts, named after the call they answer
  (looked up by tool_call_id in the assistant messages before them), with
  `response: {"content": <the JSON object the tool returned, else its text>}`.
- Tool parameters go as `parametersJsonSchema` and a JSON schema answer as
  `responseJsonSchema`: both take plain JSON Schema (additionalProperties, $defs, ...), so
  nothing needs stripping as it would for the OpenAPI-subset `parameters`/`responseSchema`.
- Gemini 3 signs its function calls (`thoughtSignature`) and rejects a history whose calls
  lost the signature. We hand it out on the tool call as
  `extra_content.google.thought_signature` (Google's own OpenAI-compatible convention) and
  put it back when the client returns it; when the client dropped it, the first call of the
  turn gets the placeholder Google documents for histories it didn't produce.
- reasoning_effort → `thinkingConfig.thinkingLevel` (Gemini 3); "none" becomes "minimal",
  Gemini 3 can't switch thinking off.
- Thought parts (`thought: true`) never reach content; they come back as `reasoning`. Gemini
  sends them only when asked (`include_reasoning: true`, OpenRouter's name, asks).
- Tool call ids are generated ("call_" + 24 hex) unless Gemini gave one.
"""

from __future__ import annotations

import mimetypes
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

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
    content_text,
    dumps,
    function_tools,
    image_url_of,
    loads,
    max_tokens_of,
    parse_arguments,
    parse_data_url,
    parse_json_body,
    retry_after,
    stop_list,
)

SKIP_SIGNATURE = "skip_thought_signature_validator"
THINKING_LEVELS = {
    "none": "minimal",
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
}
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
STATUS_KINDS = {
    "INVALID_ARGUMENT": ErrorKind.BAD_REQUEST,
    "OUT_OF_RANGE": ErrorKind.BAD_REQUEST,
    # "User location is not supported", "enable billing": our account's problem, not the
    # request's, so another endpoint (Vertex, OpenRouter) may well serve it.
    "FAILED_PRECONDITION": ErrorKind.AUTH,
    "UNAUTHENTICATED": ErrorKind.AUTH,
    "PERMISSION_DENIED": ErrorKind.AUTH,
    "NOT_FOUND": ErrorKind.NOT_FOUND,
    "RESOURCE_EXHAUSTED": ErrorKind.RATE_LIMITED,
    "INTERNAL": ErrorKind.OVERLOADED,
    "UNAVAILABLE": ErrorKind.OVERLOADED,
    "DEADLINE_EXCEEDED": ErrorKind.OVERLOADED,
    "UNKNOWN": ErrorKind.OVERLOADED,
    "ABORTED": ErrorKind.OVERLOADED,
    "CANCELLED": ErrorKind.OVERLOADED,
}


def _call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


# --- request -------------------------------------------------------------------------------


def _media_part(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        mime_type, data = parse_data_url(url)
        return {"inlineData": {"mimeType": mime_type, "data": data}}
    mime_type = mimetypes.guess_type(urlsplit(url).path)[0] or "image/jpeg"
    return {"fileData": {"mimeType": mime_type, "fileUri": url}}


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            parts.append(_media_part(image_url_of(part)))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            fmt = audio.get("format") or "wav"
            parts.append({"inlineData": {"mimeType": f"audio/{fmt}", "data": audio.get("data")}})
        elif kind == "file":
            file = part.get("file") or {}
            if not str(file.get("file_data") or "").startswith("data:"):
                raise UpstreamError(ErrorKind.BAD_REQUEST, "file parts need inline file_data")
            parts.append(_media_part(file["file_data"]))
        elif kind == "refusal":
            continue
        else:
            raise UpstreamError(ErrorKind.BAD_REQUEST, f"gemini does not take {kind!r} parts")
    return parts


def _tool_response(content: Any) -> dict[str, Any]:
    text = content_text(content)
    try:
        value = loads(text)
    except ValueError:
        value = None
    return {"content": value if isinstance(value, dict) else text}


def _translate_messages(
    messages: list[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}

    def push(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            text = content_text(message.get("content"))
            if text:
                system.append({"text": text})
        elif role == "user":
            push("user", _parts(message.get("content")))
        elif role == "assistant":
            parts = _parts(message.get("content"))
            for position, call in enumerate(message.get("tool_calls") or ()):
                function = call.get("function") or {}
                name = function.get("name")
                call_names[call.get("id")] = name
                part: dict[str, Any] = {
                    "functionCall": {
                        "name": name,
                        "args": parse_arguments(function.get("arguments")),
                    }
                }
                google = (call.get("extra_content") or {}).get("google") or {}
                signature = google.get("thought_signature")
                if signature or position == 0:
                    part["thoughtSignature"] = signature or SKIP_SIGNATURE
                parts.append(part)
            push("model", parts)
        elif role == "tool":
            name = call_names.get(message.get("tool_call_id")) or message.get("name")
            if not name:
                raise UpstreamError(
                    ErrorKind.BAD_REQUEST,
                    f"tool message answers an unknown tool_call_id {message.get('tool_call_id')!r}",
                )
            part = {
                "functionResponse": {
                    "name": name,
                    "response": _tool_response(message.get("content")),
                }
            }
            push("user", [part])
        else:
            raise UpstreamError(ErrorKind.BAD_REQUEST, f"unsupported message role {role!r}")
    return system, contents


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if isinstance(choice, Mapping):
        name = (choice.get("function") or {}).get("name")
        config = {"mode": "ANY", "allowedFunctionNames": [name]}
    elif choice in ("auto", "required", "none"):
        config = {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}[choice]}
    else:
        return None
    return {"functionCallingConfig": config}


def _generation_config(body: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    if body.get("logprobs"):
        config["responseLogprobs"] = True
        if body.get("top_logprobs"):
            config["logprobs"] = body["top_logprobs"]
    max_tokens = max_tokens_of(body)
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = stop_list(body.get("stop"))
    if stop:
        config["stopSequences"] = stop
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
    elif response_format.get("type") == "json_object":
        config["responseMimeType"] = "application/json"
    level = THINKING_LEVELS.get(body.get("reasoning_effort") or "")
    if level:
        config["thinkingConfig"] = {"thinkingLevel": level}
        if body.get("include_reasoning"):  # the thought summaries come back as `reasoning`
            config["thinkingConfig"]["includeThoughts"] = True
    return config


# --- response ------------------------------------------------------------------------------


def gemini_usage(metadata: Mapping[str, Any] | None) -> Usage:
    if not metadata:
        return Usage()
    thoughts = int(metadata.get("thoughtsTokenCount") or 0)
    return Usage(
        # Tokens of tool results Gemini fetched itself are billed as input too.
        prompt_tokens=int(metadata.get("promptTokenCount") or 0)
        + int(metadata.get("toolUsePromptTokenCount") or 0),
        # OpenAI counts reasoning inside completion tokens; Gemini counts it apart.
        completion_tokens=int(metadata.get("candidatesTokenCount") or 0) + thoughts,
        cached_tokens=int(metadata.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
    )


def _finish_reason(reason: str | None, has_calls: bool) -> str:
    finish = FINISH_REASONS.get(reason or "", "stop")
    return "tool_calls" if finish == "stop" and has_calls else finish


def _tool_call(part: Mapping[str, Any]) -> dict[str, Any]:
    function = part["functionCall"]
    call: dict[str, Any] = {
        "id": function.get("id") or _call_id(),
        "type": "function",
        "function": {"name": function.get("name"), "arguments": dumps(function.get("args") or {})},
    }
    if part.get("thoughtSignature"):
        call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return call


def _retry_delay(error: Mapping[str, Any]) -> float | None:
    for detail in error.get("details") or ():
        if isinstance(detail, Mapping) and detail.get("retryDelay"):
            try:
                return float(str(detail["retryDelay"]).rstrip("s"))
            except ValueError:
                return None
    return None


def gemini_error(
    status: int | None, headers: Mapping[str, str], body: bytes | Any
) -> UpstreamError:
    data = body if isinstance(body, Mapping | list) else parse_json_body(body)
    if isinstance(data, list) and data:  # the JSON-array stream framing wraps it in a list
        data = data[0]
    error = data.get("error") if isinstance(data, Mapping) else None
    if not isinstance(error, Mapping):
        error = {}
    code = error.get("code")
    if status is None and isinstance(code, int):
        status = code
    grpc_status = str(error.get("status") or "")
    message = str(error.get("message") or "")
    if not message:
        message = (body_excerpt(body) if isinstance(body, bytes) else "") or f"HTTP {status}"
    text = message.lower()
    reasons = {
        str(detail.get("reason"))
        for detail in error.get("details") or ()
        if isinstance(detail, Mapping)
    }
    kind = STATUS_KINDS.get(grpc_status)
    if kind is None:
        kind = (
            {401: ErrorKind.AUTH, 403: ErrorKind.AUTH, 404: ErrorKind.NOT_FOUND}.get(status)
            or (ErrorKind.RATE_LIMITED if status == 429 else None)
            or (ErrorKind.BAD_REQUEST if status and 400 <= status < 500 else ErrorKind.OVERLOADED)
        )
    if kind is ErrorKind.BAD_REQUEST:
        if "input token count" in text or "exceeds the maximum number of tokens" in text:
            kind = ErrorKind.CONTEXT_LENGTH
        elif "API_KEY_INVALID" in reasons or "api key not valid" in text:
            kind = ErrorKind.AUTH  # AI Studio answers a bad key with 400 INVALID_ARGUMENT
    delay = None
    if kind is ErrorKind.RATE_LIMITED:
        delay = retry_after(headers)
        if delay is None:
            delay = _retry_delay(error)
    return UpstreamError(kind, message, status=status, retry_after=delay, from_provider=True)


def _token(entry: Mapping[str, Any]) -> dict[str, Any]:
    token = str(entry.get("token") or "")
    return {
        "token": token,
        "logprob": entry.get("logProbability", 0.0),
        "bytes": list(token.encode()),
    }


def openai_logprobs(candidate: Mapping[str, Any]) -> dict[str, Any] | None:
    """Gemini's `logprobsResult` (chosen tokens, and the top ones at each step) in OpenAI's
    shape: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}."""
    result = candidate.get("logprobsResult")
    if not isinstance(result, Mapping):
        return None
    tops = result.get("topCandidates") or []
    content = []
    for step, chosen in enumerate(result.get("chosenCandidates") or ()):
        entry = _token(chosen)
        top = tops[step].get("candidates") if step < len(tops) else None
        entry["top_logprobs"] = [_token(t) for t in top or ()]
        content.append(entry)
    return {"content": content}


def _candidate_parts(candidate: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return (candidate.get("content") or {}).get("parts") or []


class GeminiStreamDecoder(SSEStreamDecoder):
    def __init__(self) -> None:
        super().__init__()
        self._calls: dict[int, int] = {}  # choice index → tool calls sent so far

    def _event(self, event: str, data: str, out: list[dict[str, Any]], final: bool) -> None:
        obj = self._json(data, final)
        if isinstance(obj, list):  # tolerate the JSON-array framing's elements
            obj = obj[0] if obj else None
        if not isinstance(obj, dict):
            return
        if obj.get("error"):
            raise gemini_error(None, {}, obj)
        if obj.get("usageMetadata"):
            # Every chunk repeats the running totals: the last one is the answer's usage.
            self.usage = gemini_usage(obj["usageMetadata"])
        candidates = obj.get("candidates") or []
        if not candidates and (obj.get("promptFeedback") or {}).get("blockReason"):
            out.append(self._chunk({"content": ""}, "content_filter"))
            self.done = True
            return
        for position, candidate in enumerate(candidates):
            index = candidate.get("index", position)
            for part in _candidate_parts(candidate):
                if "functionCall" in part:
                    call = self._calls.get(index, 0)
                    self._calls[index] = call + 1
                    out.append(
                        self._chunk(
                            {"tool_calls": [{"index": call, **_tool_call(part)}]}, None, index
                        )
                    )
                elif part.get("text"):
                    key = "reasoning" if part.get("thought") else "content"
                    out.append(self._chunk({key: part["text"]}, None, index))
                    logprobs = None if part.get("thought") else openai_logprobs(candidate)
                    if logprobs is not None:
                        out[-1]["choices"][0]["logprobs"] = logprobs
            reason = candidate.get("finishReason")
            if reason:
                finish = _finish_reason(reason, bool(self._calls.get(index)))
                out.append(self._chunk({}, finish, index))
                self.done = True


class GeminiAdapter(Adapter):
    wire = "gemini"
    logprobs = True
    max_choices = 8  # candidateCount

    def chat_request(
        self, target: Target, body: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        system, contents = _translate_messages(body.get("messages") or [])
        payload: dict[str, Any] = {"contents": contents}
        if system:
            payload["systemInstruction"] = {"parts": system}
        functions = function_tools(body.get("tools"))
        if functions:
            declarations = []
            for function in functions:
                declaration = {"name": function.get("name")}
                if function.get("description"):
                    declaration["description"] = function["description"]
                if function.get("parameters"):
                    declaration["parametersJsonSchema"] = function["parameters"]
                declarations.append(declaration)
            payload["tools"] = [{"functionDeclarations": declarations}]
            tool_config = _tool_config(body.get("tool_choice"))
            if tool_config:
                payload["toolConfig"] = tool_config
        generation_config = _generation_config(body)
        if generation_config:
            payload["generationConfig"] = generation_config
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        url = f"{target.base_url}/models/{target.upstream_model}:{method}"
        return UpstreamRequest("POST", url, auth_headers(target), payload)

    def chat_response(self, target: Target, data: dict[str, Any]) -> tuple[dict[str, Any], Usage]:
        if data.get("error"):
            raise gemini_error(None, {}, data)
        choices = []
        for position, candidate in enumerate(data.get("candidates") or ()):
            texts: list[str] = []
            thoughts: list[str] = []
            tool_calls: list[dict[str, Any]] = []
            for part in _candidate_parts(candidate):
                if "functionCall" in part:
                    tool_calls.append(_tool_call(part))
                elif part.get("text"):
                    (thoughts if part.get("thought") else texts).append(part["text"])
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(texts) or (None if tool_calls else ""),
            }
            if tool_calls:
                message["tool_calls"] = tool_calls
            if thoughts:
                message["reasoning"] = "".join(thoughts)
            choice = {
                "index": candidate.get("index", position),
                "message": message,
                "finish_reason": _finish_reason(candidate.get("finishReason"), bool(tool_calls)),
            }
            logprobs = openai_logprobs(candidate)
            if logprobs is not None:
                choice["logprobs"] = logprobs
            choices.append(choice)
        if not choices:  # the prompt itself was blocked (promptFeedback.blockReason)
            blocked = (data.get("promptFeedback") or {}).get("blockReason")
            choices.append(
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ""},
                    "finish_reason": "content_filter" if blocked else "stop",
                }
            )
        result = {"object": "chat.completion", "choices": choices}
        return result, gemini_usage(data.get("usageMetadata"))

    def stream_decoder(self, target: Target) -> StreamDecoder:
        return GeminiStreamDecoder()

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return gemini_error(status, headers, body)
