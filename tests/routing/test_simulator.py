"""The provider simulator over real HTTP: each wire format's shapes and usage, determinism,
max tokens, tools, JSON output, reasoning, caching, embeddings, auth, every fault kind, the
control API and the management commands."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jsonschema
import pytest
from django.core.management import CommandError, call_command

from routing.simulator import SimulatorServer

OPENAI_AUTH = {"Authorization": "Bearer sk-sim"}
ANTHROPIC_AUTH = {"x-api-key": "sk-ant-sim", "anthropic-version": "2023-06-01"}
GEMINI_AUTH = {"x-goog-api-key": "AIza-sim"}
GEMINI_MODEL = "gemini-3.1-flash-lite"

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "hourly": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "where": {
            "type": "object",
            "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
            "required": ["lat", "lon"],
            "additionalProperties": False,
        },
    },
    "required": ["city", "unit", "days", "hourly", "tags", "where"],
    "additionalProperties": False,
}
LONG_PROMPT = " ".join(["cacheable"] * 60)


@pytest.fixture
def http():
    with httpx.Client(timeout=5) as client:
        yield client


# --- helpers ---


def openai_chat(http, sim, body, slug="openai", headers=OPENAI_AUTH):
    body = {"model": "gpt-4.1-mini", **body}
    return http.post(f"{sim.base_url(slug, 'openai')}/chat/completions", json=body, headers=headers)


def anthropic_messages(http, sim, body, slug="anthropic", headers=ANTHROPIC_AUTH):
    body = {"model": "claude-3-5-haiku-latest", "max_tokens": 1024, **body}
    return http.post(f"{sim.base_url(slug, 'anthropic')}/v1/messages", json=body, headers=headers)


def gemini_call(http, sim, body, action="generateContent", slug="google-ai-studio", **kwargs):
    kwargs.setdefault("headers", GEMINI_AUTH)
    url = f"{sim.base_url(slug, 'gemini')}/models/{GEMINI_MODEL}:{action}"
    return http.post(url, json=body, **kwargs)


def user(text):
    return [{"role": "user", "content": text}]


def gemini_user(text):
    return [{"role": "user", "parts": [{"text": text}]}]


def sse_data(text):
    """OpenAI: the data payloads, in order."""
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


def anthropic_events(text):
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def gemini_chunks(text):
    assert "\r\n\r\n" in text  # Google separates SSE events with CRLF CRLF
    return [json.loads(e[6:]) for e in text.split("\r\n\r\n") if e.startswith("data: ")]


# --- OpenAI wire ---


def test_openai_chat_shape_usage_and_determinism(sim, http):
    response = openai_chat(http, sim, {"messages": user("hello there")})
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    choice = data["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    text = choice["message"]["content"]
    assert len(text.split()) == 16  # one word per token, default length
    usage = data["usage"]
    assert usage["prompt_tokens"] == 2 + 4  # two words + 4 per message
    assert usage["completion_tokens"] == 16
    assert usage["total_tokens"] == 22
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0

    again = openai_chat(http, sim, {"messages": user("hello there")}).json()
    assert again["choices"][0]["message"]["content"] == text
    other = openai_chat(http, sim, {"messages": user("something else")}).json()
    assert other["choices"][0]["message"]["content"] != text


def test_openai_max_tokens_and_finish_reasons(sim, http):
    for field in ("max_tokens", "max_completion_tokens"):
        data = openai_chat(http, sim, {"messages": user("hi"), field: 5}).json()
        assert data["choices"][0]["finish_reason"] == "length"
        assert data["usage"]["completion_tokens"] == 5
        assert len(data["choices"][0]["message"]["content"].split()) == 5
    roomy = openai_chat(http, sim, {"messages": user("hi"), "max_tokens": 100}).json()
    assert roomy["choices"][0]["finish_reason"] == "stop"
    assert roomy["usage"]["completion_tokens"] == 16

    sim.set("openai", output_tokens=40)
    longer = openai_chat(http, sim, {"messages": user("hi")}).json()
    assert longer["usage"]["completion_tokens"] == 40

    bad = openai_chat(http, sim, {"messages": user("hi"), "max_tokens": 0})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "max_tokens"


def test_openai_stop_sequence(sim, http):
    full = openai_chat(http, sim, {"messages": user("stop me")}).json()
    text = full["choices"][0]["message"]["content"]
    third_word = text.split()[2]
    cut = openai_chat(http, sim, {"messages": user("stop me"), "stop": [" " + third_word]}).json()
    assert cut["choices"][0]["message"]["content"] == text[: text.index(" " + third_word)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert cut["usage"]["completion_tokens"] == 2


def test_openai_stream_with_usage(sim, http):
    body = {"messages": user("hello there"), "max_tokens": 8}
    plain = openai_chat(http, sim, body).json()
    streamed = openai_chat(
        http, sim, {**body, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert streamed.headers["content-type"].startswith("text/event-stream")
    payloads = sse_data(streamed.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    *content_chunks, usage_chunk = chunks
    assert all(c["usage"] is None for c in content_chunks)  # null until the last chunk
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == plain["usage"]
    assert content_chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in content_chunks)
    assert text == plain["choices"][0]["message"]["content"]
    assert content_chunks[-1]["choices"][0]["finish_reason"] == "length"
    # one token per content chunk
    assert sum(1 for c in content_chunks if c["choices"][0]["delta"].get("content")) == 8


def test_openai_stream_without_usage_and_stream_options_rules(sim, http):
    streamed = openai_chat(http, sim, {"messages": user("hi"), "stream": True})
    chunks = [json.loads(p) for p in sse_data(streamed.text)[:-1]]
    assert all("usage" not in c and c["choices"] for c in chunks)
    refused = openai_chat(
        http, sim, {"messages": user("hi"), "stream_options": {"include_usage": True}}
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "stream_options"


def test_openai_tool_calls(sim, http):
    tools = [
        {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "d", "parameters": WEATHER_SCHEMA},
        },
    ]
    data = openai_chat(
        http, sim, {"messages": user("use get_weather for Paris"), "tools": tools}
    ).json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    arguments = json.loads(call["function"]["arguments"])  # a JSON string, as OpenAI sends
    jsonschema.validate(arguments, WEATHER_SCHEMA)
    assert arguments["city"] == "Paris" and arguments["unit"] == "celsius"  # from the prompt
    assert arguments["days"] == 1 and arguments["hourly"] is True

    # No mention: text. "required": the first tool. A named choice: that tool.
    assert (
        "tool_calls"
        not in openai_chat(http, sim, {"messages": user("hi"), "tools": tools}).json()["choices"][
            0
        ]["message"]
    )
    required = openai_chat(
        http, sim, {"messages": user("hi"), "tools": tools, "tool_choice": "required"}
    ).json()
    assert required["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "lookup"
    named = {"type": "function", "function": {"name": "get_weather"}}
    forced = openai_chat(
        http, sim, {"messages": user("hi"), "tools": tools, "tool_choice": named}
    ).json()
    assert forced["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"

    # After the tool's result, the model answers in text.
    conversation = [
        *user("use get_weather"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temp": 21}'},
    ]
    answer = openai_chat(http, sim, {"messages": conversation, "tools": tools}).json()
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["choices"][0]["message"]["content"]

    # Streamed: the id and name first, then the arguments in pieces.
    streamed = openai_chat(
        http, sim, {"messages": user("use get_weather for Paris"), "tools": tools, "stream": True}
    )
    chunks = [json.loads(p) for p in sse_data(streamed.text)[:-1]]
    first = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first["id"] == call["id"] and first["function"]["name"] == "get_weather"
    pieces = [
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        for c in chunks[1:]
        if c["choices"][0]["delta"].get("tool_calls")
    ]
    assert len(pieces) > 1
    assert json.loads("".join(pieces)) == arguments
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_openai_json_schema_and_json_object(sim, http):
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA, "strict": True},
    }
    data = openai_chat(http, sim, {"messages": user("hi"), "response_format": response_format})
    content = data.json()["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(content), WEATHER_SCHEMA)
    mode = openai_chat(
        http, sim, {"messages": user("hi"), "response_format": {"type": "json_object"}}
    ).json()
    assert isinstance(json.loads(mode["choices"][0]["message"]["content"]), dict)


def test_json_schema_generator_handles_refs_unions_and_formats(sim, http):
    schema = {
        "$defs": {"item": {"type": "object", "properties": {"n": {"type": "integer"}}}},
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 2},
            "when": {"type": "string", "format": "date-time"},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "number", "exclusiveMinimum": 5}]},
            "code": {"type": "string", "minLength": 10},
            "kind": {"const": "fixed"},
        },
        "required": ["items", "when", "maybe", "code", "kind"],
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    data = openai_chat(http, sim, {"messages": user("hi"), "response_format": response_format})
    value = json.loads(data.json()["choices"][0]["message"]["content"])
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
    assert len(value["items"]) == 2 and value["kind"] == "fixed"


def test_openai_reasoning_tokens(sim, http):
    for effort, tokens in (("low", 16), ("medium", 64), ("high", 256)):
        data = openai_chat(http, sim, {"messages": user("think"), "reasoning_effort": effort})
        usage = data.json()["usage"]
        assert usage["completion_tokens_details"]["reasoning_tokens"] == tokens
        assert usage["completion_tokens"] == tokens + 16  # reasoning is part of completion
    # Reasoning counts against max tokens, as at OpenAI: little room leaves a short answer.
    tight = openai_chat(
        http, sim, {"messages": user("think"), "reasoning_effort": "medium", "max_tokens": 70}
    ).json()
    assert tight["usage"]["completion_tokens"] == 70
    assert tight["choices"][0]["finish_reason"] == "length"


def test_openai_cached_tokens_on_repeat(sim, http):
    body = {"messages": [{"role": "system", "content": LONG_PROMPT}, *user("question one")]}
    first = openai_chat(http, sim, body).json()["usage"]
    assert first["prompt_tokens"] == 60 + 4 + 2 + 4
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    second = openai_chat(http, sim, body).json()["usage"]
    assert second["prompt_tokens"] == first["prompt_tokens"]
    assert second["prompt_tokens_details"]["cached_tokens"] == first["prompt_tokens"] // 2
    # Short prompts are never cached; other providers have their own cache.
    openai_chat(http, sim, {"messages": user("short")})
    short = openai_chat(http, sim, {"messages": user("short")}).json()["usage"]
    assert short["prompt_tokens_details"]["cached_tokens"] == 0
    elsewhere = openai_chat(http, sim, body, slug="openrouter").json()["usage"]
    assert elsewhere["prompt_tokens_details"]["cached_tokens"] == 0
    assert sim.stats("openai")["cached_tokens"] == first["prompt_tokens"] // 2


def test_openai_vision_parts_are_counted(sim, http):
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    data = openai_chat(http, sim, {"messages": [{"role": "user", "content": content}]}).json()
    assert data["usage"]["prompt_tokens"] == 3 + 85 * 2 + 4
    bad = [{"type": "image_url", "image_url": {"url": "ftp://nope"}}]
    assert (
        openai_chat(http, sim, {"messages": [{"role": "user", "content": bad}]}).status_code == 400
    )


def test_openai_embeddings_float_and_base64(sim, http):
    url = f"{sim.base_url('openai')}/embeddings"
    body = {"model": "text-embedding-3-small", "input": ["alpha beta", "gamma"]}
    floats = http.post(url, json=body, headers=OPENAI_AUTH).json()
    assert floats["object"] == "list"
    assert floats["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    first, second = (item["embedding"] for item in floats["data"])
    assert len(first) == 1536
    assert math.isclose(math.fsum(x * x for x in first), 1.0, rel_tol=1e-5)
    assert first != second

    encoded = http.post(url, json={**body, "encoding_format": "base64"}, headers=OPENAI_AUTH)
    raw = base64.b64decode(encoded.json()["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == first  # little-endian float32

    short = http.post(url, json={**body, "dimensions": 256}, headers=OPENAI_AUTH).json()
    assert len(short["data"][0]["embedding"]) == 256
    tokens = http.post(url, json={"model": "m", "input": [1, 2, 3]}, headers=OPENAI_AUTH).json()
    assert tokens["usage"]["prompt_tokens"] == 3
    again = http.post(url, json=body, headers=OPENAI_AUTH).json()
    assert again["data"][0]["embedding"] == first
    bad = http.post(url, json={"model": "m", "input": ""}, headers=OPENAI_AUTH)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"


def test_official_openai_sdk_against_the_simulator(sim):
    from openai import OpenAI

    client = OpenAI(base_url=sim.base_url("openai"), api_key="sk-sim", max_retries=0)
    completion = client.chat.completions.create(model="gpt-4.1-mini", messages=user("hi"))
    assert completion.usage.completion_tokens == 16
    stream = client.chat.completions.create(
        model="gpt-4.1-mini",
        messages=user("hi"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == completion.choices[0].message.content
    assert chunks[-1].usage.total_tokens == completion.usage.total_tokens
    # The SDK asks for base64 by default and decodes it itself.
    vectors = client.embeddings.create(model="text-embedding-3-small", input="alpha beta")
    assert len(vectors.data[0].embedding) == 1536
    assert [m.id for m in client.models.list()] == ["gpt-4.1-mini", "text-embedding-3-small"]


def test_openai_auth_is_required(sim, http):
    missing = openai_chat(http, sim, {"messages": user("hi")}, headers={})
    assert missing.status_code == 401
    assert set(missing.json()["error"]) == {"message", "type", "param", "code"}
    empty = openai_chat(http, sim, {"messages": user("hi")}, headers={"Authorization": "Basic abc"})
    assert empty.status_code == 401
    models = http.get(f"{sim.base_url('openai')}/models")
    assert models.status_code == 401
    assert sim.stats("openai")["errors"] == {"auth": 2}


def test_malformed_requests_get_each_wires_error_shape(sim, http):
    url = f"{sim.base_url('openai')}/chat/completions"
    broken = http.post(url, content=b"{nope", headers=OPENAI_AUTH)
    assert broken.status_code == 400 and broken.json()["error"]["type"] == "invalid_request_error"
    no_max = http.post(
        f"{sim.base_url('anthropic', 'anthropic')}/v1/messages",
        json={"model": "c", "messages": user("hi")},
        headers=ANTHROPIC_AUTH,
    )
    assert no_max.status_code == 400
    assert no_max.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in no_max.json()["error"]["message"]
    empty = gemini_call(http, sim, {"contents": []})
    assert empty.status_code == 400 and empty.json()["error"]["status"] == "INVALID_ARGUMENT"


# --- Anthropic wire ---


def test_anthropic_message_shape_and_usage(sim, http):
    data = anthropic_messages(http, sim, {"system": "be brief", "messages": user("hello there")})
    assert data.status_code == 200
    message = data.json()
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["id"].startswith("msg_")
    (block,) = message["content"]
    assert block["type"] == "text" and len(block["text"].split()) == 16
    assert message["stop_reason"] == "end_turn" and message["stop_sequence"] is None
    usage = message["usage"]
    assert usage["input_tokens"] == (2 + 4) + (2 + 4)  # system + message
    assert usage["output_tokens"] == 16
    assert usage["cache_read_input_tokens"] == 0

    short = anthropic_messages(http, sim, {"messages": user("hi"), "max_tokens": 3}).json()
    assert short["stop_reason"] == "max_tokens" and short["usage"]["output_tokens"] == 3
    full = anthropic_messages(http, sim, {"messages": user("stop")}).json()["content"][0]["text"]
    word = full.split()[1]
    stopped = anthropic_messages(
        http, sim, {"messages": user("stop"), "stop_sequences": [word]}
    ).json()
    assert stopped["stop_reason"] == "stop_sequence" and stopped["stop_sequence"] == word


def test_anthropic_stream_events_and_cumulative_usage(sim, http):
    body = {"messages": user("hello there"), "max_tokens": 6}
    plain = anthropic_messages(http, sim, body).json()
    streamed = anthropic_messages(http, sim, {**body, "stream": True})
    events = anthropic_events(streamed.text)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert "ping" in names
    assert all(name == data["type"] for name, data in events)
    start = events[0][1]["message"]
    assert start["usage"]["input_tokens"] == plain["usage"]["input_tokens"]
    deltas = [d["delta"]["text"] for n, d in events if n == "content_block_delta"]
    assert "".join(deltas) == plain["content"][0]["text"]
    message_delta = events[-2][1]
    assert message_delta["delta"]["stop_reason"] == "max_tokens"
    # Cumulative: the final count, to be taken once (not added to message_start's 1).
    assert message_delta["usage"]["output_tokens"] == plain["usage"]["output_tokens"] == 6


def test_anthropic_thinking(sim, http):
    body = {
        "messages": user("think hard"),
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    message = anthropic_messages(http, sim, body).json()
    thinking, text = message["content"]
    assert thinking["type"] == "thinking" and thinking["signature"]
    assert len(thinking["thinking"].split()) == 256  # min(budget, 256)
    assert text["type"] == "text"
    assert message["usage"]["output_tokens"] == 256 + 16  # thinking is billed as output

    events = anthropic_events(anthropic_messages(http, sim, {**body, "stream": True}).text)
    kinds = [d["delta"]["type"] for n, d in events if n == "content_block_delta"]
    assert kinds.count("thinking_delta") == 256 and kinds.count("signature_delta") == 1
    assert kinds.index("signature_delta") < kinds.index("text_delta")
    assert events[-2][1]["usage"]["output_tokens"] == 272

    too_small = {**body, "thinking": {"type": "enabled", "budget_tokens": 100}}
    assert anthropic_messages(http, sim, too_small).status_code == 400
    over = {**body, "max_tokens": 1024}
    assert anthropic_messages(http, sim, over).status_code == 400


def test_anthropic_tool_use(sim, http):
    tools = [{"name": "get_weather", "description": "d", "input_schema": WEATHER_SCHEMA}]
    message = anthropic_messages(
        http, sim, {"messages": user("call get_weather"), "tools": tools}
    ).json()
    assert message["stop_reason"] == "tool_use"
    (block,) = message["content"]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_")
    assert block["name"] == "get_weather"
    jsonschema.validate(block["input"], WEATHER_SCHEMA)  # an object, not a string

    forced = anthropic_messages(
        http,
        sim,
        {"messages": user("hi"), "tools": tools, "tool_choice": {"type": "any"}},
    ).json()
    assert forced["content"][0]["type"] == "tool_use"
    result = [
        *user("call get_weather"),
        {"role": "assistant", "content": [block]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": "21C"}],
        },
    ]
    after = anthropic_messages(http, sim, {"messages": result, "tools": tools}).json()
    assert after["stop_reason"] == "end_turn" and after["content"][0]["type"] == "text"

    events = anthropic_events(
        anthropic_messages(
            http, sim, {"messages": user("call get_weather"), "tools": tools, "stream": True}
        ).text
    )
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert starts == [{"type": "tool_use", "id": block["id"], "name": "get_weather", "input": {}}]
    partial = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
    assert json.loads("".join(partial)) == block["input"]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_cache_reads_are_excluded_from_input_tokens(sim, http):
    body = {"system": LONG_PROMPT, "messages": user("question")}
    first = anthropic_messages(http, sim, body).json()["usage"]
    second = anthropic_messages(http, sim, body).json()["usage"]
    total = first["input_tokens"]
    assert second["cache_read_input_tokens"] == total // 2
    assert second["input_tokens"] + second["cache_read_input_tokens"] == total
    events = anthropic_events(anthropic_messages(http, sim, {**body, "stream": True}).text)
    assert events[0][1]["message"]["usage"]["cache_read_input_tokens"] == total // 2


def test_anthropic_cache_control_writes_then_reads_the_prefix_by_ttl(sim, http):
    """As Anthropic reports it: the first prompt with cache_control breakpoints writes the
    prefix up to the last one (each segment with its breakpoint's TTL), the next reads it."""
    system = [
        {"type": "text", "text": LONG_PROMPT, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": LONG_PROMPT, "cache_control": {"type": "ephemeral"}},
    ]
    body = {"system": system, "messages": user("question")}
    first = anthropic_messages(http, sim, body).json()["usage"]
    words = len(LONG_PROMPT.split())
    assert first["cache_creation"] == {
        "ephemeral_1h_input_tokens": 4 + words,  # the system turn's overhead, then the text
        "ephemeral_5m_input_tokens": words,
    }
    written = first["cache_creation_input_tokens"]
    assert written == 4 + 2 * words and first["cache_read_input_tokens"] == 0
    assert first["input_tokens"] == 4 + 1  # the user turn after the last breakpoint
    events = anthropic_events(anthropic_messages(http, sim, {**body, "stream": True}).text)
    for usage in (events[0][1]["message"]["usage"], events[-2][1]["usage"]):
        assert usage["cache_read_input_tokens"] == written
        assert usage["cache_creation_input_tokens"] == 0
        assert usage["input_tokens"] == first["input_tokens"]


def test_anthropic_images_and_auth(sim, http):
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    url_image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    content = [image, url_image, {"type": "text", "text": "describe"}]
    message = anthropic_messages(http, sim, {"messages": [{"role": "user", "content": content}]})
    assert message.json()["usage"]["input_tokens"] == 85 * 2 + 1 + 4
    gif = {**image, "source": {**image["source"], "media_type": "image/tiff"}}
    bad = anthropic_messages(http, sim, {"messages": [{"role": "user", "content": [gif]}]})
    assert bad.status_code == 400

    no_key = anthropic_messages(
        http, sim, {"messages": user("hi")}, headers={"anthropic-version": "2023-06-01"}
    )
    assert no_key.status_code == 401
    assert no_key.json()["type"] == "error"
    assert no_key.json()["error"]["type"] == "authentication_error"
    no_version = anthropic_messages(http, sim, {"messages": user("hi")}, headers={"x-api-key": "k"})
    assert no_version.status_code == 400
    assert no_version.json()["error"]["type"] == "invalid_request_error"


# --- Gemini wire ---


def test_gemini_generate_content_usage(sim, http):
    body = {
        "systemInstruction": {"parts": [{"text": LONG_PROMPT}]},
        "contents": gemini_user("hello there"),
        "generationConfig": {"thinkingConfig": {"thinkingLevel": "high"}},
    }
    response = gemini_call(http, sim, body)
    assert response.status_code == 200
    data = response.json()
    candidate = data["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    assert candidate["content"]["role"] == "model"
    assert len(candidate["content"]["parts"][0]["text"].split()) == 16
    usage = data["usageMetadata"]
    prompt = (60 + 4) + (2 + 4)
    assert usage["promptTokenCount"] == prompt
    assert usage["candidatesTokenCount"] == 16  # thoughts are NOT in candidates
    assert usage["thoughtsTokenCount"] == 256
    assert usage["totalTokenCount"] == prompt + 16 + 256
    assert "cachedContentTokenCount" not in usage  # zero counts are omitted, as Google does

    again = gemini_call(http, sim, body).json()["usageMetadata"]
    assert again["promptTokenCount"] == prompt  # INCLUDES the cached part
    assert again["cachedContentTokenCount"] == prompt // 2


def test_gemini_stream_sse_has_cumulative_usage(sim, http):
    body = {
        "contents": gemini_user("hello there"),
        "generationConfig": {"maxOutputTokens": 50, "thinkingConfig": {"thinkingBudget": 40}},
    }
    plain = gemini_call(http, sim, body).json()
    assert plain["candidates"][0]["finishReason"] == "MAX_TOKENS"
    streamed = gemini_call(http, sim, body, action="streamGenerateContent", params={"alt": "sse"})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    chunks = gemini_chunks(streamed.text)
    counts = [c["usageMetadata"]["candidatesTokenCount"] for c in chunks]
    assert counts == sorted(counts) and counts[-1] == 10  # cumulative, never summed
    assert chunks[-1]["usageMetadata"] == plain["usageMetadata"]
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    assert chunks[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    text = "".join(
        p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"]
    )
    assert text == plain["candidates"][0]["content"]["parts"][0]["text"]
    # Thinking counts against maxOutputTokens: 40 thoughts leave room for 10 of the 16 words.
    assert plain["usageMetadata"]["thoughtsTokenCount"] == 40
    assert all(c["usageMetadata"]["thoughtsTokenCount"] == 40 for c in chunks)


def test_gemini_stream_without_alt_sse_is_a_json_array(sim, http):
    response = gemini_call(
        http, sim, {"contents": gemini_user("hi")}, action="streamGenerateContent"
    )
    assert response.headers["content-type"].startswith("application/json")
    chunks = json.loads(response.text)
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 16


def test_gemini_include_thoughts(sim, http):
    body = {
        "contents": gemini_user("think"),
        "generationConfig": {"thinkingConfig": {"thinkingLevel": "low", "includeThoughts": True}},
    }
    parts = gemini_call(http, sim, body).json()["candidates"][0]["content"]["parts"]
    assert parts[0]["thought"] is True and len(parts[0]["text"].split()) == 16
    assert "thought" not in parts[1]


def test_gemini_function_call_and_json_output(sim, http):
    declaration = {
        "name": "get_weather",
        "parameters": {
            "type": "OBJECT",
            "properties": {
                "city": {"type": "STRING"},
                "unit": {"type": "STRING", "format": "enum", "enum": ["C", "F"]},
            },
            "required": ["city", "unit"],
        },
    }
    body = {"contents": gemini_user("hello"), "tools": [{"functionDeclarations": [declaration]}]}
    plain = gemini_call(http, sim, body).json()
    assert "text" in plain["candidates"][0]["content"]["parts"][0]  # no tool fits "hello"
    forced = gemini_call(
        http, sim, {**body, "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}}
    ).json()
    (part,) = forced["candidates"][0]["content"]["parts"]
    assert part["functionCall"] == {"name": "get_weather", "args": {"city": "Paris", "unit": "C"}}
    assert forced["candidates"][0]["finishReason"] == "STOP"
    streamed = gemini_call(
        http,
        sim,
        {"contents": gemini_user("call get_weather"), "tools": body["tools"]},
        action="streamGenerateContent",
        params={"alt": "sse"},
    )
    calls = [
        p["functionCall"]
        for c in gemini_chunks(streamed.text)
        for p in c["candidates"][0]["content"]["parts"]
        if "functionCall" in p
    ]
    assert calls == [part["functionCall"]]

    json_config = {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {"answer": {"type": "STRING"}, "score": {"type": "NUMBER"}},
            "required": ["answer", "score"],
        },
    }
    data = gemini_call(
        http, sim, {"contents": gemini_user("rate"), "generationConfig": json_config}
    ).json()
    value = json.loads(data["candidates"][0]["content"]["parts"][0]["text"])
    assert set(value) == {"answer", "score"} and isinstance(value["score"], int | float)
    json_schema = {**json_config, "responseJsonSchema": WEATHER_SCHEMA}
    del json_schema["responseSchema"]
    data = gemini_call(
        http, sim, {"contents": gemini_user("rate"), "generationConfig": json_schema}
    ).json()
    jsonschema.validate(
        json.loads(data["candidates"][0]["content"]["parts"][0]["text"]), WEATHER_SCHEMA
    )


def test_gemini_vision_auth_and_vertex(sim, http):
    parts = [
        {"text": "what is it"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"file_data": {"mime_type": "image/png", "file_uri": "gs://bucket/a.png"}},
    ]
    body = {"contents": [{"role": "user", "parts": parts}]}
    data = gemini_call(http, sim, body).json()
    assert data["usageMetadata"]["promptTokenCount"] == 3 + 85 * 2 + 4

    keyless = gemini_call(http, sim, body, headers={})
    assert keyless.status_code == 403
    assert keyless.json()["error"]["status"] == "PERMISSION_DENIED"
    by_query = gemini_call(http, sim, body, headers={}, params={"key": "AIza-sim"})
    assert by_query.status_code == 200

    vertex = f"{sim.base_url('vertex-ai', 'vertex')}/models/{GEMINI_MODEL}:generateContent"
    assert http.post(vertex, json=body, headers={"Authorization": "Bearer ya29"}).status_code == 200
    denied = http.post(vertex, json=body, headers=GEMINI_AUTH)
    assert denied.status_code == 401 and denied.json()["error"]["status"] == "UNAUTHENTICATED"
    unknown = gemini_call(http, sim, body, action="countTokenz")
    assert unknown.status_code == 404


def test_gemini_embeddings(sim, http):
    base = f"{sim.base_url('google-ai-studio', 'gemini')}/models/gemini-embedding-001"
    one = http.post(
        f"{base}:embedContent",
        json={"content": {"parts": [{"text": "alpha"}]}, "outputDimensionality": 8},
        headers=GEMINI_AUTH,
    ).json()
    assert len(one["embedding"]["values"]) == 8
    batch = http.post(
        f"{base}:batchEmbedContents",
        json={
            "requests": [
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}}
                for t in ("alpha", "beta")
            ]
        },
        headers=GEMINI_AUTH,
    ).json()
    assert [len(e["values"]) for e in batch["embeddings"]] == [3072, 3072]


# --- Faults ---


@pytest.mark.parametrize(
    ("wire", "status", "kind_field", "kind"),
    [
        ("openai", 429, ("error", "code"), "rate_limit_exceeded"),
        ("anthropic", 429, ("error", "type"), "rate_limit_error"),
        ("gemini", 429, ("error", "status"), "RESOURCE_EXHAUSTED"),
    ],
)
def test_fault_429_with_retry_after(sim, http, wire, status, kind_field, kind):
    sim.set("flaky", error_rate=1, error_kind="429", retry_after=7)
    if wire == "openai":
        response = openai_chat(http, sim, {"messages": user("hi")}, slug="flaky")
    elif wire == "anthropic":
        response = anthropic_messages(http, sim, {"messages": user("hi")}, slug="flaky")
    else:
        response = gemini_call(http, sim, {"contents": gemini_user("hi")}, slug="flaky")
    assert response.status_code == status
    assert response.headers["retry-after"] == "7"
    outer, inner = kind_field
    assert response.json()[outer][inner] == kind
    assert sim.stats("flaky")["errors"] == {"429": 1}


def test_fault_500_and_503(sim, http):
    sim.set("openai", error_rate=1, error_kind="500")
    failed = openai_chat(http, sim, {"messages": user("hi")})
    assert failed.status_code == 500 and failed.json()["error"]["type"] == "server_error"
    sim.set("openai", error_kind="503")
    assert openai_chat(http, sim, {"messages": user("hi")}).status_code == 503
    sim.set("anthropic", error_rate=1, error_kind="503")
    overloaded = anthropic_messages(http, sim, {"messages": user("hi")})
    assert overloaded.status_code == 529
    assert overloaded.json()["error"]["type"] == "overloaded_error"
    sim.set("google-ai-studio", error_rate=1, error_kind="503")
    unavailable = gemini_call(http, sim, {"contents": gemini_user("hi")})
    assert unavailable.status_code == 503 and unavailable.json()["error"]["status"] == "UNAVAILABLE"
    assert sim.stats("openai")["errors"] == {"500": 1, "503": 1}


def test_fault_stall_holds_until_the_client_gives_up(sim):
    sim.set("openai", error_rate=1, error_kind="stall")
    with httpx.Client(timeout=httpx.Timeout(5, read=0.3)) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            openai_chat(client, sim, {"messages": user("hi")})
        assert time.monotonic() - started >= 0.3
    assert sim.stats("openai")["errors"] == {"stall": 1}


def test_fault_reset_drops_the_connection(sim, http):
    sim.set("anthropic", error_rate=1, error_kind="reset")
    with pytest.raises(httpx.TransportError):
        anthropic_messages(http, sim, {"messages": user("hi")})
    sim.set("openai", error_rate=1, error_kind="reset")
    with pytest.raises(httpx.TransportError):
        http.post(
            f"{sim.base_url('openai')}/embeddings",
            json={"model": "m", "input": "x"},
            headers=OPENAI_AUTH,
        )


def test_fault_cut_streams_stop_without_their_end_marker(sim, http):
    for slug in ("openai", "anthropic", "google-ai-studio"):
        sim.set(slug, error_rate=1, error_kind="cut", cut_after_tokens=4)

    openai_stream = openai_chat(
        http,
        sim,
        {"messages": user("hi"), "stream": True, "stream_options": {"include_usage": True}},
    )
    payloads = sse_data(openai_stream.text)
    assert "[DONE]" not in payloads
    chunks = [json.loads(p) for p in payloads]
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")) == 4
    assert all(c["choices"] and c["choices"][0]["finish_reason"] is None for c in chunks)

    events = anthropic_events(
        anthropic_messages(http, sim, {"messages": user("hi"), "stream": True}).text
    )
    names = [name for name, _ in events]
    assert names.count("content_block_delta") == 4
    assert "message_delta" not in names and "message_stop" not in names

    streamed = gemini_call(
        http,
        sim,
        {"contents": gemini_user("hi")},
        action="streamGenerateContent",
        params={"alt": "sse"},
    )
    gemini = gemini_chunks(streamed.text)
    assert len(gemini) == 4
    assert all("finishReason" not in c["candidates"][0] for c in gemini)

    # Even an answer without a visible token (all of max_tokens spent thinking) is cut.
    thinking_only = openai_chat(
        http,
        sim,
        {"messages": user("hi"), "stream": True, "reasoning_effort": "high", "max_tokens": 8},
    )
    assert "[DONE]" not in sse_data(thinking_only.text)

    # Not streamed: the body stops halfway through its declared length.
    with pytest.raises(httpx.RemoteProtocolError):
        openai_chat(http, sim, {"messages": user("hi")})
    assert sim.stats("openai")["errors"] == {"cut": 3}
    assert sim.stats("openai")["ok"] == 0


def test_fault_stall_mid_sends_part_of_the_answer_then_goes_silent(sim):
    """The connection stays open and nothing more comes: the client's read times out."""
    sim.set("openai", error_rate=1, error_kind="stall_mid", cut_after_tokens=3)
    received = b""
    with httpx.Client(timeout=httpx.Timeout(5, read=0.5)) as client:
        with pytest.raises(httpx.ReadTimeout):  # noqa: PT012 - what came before the timeout
            with client.stream(
                "POST",
                f"{sim.base_url('openai')}/chat/completions",
                json={"model": "gpt-4.1-mini", "messages": user("hi"), "stream": True},
                headers=OPENAI_AUTH,
            ) as response:
                assert response.status_code == 200
                for data in response.iter_bytes():
                    received += data
        chunks = [json.loads(p) for p in sse_data(received.decode())]
        assert sum(1 for c in chunks if c["choices"][0]["delta"].get("content")) == 3
        assert "[DONE]" not in sse_data(received.decode())
        # Not streamed: the headers and half the body, then silence.
        with pytest.raises(httpx.ReadTimeout):
            openai_chat(client, sim, {"messages": user("hi")})
    assert sim.stats("openai")["errors"] == {"stall_mid": 2}
    assert sim.stats("openai")["ok"] == 0


@pytest.mark.parametrize(
    ("rate", "failing"),
    [(1, list(range(1, 9))), (0.5, [2, 4, 6, 8]), (0.25, [4, 8]), (0.3, [4, 7]), (0, [])],
)
def test_error_rate_is_deterministic(sim, http, rate, failing):
    sim.set("openai", error_rate=rate, error_kind="500")
    statuses = [openai_chat(http, sim, {"messages": user("hi")}).status_code for _ in range(8)]
    assert [n for n, status in enumerate(statuses, 1) if status == 500] == failing
    stats = sim.stats("openai")
    assert stats["requests"] == 8
    assert stats["errors"].get("500", 0) == len(failing)
    assert stats["ok"] == 8 - len(failing)


def test_latency_and_tokens_per_second_are_lower_bounds(sim, http):
    sim.set("openai", latency_ms=100, tokens_per_second=200)
    started = time.monotonic()
    with http.stream(
        "POST",
        f"{sim.base_url('openai')}/chat/completions",
        json={"model": "m", "messages": user("hi"), "stream": True, "max_tokens": 10},
        headers=OPENAI_AUTH,
    ) as response:
        received = response.iter_bytes()
        first = next(received)
        first_byte = time.monotonic() - started
        rest = b"".join(received)
    elapsed = time.monotonic() - started
    assert first.startswith(b"data: ")
    assert first_byte >= 0.1  # latency before the first byte
    assert elapsed >= 0.1 + 10 / 200  # then 10 tokens at 200/s
    assert rest.endswith(b"data: [DONE]\n\n")

    started = time.monotonic()
    openai_chat(http, sim, {"messages": user("hi"), "max_tokens": 10})
    assert time.monotonic() - started >= 0.1 + 10 / 200  # non-streamed waits for all of it


# --- Control API ---


def test_control_api_profiles_counters_and_reset(sim, http):
    auth = sim.control_headers
    listed = http.get(f"{sim.url}/_sim/providers", headers=auth).json()["providers"]
    by_slug = {p["slug"]: p for p in listed}
    assert by_slug["anthropic"]["wire"] == "anthropic"
    assert by_slug["google-ai-studio"]["wire"] == "gemini"
    assert by_slug["openai"]["latency_ms"] == 0  # the test session runs everything at 0 ms
    assert http.get(f"{sim.url}/_sim/health").json() == {"status": "ok"}

    updated = http.put(
        f"{sim.url}/_sim/providers/openai", json={"latency_ms": 5}, headers=auth
    ).json()
    assert updated["latency_ms"] == 5 and updated["error_rate"] == 0
    for bad in ({"error_kind": "explode"}, {"error_rate": 2}, {"colour": "red"}, [1]):
        refused = http.patch(f"{sim.url}/_sim/providers/openai", json=bad, headers=auth)
        assert refused.status_code == 400 and refused.json()["error"]

    openai_chat(http, sim, {"messages": user("hi"), "stream": True})
    openai_chat(http, sim, {"messages": user("hi")}, slug="made-up-provider")
    stats = http.get(f"{sim.url}/_sim/stats", headers=auth).json()
    assert stats["openai"]["requests"] == 1 and stats["openai"]["streamed"] == 1
    assert stats["openai"]["completion_tokens"] == 16
    assert stats["made-up-provider"]["ok"] == 1  # any slug works, with a 0 ms profile

    assert http.post(f"{sim.url}/_sim/reset", headers=auth).status_code == 200
    after = http.get(f"{sim.url}/_sim/providers/openai", headers=auth).json()
    assert after["latency_ms"] == 0 and after["stats"]["requests"] == 0
    assert "made-up-provider" not in http.get(f"{sim.url}/_sim/stats", headers=auth).json()


def test_catalog_defaults_when_not_overridden():
    from routing.simulator.state import Registry

    registry = Registry()
    assert registry.get("anthropic").profile.latency_ms == 600
    assert registry.get("anthropic").profile.tokens_per_second == 65
    assert registry.get("unknown").profile.latency_ms == 0
    fast = Registry({"*": {"latency_ms": 0}, "openai": {"error_rate": 0.5}})
    assert fast.get("anthropic").profile.latency_ms == 0
    assert fast.get("anthropic").profile.tokens_per_second == 65
    assert fast.get("openai").profile.error_rate == 0.5


# --- Management commands ---


def test_simulator_command_set_show_reset(sim):
    out = io.StringIO()
    call_command(
        "simulator", "set", "openai", "--latency-ms", "7", "--error-rate", "0.5",
        "--error-kind", "429", "--retry-after", "2", stdout=out,
    )  # fmt: skip
    shown = json.loads(out.getvalue())
    assert shown["latency_ms"] == 7 and shown["error_kind"] == "429"
    assert sim.get("openai")["retry_after"] == 2

    out = io.StringIO()
    call_command("simulator", "show", "openai", stdout=out)
    assert json.loads(out.getvalue())["error_rate"] == 0.5
    out = io.StringIO()
    call_command("simulator", "show", stdout=out)
    assert {p["slug"] for p in json.loads(out.getvalue())["providers"]} >= {"openai", "anthropic"}

    call_command("simulator", "reset", stdout=io.StringIO())
    assert sim.get("openai")["latency_ms"] == 0

    with pytest.raises(CommandError, match="Nothing to set"):
        call_command("simulator", "set", "openai", stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("simulator", "set", "openai", "--error-kind", "boom")


def test_simulator_command_says_when_the_simulator_is_not_running(settings):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.SIMULATOR_URL = f"http://127.0.0.1:{port}"
    with pytest.raises(CommandError, match="run_simulator"):
        call_command("simulator", "show", stdout=io.StringIO())


def test_run_simulator_serves_the_same_answers_in_its_own_process(sim, http):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_simulator", "--port", str(port), "--latency-ms", "0"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "LLMAPI_SIMULATOR_CONTROL_TOKEN": "token-of-this-test",
        },
    )
    try:
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        control = f"http://127.0.0.1:{port}/_sim/providers/openai"
        assert http.patch(control, json={"error_rate": 1}).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert http.patch(control, json={"error_rate": 1}, headers=wrong).status_code == 401
        right = {"Authorization": "Bearer token-of-this-test"}
        assert http.get(control, headers=right).json()["error_rate"] == 0
        body = {"model": "m", "messages": user("same everywhere")}
        there = http.post(
            f"http://127.0.0.1:{port}/openai/v1/chat/completions", json=body, headers=OPENAI_AUTH
        ).json()
        here = openai_chat(http, sim, body).json()
        assert there["choices"][0]["message"]["content"] == here["choices"][0]["message"]["content"]
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()


def test_scripted_replies_answer_in_order_then_generation_resumes(sim, http):
    out = io.StringIO()
    call_command("simulator", "script", "openai", '{"a": 1}', "second answer", stdout=out)
    assert json.loads(out.getvalue())["scripted_replies"] == 2
    first = openai_chat(http, sim, {"messages": user("hello there")}).json()
    assert first["choices"][0]["message"]["content"] == '{"a": 1}'
    second = openai_chat(http, sim, {"messages": user("hello there")}).json()
    assert second["choices"][0]["message"]["content"] == "second answer"
    assert second["usage"]["completion_tokens"] > 0
    third = openai_chat(http, sim, {"messages": user("hello there")}).json()
    assert len(third["choices"][0]["message"]["content"].split()) == 16
    sim.script("openai", "left over")
    sim.reset()
    assert sim.get("openai")["scripted_replies"] == 0
    bad = http.post(
        f"{sim.url}/_sim/providers/openai/replies",
        json={"replies": "x"},
        headers=sim.control_headers,
    )
    assert bad.status_code == 400


# --- The control API's token and the bind address ---


def test_control_calls_without_the_token_are_refused(sim, http):
    base = f"{sim.url}/_sim"
    calls = [
        ("GET", "/providers", None),
        ("GET", "/providers/openai", None),
        ("PUT", "/providers/openai", {"error_rate": 1}),
        ("PATCH", "/providers/openai", {"error_rate": 1, "error_kind": "500"}),
        ("POST", "/providers/openai/replies", {"replies": ["owned"]}),
        ("GET", "/providers/openai/last_request", None),
        ("POST", "/reset", None),
        ("GET", "/stats", None),
    ]
    for method, path, body in calls:
        for headers in ({}, {"Authorization": "Bearer guessed"}, {"Authorization": "guessed"}):
            refused = http.request(method, base + path, json=body, headers=headers)
            assert refused.status_code == 401, (method, path, headers)
            assert "token" in refused.json()["error"]
    # Nothing changed: the provider still answers.
    assert sim.get("openai")["error_rate"] == 0
    assert sim.get("openai")["scripted_replies"] == 0
    assert openai_chat(http, sim, {"messages": user("hi")}).status_code == 200
    # The readiness probe stays open.
    assert http.get(f"{base}/health").status_code == 200


def test_a_simulator_started_without_a_token_has_its_control_api_off(http):
    with SimulatorServer(control_token="") as bare:
        refused = http.patch(
            f"{bare.url}/_sim/providers/openai",
            json={"error_rate": 1},
            headers={"Authorization": "Bearer anything"},
        )
        assert refused.status_code == 403
        assert "LLMAPI_SIMULATOR_CONTROL_TOKEN" in refused.json()["error"]


def test_run_simulator_binds_to_loopback_unless_public(settings):
    with pytest.raises(CommandError, match="--public"):
        call_command("run_simulator", "--host", "0.0.0.0", "--port", "1")  # noqa: S104
    with pytest.raises(CommandError, match="--public"):
        call_command("run_simulator", "--host", "192.0.2.10", "--port", "1")
