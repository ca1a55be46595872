"""The Responses API (`POST /v1/responses`, the Open Responses spec) as a translation of the
chat request path: a Responses body becomes one OpenAI chat body (then `parse_chat`, so
validation, limits, holds, routing, fallback, billing and logs are the chat path's own), and the
chat answer, or its chunk stream, becomes a Response object, or its typed SSE events.

A response's id is its generation's: `gen-<hex>` answers as `resp_<hex>`, so request logs and
the ledger name the same generation. Its items are `msg_<hex>`, `rs_<hex>` and `fc_<hex>_<n>`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from routing.errors import GatewayError, bad_request
from routing.validation import REASONING_EFFORTS

RESPONSE_PREFIX = "resp_"
GENERATION_PREFIX = "gen-"

# Copied to the chat body as they are (parse_chat checks them): our routing extensions and
# the sampling fields both APIs share.
_PASSED = (
    "model",
    "models",
    "provider",
    "route",
    "hedge_after_ms",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "service_tier",
)
# Responses features that need state or tools this gateway doesn't have.
_UNSUPPORTED = {
    "background": "Background responses are not supported: omit 'background'.",
    "conversation": "Conversations are not supported: chain responses with "
    "'previous_response_id' instead.",
    "prompt": "Stored prompt templates are not supported: send 'instructions' and 'input'.",
}
_ROLES = frozenset({"user", "system", "developer", "assistant"})
_SUMMARIES = frozenset({"auto", "concise", "detailed"})
# What a chat parameter is called here, for errors raised by the chat path.
_PARAMS = {
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "response_format": "text.format",
    "response_format.json_schema": "text.format",
    "reasoning_effort": "reasoning.effort",
    "messages": "input",
}


def response_id_for(generation_id: str) -> str:
    return RESPONSE_PREFIX + generation_id.removeprefix(GENERATION_PREFIX)


def generation_id_for(response_id: str) -> str:
    return GENERATION_PREFIX + response_id.removeprefix(RESPONSE_PREFIX)


@dataclass(slots=True)
class ResponsesRequest:
    """A checked Responses body: what goes to the chat path, and what the answer echoes."""

    body: dict[str, Any]
    chat: dict[str, Any]  # the chat body, without the earlier conversation and instructions
    messages: list[dict[str, Any]]  # this request's input, as chat messages
    items: list[dict[str, Any]]  # this request's input, as Responses items (input_items)
    instructions: str | None
    stream: bool
    store: bool
    previous_response_id: str | None
    echo: dict[str, Any] = field(default_factory=dict)

    def chat_body(self, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The whole chat body: instructions, then the stored conversation, then the input."""
        messages = []
        if self.instructions:
            messages.append({"role": "system", "content": self.instructions})
        messages.extend(history or ())
        messages.extend(self.messages)
        return {**self.chat, "messages": messages}


def _require(ok: bool, param: str, message: str, *, code: str | None = None) -> None:
    if not ok:
        raise bad_request(f"'{param}' {message}", param=param, code=code)


def _text_of(parts: list, where: str) -> str:
    texts = []
    for j, part in enumerate(parts):
        _require(
            isinstance(part, dict) and isinstance(part.get("text", part.get("refusal")), str),
            f"{where}[{j}]",
            "must be a text part ({'type': 'input_text', 'text': ...}).",
        )
        texts.append(part.get("text", part.get("refusal")))
    return "".join(texts)


def _part(part: Any, where: str) -> dict[str, Any]:
    """One input content part as a chat content part."""
    _require(isinstance(part, dict), where, "must be an object with a 'type'.")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        _require(isinstance(part.get("text"), str), f"{where}.text", "must be a string.")
        return {"type": "text", "text": part["text"]}
    if kind == "refusal":
        _require(isinstance(part.get("refusal"), str), f"{where}.refusal", "must be a string.")
        return {"type": "text", "text": part["refusal"]}
    if kind == "input_image":
        url = part.get("image_url")
        _require(
            isinstance(url, str) and bool(url),
            f"{where}.image_url",
            "must be an http(s) URL or an image data URL (file ids are not supported).",
        )
        image: dict[str, Any] = {"url": url}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        _require(
            isinstance(part.get("file_data"), str),
            f"{where}.file_data",
            "must be a data URL (file ids and file URLs are not supported).",
        )
        file = {"file_data": part["file_data"]}
        if isinstance(part.get("filename"), str):
            file["filename"] = part["filename"]
        return {"type": "file", "file": file}
    raise bad_request(
        f"'{where}.type' must be input_text, input_image or input_file.",
        param=f"{where}.type",
    )


def _message(item: dict, where: str) -> dict[str, Any]:
    role = item.get("role")
    _require(
        isinstance(role, str) and role in _ROLES,
        f"{where}.role",
        "must be one of user, system, developer, assistant.",
    )
    content = item.get("content")
    if isinstance(content, list):
        if role == "user":
            content = [_part(p, f"{where}.content[{j}]") for j, p in enumerate(content)]
        else:  # instructions and earlier answers are text
            content = _text_of(content, f"{where}.content")
    _require(
        isinstance(content, str | list), f"{where}.content", "must be a string or a list of parts."
    )
    return {"role": role, "content": content}


def _output_of(item: dict, where: str) -> str:
    output = item.get("output")
    if isinstance(output, list):
        return _text_of(output, f"{where}.output")
    _require(isinstance(output, str), f"{where}.output", "must be a string or a list of parts.")
    return output


def _input(raw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`input` as chat messages, and as the items input_items lists."""
    if isinstance(raw, str):
        raw = [{"type": "message", "role": "user", "content": raw}]
    _require(isinstance(raw, list) and bool(raw), "input", "must be a string or a non-empty list.")
    messages: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        _require(isinstance(item, dict), where, "must be an object.")
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            message = _message(item, where)
            if message["role"] == "assistant" and messages and _open_call_turn(messages[-1]):
                # An answer's text after its calls: one turn, as the chat API has it.
                messages[-1]["content"] = (messages[-1]["content"] or "") + message["content"]
            else:
                messages.append(message)
        elif kind == "function_call":
            for name in ("call_id", "name", "arguments"):
                _require(
                    isinstance(item.get(name), str) and (name == "arguments" or item[name]),
                    f"{where}.{name}",
                    "must be a string.",
                )
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and _may_take_calls(last):
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            _require(
                isinstance(item.get("call_id"), str) and bool(item["call_id"]),
                f"{where}.call_id",
                "must be the call_id of a function_call.",
            )
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item["call_id"],
                    "content": _output_of(item, where),
                }
            )
        elif kind == "reasoning":
            continue  # a reasoning item passed back: providers keep their own thinking
        else:
            raise bad_request(
                f"'{where}.type' {kind!r} is not supported: send message, function_call, "
                "function_call_output or reasoning items.",
                param=f"{where}.type",
                code="unsupported_value",
            )
        items.append(_as_item(item) if kind == "message" else item)
    return messages, items


def _as_item(item: dict) -> dict[str, Any]:
    """A message item as input_items lists it: typed, its content a list of parts."""
    content = item.get("content")
    if isinstance(content, str):
        kind = "output_text" if item.get("role") == "assistant" else "input_text"
        content = [{"type": kind, "text": content}]
    return {**item, "type": "message", "content": content}


def _may_take_calls(message: dict) -> bool:
    """An assistant turn that function calls may join (its text, or calls already)."""
    return message.get("role") == "assistant" and not isinstance(message.get("content"), list)


def _open_call_turn(message: dict) -> bool:
    return message.get("role") == "assistant" and bool(message.get("tool_calls"))


def _tools(raw: Any) -> tuple[list[dict], list[dict]]:
    """Function tools as chat tools, and as the Response echoes them. Built-in tools (web
    search, file search, code interpreter...) run on OpenAI's side: refused."""
    _require(isinstance(raw, list), "tools", "must be a list.")
    chat, echo = [], []
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        _require(isinstance(tool, dict), where, "must be an object.")
        kind = tool.get("type")
        if kind != "function":
            raise bad_request(
                f"'{where}.type' {kind!r} is not supported: only function tools "
                '({"type": "function", "name": ..., "parameters": {...}}) are available; '
                "built-in tools such as web_search or file_search are not.",
                param=f"{where}.type",
                code="unsupported_tool",
            )
        name = tool.get("name")
        _require(isinstance(name, str) and bool(name), f"{where}.name", "must be a function name.")
        function = {"name": name}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        chat.append({"type": "function", "function": function})
        echo.append(
            {
                "type": "function",
                "name": name,
                "description": tool.get("description"),
                "parameters": tool.get("parameters"),
                "strict": tool.get("strict"),
            }
        )
    return chat, echo


def _tool_choice(raw: Any) -> Any:
    if isinstance(raw, str) and raw in ("none", "auto", "required"):
        return raw
    if isinstance(raw, dict) and raw.get("type") == "function":
        _require(
            isinstance(raw.get("name"), str) and bool(raw["name"]),
            "tool_choice.name",
            "must name a function.",
        )
        return {"type": "function", "function": {"name": raw["name"]}}
    raise bad_request(
        '\'tool_choice\' must be none, auto, required or {"type": "function", "name": ...}.',
        param="tool_choice",
    )


def _text_format(raw: Any) -> dict | None:
    """`text.format` as a chat `response_format` (None for plain text)."""
    _require(isinstance(raw, dict), "text", "must be an object.")
    fmt = raw.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        _require(
            isinstance(fmt.get("schema"), dict),
            "text.format.schema",
            "must be a JSON Schema object.",
        )
        spec = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        for key in ("strict", "description"):
            if fmt.get(key) is not None:
                spec[key] = fmt[key]
        return {"type": "json_schema", "json_schema": spec}
    raise bad_request(
        "'text.format.type' must be text, json_object or json_schema.", param="text.format"
    )


def _reasoning(raw: Any) -> tuple[str | None, str | None]:
    _require(isinstance(raw, dict), "reasoning", "must be an object.")
    effort, summary = raw.get("effort"), raw.get("summary") or raw.get("generate_summary")
    _require(
        effort is None or (isinstance(effort, str) and effort in REASONING_EFFORTS),
        "reasoning.effort",
        "must be one of none, minimal, low, medium, high.",
    )
    _require(
        summary is None or (isinstance(summary, str) and summary in _SUMMARIES),
        "reasoning.summary",
        "must be auto, concise or detailed.",
    )
    return effort, summary


def read_request(body: Any) -> ResponsesRequest:
    """Check a Responses body and translate it; the earlier conversation (previous_response_id)
    is added by `ResponsesRequest.chat_body`. Errors name the Responses field."""
    _require(isinstance(body, dict), "body", "must be a JSON object.")
    for name, message in _UNSUPPORTED.items():
        if body.get(name) not in (None, False):
            raise bad_request(message, param=name, code="unsupported_parameter")
    model = body.get("model")
    if model is None and not body.get("models"):
        raise bad_request("'model' is required.", param="model")
    messages, items = _input(body.get("input"))
    instructions = body.get("instructions")
    _require(
        instructions is None or isinstance(instructions, str), "instructions", "must be a string."
    )
    stream = body.get("stream", False)
    _require(isinstance(stream, bool), "stream", "must be true or false.")
    store = body.get("store", True)
    _require(isinstance(store, bool), "store", "must be true or false.")
    previous = body.get("previous_response_id")
    _require(
        previous is None or (isinstance(previous, str) and previous.startswith(RESPONSE_PREFIX)),
        "previous_response_id",
        "must be the id of a stored response (resp_...).",
    )
    metadata = body.get("metadata")
    _require(
        metadata is None
        or (
            isinstance(metadata, dict)
            and len(metadata) <= 16
            and all(isinstance(v, str) for v in metadata.values())
        ),
        "metadata",
        "must be an object of up to 16 string values.",
    )
    max_output = body.get("max_output_tokens")

    chat: dict[str, Any] = {k: body[k] for k in _PASSED if body.get(k) is not None}
    if max_output is not None:
        chat["max_tokens"] = max_output
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    tools_echo: list[dict] = []
    if body.get("tools"):
        chat["tools"], tools_echo = _tools(body["tools"])
    tool_choice = body.get("tool_choice")
    if tool_choice is not None:
        chat["tool_choice"] = _tool_choice(tool_choice)
    text = body.get("text")
    if text is not None:
        response_format = _text_format(text)
        if response_format is not None:
            chat["response_format"] = response_format
    effort = summary = None
    if body.get("reasoning") is not None:
        effort, summary = _reasoning(body["reasoning"])
        if effort is not None:
            chat["reasoning_effort"] = effort
        if summary is not None:
            chat["include_reasoning"] = True  # thinking text comes back (as the summary)
    echo = {
        "instructions": instructions,
        "max_output_tokens": max_output,
        "metadata": metadata or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": previous,
        "reasoning": {"effort": effort, "summary": summary},
        "store": store,
        "temperature": body.get("temperature"),
        "text": text
        if isinstance(text, dict) and text.get("format")
        else {"format": {"type": "text"}},
        "tool_choice": tool_choice if tool_choice is not None else "auto",
        "tools": tools_echo,
        "top_p": body.get("top_p"),
        "truncation": "disabled",
        "user": body.get("user"),
    }
    return ResponsesRequest(
        body=body,
        chat=chat,
        messages=messages,
        items=items,
        instructions=instructions,
        stream=stream,
        store=store,
        previous_response_id=previous,
        echo=echo,
    )


def in_our_words(error: GatewayError) -> GatewayError:
    """An error of the chat path, naming the Responses field rather than the chat one."""
    param = error.param
    if not param:
        return error
    mapped = _PARAMS.get(param)
    if mapped is None and param.startswith("messages["):
        mapped = "input"
    elif mapped is None and param.startswith("tools[") and ".function." in param:
        mapped = param.replace(".function.", ".")
    if mapped is None:
        return error
    error.param = mapped
    for chat_name, ours in _PARAMS.items():
        if param == chat_name and chat_name in error.message:
            error.message = error.message.replace(chat_name, ours)
            error.detail = error.message
    return error


# --- answers --------------------------------------------------------------------------------


def usage_of(chat_usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Chat usage as Responses usage, with the cost (USD, exact) kept as the chat API sends it."""
    if not chat_usage:
        return None
    prompt = chat_usage.get("prompt_tokens_details") or {}
    completion = chat_usage.get("completion_tokens_details") or {}
    usage = {
        "input_tokens": chat_usage.get("prompt_tokens", 0),
        "input_tokens_details": {
            "cached_tokens": prompt.get("cached_tokens", 0),
            "cache_write_tokens": prompt.get("cache_write_tokens", 0),
        },
        "output_tokens": chat_usage.get("completion_tokens", 0),
        "output_tokens_details": {"reasoning_tokens": completion.get("reasoning_tokens", 0)},
        "total_tokens": chat_usage.get("total_tokens", 0),
    }
    if "cost" in chat_usage:
        usage["cost"] = chat_usage["cost"]
    return usage


def _status_of(finish_reason: str | None) -> tuple[str, dict | None]:
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def response_json(
    request: ResponsesRequest,
    *,
    response_id: str,
    created_at: int,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    incomplete_details: dict[str, Any] | None = None,
    provider: str | None = None,
    simulated: bool = False,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete_details,
        "model": model,
        "output": output,
        "usage": usage,
        **request.echo,
    }
    if status in ("completed", "incomplete", "failed"):
        data["completed_at"] = int(time.time()) if status == "completed" else None
    if provider:
        data["provider"] = provider  # ours, as on chat completions
    if simulated:
        data["simulated"] = True
    return data


def _hex(response_id: str) -> str:
    return response_id.removeprefix(RESPONSE_PREFIX)


def _message_item(response_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": f"msg_{_hex(response_id)}",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _reasoning_item(response_id: str, text: str) -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": text}] if text else []
    return {"id": f"rs_{_hex(response_id)}", "type": "reasoning", "summary": summary}


def _call_item(response_id: str, n: int, call: dict, status: str) -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "id": f"fc_{_hex(response_id)}_{n}",
        "type": "function_call",
        "status": status,
        "call_id": call.get("id") or "",
        "name": function.get("name") or "",
        "arguments": function.get("arguments") or "",
    }


def assistant_turn(message: dict[str, Any]) -> dict[str, Any]:
    """The answer as a chat message to keep in a stored conversation (tool call ids and any
    provider fields on them kept, thinking text left out)."""
    turn: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        turn["tool_calls"] = message["tool_calls"]
    return turn


def response_from_chat(
    request: ResponsesRequest, answer: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A chat.completion as a Response, and its answer as a chat message (for storing)."""
    response_id = response_id_for(answer["id"])
    choice = (answer.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    status, incomplete = _status_of(choice.get("finish_reason"))
    item_status = "incomplete" if status == "incomplete" else "completed"
    output: list[dict[str, Any]] = []
    reasoning = message.get("reasoning") or message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        output.append(_reasoning_item(response_id, reasoning))
    content = message.get("content")
    if isinstance(content, str) and (content or not message.get("tool_calls")):
        output.append(_message_item(response_id, content, item_status))
    elif message.get("refusal"):
        item = _message_item(response_id, "", item_status)
        item["content"] = [{"type": "refusal", "refusal": message["refusal"]}]
        output.append(item)
    for n, call in enumerate(message.get("tool_calls") or ()):
        output.append(_call_item(response_id, n, call, "completed"))
    if not any(item["type"] != "reasoning" for item in output):  # an empty answer is a message
        output.append(_message_item(response_id, "", item_status))
    response = response_json(
        request,
        response_id=response_id,
        created_at=answer.get("created") or int(time.time()),
        model=answer.get("model") or "",
        status=status,
        output=output,
        usage=usage_of(answer.get("usage")),
        incomplete_details=incomplete,
        provider=answer.get("provider"),
        simulated=bool(answer.get("simulated")),
    )
    return response, assistant_turn(message)


# --- streams --------------------------------------------------------------------------------


_TEXT_ONLY = frozenset({"content", "role"})


@dataclass(slots=True)
class _Open:
    kind: str  # "message", "reasoning" or "function_call"
    index: int  # output_index
    item: dict[str, Any]
    text: list[str] = field(default_factory=list)
    call: dict[str, Any] | None = None  # a function call as kept in the conversation
    head: bytes = b""  # a text delta event's bytes up to its sequence number


class ResponseStream:
    """Chat chunks in, Responses stream events out (each `event: <type>` with its JSON and an
    increasing sequence_number). Items open as their first delta arrives and close when
    another kind of output starts or the stream ends."""

    def __init__(
        self,
        request: ResponsesRequest,
        *,
        generation_id: str,
        created_at: int,
        model: str,
        provider: str | None,
        simulated: bool,
    ) -> None:
        self.request = request
        self.response_id = response_id_for(generation_id)
        self.created_at = created_at
        self.model = model
        self.provider = provider
        self.simulated = simulated
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.open: list[_Open] = []
        self.calls: dict[int, _Open] = {}  # chat tool call index -> its open item
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.turn: dict[str, Any] = {"role": "assistant", "content": None}
        self.final: dict[str, Any] | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _response(self, status: str, **extra: Any) -> dict[str, Any]:
        return response_json(
            self.request,
            response_id=self.response_id,
            created_at=self.created_at,
            model=self.model,
            status=status,
            output=list(self.output),
            provider=self.provider,
            simulated=self.simulated,
            **extra,
        )

    def start(self) -> list[bytes]:
        response = self._response("in_progress")
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    # Opening and closing items.

    def _add(self, kind: str, item: dict[str, Any]) -> tuple[_Open, bytes]:
        if any(other["id"] == item["id"] for other in self.output):
            # A second message (or reasoning) in one answer, after another kind of output.
            item["id"] = f"{item['id']}_{len(self.output)}"
        opened = _Open(kind, len(self.output), item)
        self.output.append(item)
        self.open.append(opened)
        return opened, self._event(
            "response.output_item.added", output_index=opened.index, item=dict(item)
        )

    def _open_text(self, kind: str) -> tuple[_Open, list[bytes]]:
        """The open message (or reasoning) item, after closing any other kind."""
        if self.open and self.open[-1].kind == kind and len(self.open) == 1:
            return self.open[-1], []
        events = self._close_all("completed")
        if kind == "message":
            item = _message_item(self.response_id, "", "in_progress")
            part = item["content"][0]
            item["content"] = []
            opened, added = self._add(kind, item)
            events += [
                added,
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=opened.index,
                    content_index=0,
                    part=part,
                ),
            ]
        else:
            item = _reasoning_item(self.response_id, "")
            opened, added = self._add(kind, item)
            events += [
                added,
                self._event(
                    "response.reasoning_summary_part.added",
                    item_id=item["id"],
                    output_index=opened.index,
                    summary_index=0,
                    part={"type": "summary_text", "text": ""},
                ),
            ]
        return opened, events

    def _close(self, opened: _Open, status: str) -> list[bytes]:
        item, index = opened.item, opened.index
        text = "".join(opened.text)
        events = []
        if opened.kind == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            item["content"] = [part]
            item["status"] = status
            events += [
                self._event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=text,
                    logprobs=[],
                ),
                self._event(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=part,
                ),
            ]
        elif opened.kind == "reasoning":
            part = {"type": "summary_text", "text": text}
            item["summary"] = [part]
            events += [
                self._event(
                    "response.reasoning_summary_text.done",
                    item_id=item["id"],
                    output_index=index,
                    summary_index=0,
                    text=text,
                ),
                self._event(
                    "response.reasoning_summary_part.done",
                    item_id=item["id"],
                    output_index=index,
                    summary_index=0,
                    part=part,
                ),
            ]
        else:
            item["arguments"] = text
            item["status"] = status
            if opened.call is not None:
                opened.call["function"]["arguments"] = text
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=text,
                )
            )
        events.append(self._event("response.output_item.done", output_index=index, item=item))
        return events

    def _close_all(self, status: str) -> list[bytes]:
        events = []
        for opened in self.open:
            events += self._close(opened, status)
        self.open.clear()
        self.calls.clear()
        return events

    # Chat chunks.

    def feed(self, chunk: dict[str, Any]) -> bytes:
        """One chunk of the chat stream in, the bytes of the events it makes out (one write)."""
        return b"".join(self.chunk(chunk))

    def _text_delta(self, opened: _Open, text: str) -> bytes:
        """A response.output_text.delta event, from bytes made once per item: most events of
        a stream are these."""
        opened.text.append(text)
        if not opened.head:
            opened.head = (
                b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
                b'"item_id":'
                + orjson.dumps(opened.item["id"])
                + b',"output_index":'
                + str(opened.index).encode()
                + b',"content_index":0,"logprobs":[],"sequence_number":'
            )
        event = (
            opened.head + str(self.sequence).encode() + b',"delta":' + orjson.dumps(text) + b"}\n\n"
        )
        self.sequence += 1
        return event

    def chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        choices = chunk.get("choices")
        if (  # the common case: more text for the message being written
            choices
            and len(choices) == 1
            and len(self.open) == 1
            and self.open[0].kind == "message"
            and "usage" not in chunk
            and "error" not in chunk
        ):
            choice = choices[0]
            delta = choice.get("delta")
            if delta and choice.get("finish_reason") is None and delta.keys() <= _TEXT_ONLY:
                content = delta.get("content")
                if isinstance(content, str):
                    return [self._text_delta(self.open[0], content)] if content else []
        events: list[bytes] = []
        if "usage" in chunk and chunk["usage"]:
            self.usage = usage_of(chunk["usage"])
        if "error" in chunk and chunk["error"]:
            self.error = chunk["error"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if "reasoning" in delta or "reasoning_content" in delta:
                reasoning = delta.get("reasoning") or delta.get("reasoning_content")
            else:
                reasoning = None
            if isinstance(reasoning, str) and reasoning:
                opened, events_ = self._open_text("reasoning")
                events += events_
                opened.text.append(reasoning)
                events.append(
                    self._event(
                        "response.reasoning_summary_text.delta",
                        item_id=opened.item["id"],
                        output_index=opened.index,
                        summary_index=0,
                        delta=reasoning,
                    )
                )
            content = delta.get("content")
            if isinstance(content, str) and content:
                opened, events_ = self._open_text("message")
                events += events_
                events.append(self._text_delta(opened, content))
            if "tool_calls" in delta:
                for call in delta["tool_calls"] or ():
                    events += self._call_delta(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def _call_delta(self, call: dict[str, Any]) -> list[bytes]:
        events: list[bytes] = []
        position = call.get("index", len(self.calls))
        function = call.get("function") or {}
        opened = self.calls.get(position)
        if opened is None:
            if any(o.kind != "function_call" for o in self.open):
                events += self._close_all("completed")
            calls = self.turn.setdefault("tool_calls", [])
            stored = {
                "id": call.get("id") or "",
                "type": "function",
                "function": {"name": function.get("name") or "", "arguments": ""},
            }
            if call.get("extra_content") is not None:  # a provider's signature on the call
                stored["extra_content"] = call["extra_content"]
            calls.append(stored)
            item = _call_item(self.response_id, len(calls) - 1, stored, "in_progress")
            opened, added = self._add("function_call", item)
            opened.call = stored
            self.calls[position] = opened
            events.append(added)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            opened.text.append(arguments)
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=opened.item["id"],
                    output_index=opened.index,
                    delta=arguments,
                )
            )
        return events

    def _end_turn(self) -> None:
        """The answer's text into the turn kept for the conversation (joined once, at the end:
        a long answer's deltas are many)."""
        text = "".join(
            part["text"]
            for item in self.output
            if item["type"] == "message"
            for part in item["content"]
            if part["type"] == "output_text"
        )
        self.turn["content"] = text if text or not self.turn.get("tool_calls") else None

    def finish(self) -> list[bytes]:
        """The closing events: open items done, then response.completed (or .incomplete, or
        an `error` event and response.failed when the provider's stream failed)."""
        if self.error is not None or self.finish_reason == "error":
            events = self._close_all("incomplete")
            self._end_turn()
            error = self.error or {}
            message = error.get("message") or "The provider's stream failed."
            events.append(self._event("error", code=error.get("code"), message=message, param=None))
            self.final = self._response(
                "failed",
                usage=self.usage,
                error={"code": "server_error", "message": message},
            )
            events.append(self._event("response.failed", response=self.final))
            return events
        status, incomplete = _status_of(self.finish_reason)
        events = self._close_all("incomplete" if status == "incomplete" else "completed")
        if not self.output:  # an empty answer is still a message
            opened, opening = self._open_text("message")
            events += opening + self._close_all("completed")
        self._end_turn()
        self.final = self._response(status, usage=self.usage, incomplete_details=incomplete)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        events.append(self._event(kind, response=self.final))
        return events
