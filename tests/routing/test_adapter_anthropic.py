"""The Anthropic Messages adapter against recorded Anthropic wire payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from routing.providers.anthropic import AnthropicAdapter
from routing.providers.base import ErrorKind, StreamDecoder, Target, UpstreamError, Usage

FIXTURES = Path(__file__).parent / "fixtures"
TARGET = Target(
    "anthropic",
    "anthropic",
    "https://api.anthropic.com",
    "sk-ant-test",
    "claude-3-5-haiku-20241022",
    auth="x-api-key",
)
adapter = AnthropicAdapter()


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode(decoder: StreamDecoder, body: bytes, size: int = 7) -> list[dict]:
    chunks = []
    for start in range(0, len(body), size):
        chunks += decoder.feed(body[start : start + size])
    return chunks + decoder.finish()


def assemble(chunks: list[dict]) -> dict:
    """Accumulate chunks the way the OpenAI SDK does."""
    content = reasoning = None
    calls: dict[int, dict] = {}
    finish = None
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        (choice,) = chunk["choices"]
        assert choice["index"] == 0 and "finish_reason" in choice
        delta = choice["delta"]
        if delta.get("content"):
            content = (content or "") + delta["content"]
        if delta.get("reasoning"):
            reasoning = (reasoning or "") + delta["reasoning"]
        for call in delta.get("tool_calls") or ():
            slot = calls.setdefault(call["index"], {"id": None, "name": None, "arguments": ""})
            slot["id"] = call.get("id") or slot["id"]
            slot["name"] = call.get("function", {}).get("name") or slot["name"]
            slot["arguments"] += call.get("function", {}).get("arguments") or ""
        finish = choice["finish_reason"] or finish
    return {
        "content": content,
        "reasoning": reasoning,
        "tool_calls": [calls[i] for i in sorted(calls)],
        "finish_reason": finish,
    }


def user(content: Any) -> dict:
    return {"role": "user", "content": content}


def request_json(body: dict, *, stream: bool = False) -> dict:
    return adapter.chat_request(TARGET, body, stream=stream).json


# --- requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "stream"),
    [("tools_conversation", False), ("json_schema", False), ("reasoning_stream", True)],
)
def test_chat_request_matches_the_recorded_anthropic_request(case, stream):
    body = load(f"client/{case}.json")
    # As the gateway sends it: with the output cap it held (the thinking budget included).
    if "max_tokens" in body:
        body["max_tokens"] = adapter.output_cap(
            body, requested=body["max_tokens"], endpoint_max=64_000
        )
    request = adapter.chat_request(TARGET, body, stream=stream)
    expected = load(f"anthropic/{case}.request.json")
    assert request.method == expected["method"]
    assert request.url == expected["url"]
    assert request.headers == expected["headers"]
    assert request.json == expected["json"]


def test_max_tokens_defaults_to_4096():
    assert request_json({"messages": [user("hi")]})["max_tokens"] == 4096
    assert request_json({"messages": [user("hi")], "max_tokens": 77})["max_tokens"] == 77


def test_consecutive_same_role_messages_are_merged():
    body = {
        "messages": [
            user("first"),
            user([{"type": "text", "text": "second"}]),
            {"role": "assistant", "content": "a"},
            {"role": "assistant", "content": "b"},
        ]
    }
    assert request_json(body)["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
    ]


def test_cache_control_on_system_parts_keeps_system_as_blocks():
    body = {
        "messages": [
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}
                ],
            },
            user("hi"),
        ]
    }
    assert request_json(body)["system"] == [
        {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"type": "tool", "name": "get_time"},
        ),
    ],
)
def test_tool_choice_translates(choice, expected):
    body = load("client/tools_conversation.json") | {"tool_choice": choice}
    assert request_json(body)["tool_choice"] == expected


def test_parallel_tool_calls_false_disables_parallel_tool_use():
    body = load("client/tools_conversation.json") | {"parallel_tool_calls": False}
    assert request_json(body)["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_json_schema_beside_client_tools_lets_the_model_pick_any_tool():
    body = load("client/tools_conversation.json") | {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}},
        }
    }
    payload = request_json(body)
    assert [tool["name"] for tool in payload["tools"]] == ["get_weather", "get_time", "json_output"]
    assert payload["tool_choice"] == {"type": "any"}


def test_json_object_is_emulated_with_an_open_object_schema():
    payload = request_json({"messages": [user("hi")], "response_format": {"type": "json_object"}})
    assert payload["tools"][0]["name"] == "json_output"
    assert payload["tools"][0]["input_schema"] == {"type": "object"}
    assert payload["tool_choice"] == {"type": "tool", "name": "json_output"}


@pytest.mark.parametrize(("effort", "budget"), [("low", 1024), ("medium", 4096), ("high", 16384)])
def test_reasoning_effort_becomes_a_thinking_budget_below_max_tokens(effort, budget):
    payload = request_json(
        {"messages": [user("hi")], "reasoning_effort": effort, "max_tokens": 30000}
    )
    assert payload["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert payload["max_tokens"] == 30000
    # The gateway holds and sends budget + the answer's room (output_cap); a cap at or below
    # the budget is never raised (it is what was held): the budget shrinks under it instead.
    body = {"messages": [user("hi")], "reasoning_effort": effort, "max_tokens": 500}
    cap = adapter.output_cap(body, requested=500, endpoint_max=64_000)
    assert cap == budget + 500
    sent = request_json({**body, "max_tokens": cap})
    assert sent["max_tokens"] == cap > sent["thinking"]["budget_tokens"] == budget
    small = request_json({**body, "max_tokens": 3000})
    assert small["max_tokens"] == 3000
    assert small["thinking"]["budget_tokens"] == (1500 if budget >= 3000 else budget)
    tiny = request_json({**body, "max_tokens": 500})
    assert tiny["max_tokens"] == 500 and "thinking" not in tiny


def test_thinking_drops_sampling_anthropic_rejects_with_it():
    payload = request_json(
        {"messages": [user("hi")], "reasoning_effort": "low", "temperature": 0.3, "top_p": 0.5}
    )
    assert "temperature" not in payload and "top_p" not in payload
    plain = request_json({"messages": [user("hi")], "temperature": 1.7, "top_p": 0.5})
    assert plain["temperature"] == 1.0  # Anthropic's range ends at 1
    assert plain["top_p"] == 0.5


def test_thinking_stays_off_where_anthropic_forbids_it():
    forced = load("client/tools_conversation.json") | {
        "reasoning_effort": "high",
        "tool_choice": "required",
        "messages": [user("hi")],
    }
    assert "thinking" not in request_json(forced)
    # Mid tool loop: Anthropic wants the earlier turn's signed thinking blocks back.
    loop = load("client/tools_conversation.json") | {"reasoning_effort": "high"}
    del loop["messages"][-1]
    assert "thinking" not in request_json(loop)


def test_tool_result_with_an_image_keeps_blocks():
    body = {
        "messages": [
            user("look"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "shot", "arguments": ""},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "toolu_1",
                "content": [
                    {"type": "text", "text": "screenshot:"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                ],
            },
        ]
    }
    messages = request_json(body)["messages"]
    assert messages[1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {}}
    ]
    assert messages[2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": [
                {"type": "text", "text": "screenshot:"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
            ],
        }
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [user("hi")], "n": 2},
        {
            "messages": [
                user([{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}])
            ]
        },
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{nope"}}],
                }
            ]
        },
    ],
)
def test_untranslatable_requests_are_bad_requests(body):
    with pytest.raises(UpstreamError) as err:
        adapter.chat_request(TARGET, body, stream=False)
    assert err.value.kind is ErrorKind.BAD_REQUEST


# --- responses -----------------------------------------------------------------------------


def test_text_response_and_usage_with_cache_reads():
    result, usage = adapter.chat_response(TARGET, load("anthropic/text.response.json"))
    assert result == {
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                "finish_reason": "stop",
            }
        ],
    }
    # prompt = input + cache reads + cache writes; cached = cache reads
    assert usage == Usage(prompt_tokens=2060, completion_tokens=12, cached_tokens=2048)


def test_tool_use_response_becomes_tool_calls():
    result, usage = adapter.chat_response(TARGET, load("anthropic/tool_use.response.json"))
    (choice,) = result["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check the current weather in Paris for you."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_01A09q90qw90lq917835lq9",
            "type": "function",
            "function": {
                "name": "get_weather",
                "arguments": '{"location":"Paris, France","unit":"celsius"}',
            },
        }
    ]
    # The 1500 tokens written to the cache (no TTL breakdown: 5-minute writes) are their own
    # kind: billed at the cache-write price, not the input price.
    assert usage == Usage(
        prompt_tokens=1850, completion_tokens=89, cached_tokens=0, cache_write_tokens=1500
    )


def test_json_output_tool_comes_back_as_content():
    result, _ = adapter.chat_response(TARGET, load("anthropic/json_output.response.json"))
    (choice,) = result["choices"]
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    assert json.loads(choice["message"]["content"]) == {"name": "Ada Lovelace", "born": 1815}


def test_thinking_is_kept_out_of_content():
    result, usage = adapter.chat_response(TARGET, load("anthropic/thinking.response.json"))
    message = result["choices"][0]["message"]
    assert message["content"] == "27 × 453 = 12,231."
    assert message["reasoning"].endswith("= 12231.")
    assert usage == Usage(prompt_tokens=48, completion_tokens=142)


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons_map_to_finish_reasons(stop_reason, finish):
    data = load("anthropic/text.response.json") | {"stop_reason": stop_reason}
    assert adapter.chat_response(TARGET, data)[0]["choices"][0]["finish_reason"] == finish


# --- streams -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["text", "tool_use", "json_output", "thinking"])
def test_stream_decodes_to_the_same_answer_and_usage_as_the_non_streamed_one(name):
    decoder = adapter.stream_decoder(TARGET)
    chunks = decode(decoder, raw(f"anthropic/{name}.stream.sse"))
    full, full_usage = adapter.chat_response(TARGET, load(f"anthropic/{name}.response.json"))
    message = full["choices"][0]["message"]

    streamed = assemble(chunks)
    if name == "json_output":  # streamed JSON keeps Anthropic's spacing
        assert json.loads(streamed["content"]) == json.loads(message["content"])
    else:
        assert streamed["content"] == message["content"]
    assert streamed["reasoning"] == message.get("reasoning")
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in streamed["tool_calls"]] == [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in message.get("tool_calls", [])
    ]
    assert streamed["finish_reason"] == full["choices"][0]["finish_reason"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    # message_delta repeats usage cumulatively: counted once, equal to the non-streamed one.
    assert decoder.usage == full_usage
    assert decoder.done


def test_stream_tool_call_deltas_carry_index_id_and_name_first():
    chunks = decode(adapter.stream_decoder(TARGET), raw("anthropic/tool_use.stream.sse"))
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_01A09q90qw90lq917835lq9",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(call["index"] == 0 and "id" not in call for call in calls[1:])


def test_usage_is_known_from_message_start_when_the_stream_is_cut():
    body = raw("anthropic/text.stream.sse")
    decoder = adapter.stream_decoder(TARGET)
    decode(decoder, body[: body.index(b"event: message_delta")])
    assert decoder.done is False
    assert decoder.usage == Usage(prompt_tokens=2060, completion_tokens=1, cached_tokens=2048)


def test_stream_without_message_stop_is_a_cut():
    body = raw("anthropic/text.stream.sse")
    decoder = adapter.stream_decoder(TARGET)
    decode(decoder, body[: body.index(b"event: message_stop")])
    assert decoder.done is False


def test_in_stream_error_event_raises_after_the_text_before_it():
    decoder = adapter.stream_decoder(TARGET)
    chunks = decoder.feed(raw("anthropic/stream_error.sse"))
    assert assemble(chunks)["content"] == "Once upon a time"
    with pytest.raises(UpstreamError) as err:
        decoder.finish()
    assert err.value.kind is ErrorKind.OVERLOADED
    assert err.value.status == 529
    assert err.value.message == "Overloaded"
    assert decoder.done is False


def test_in_stream_error_event_alone_raises_from_feed():
    body = raw("anthropic/stream_error.sse")
    decoder = adapter.stream_decoder(TARGET)
    start = body.index(b"event: error")
    decoder.feed(body[:start])
    with pytest.raises(UpstreamError):
        decoder.feed(body[start:])


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "kind"),
    [
        (400, "error_prompt_too_long.json", ErrorKind.CONTEXT_LENGTH),
        (400, "error_invalid_request.json", ErrorKind.BAD_REQUEST),
        (400, "error_credit_balance.json", ErrorKind.AUTH),
        (401, "error_authentication.json", ErrorKind.AUTH),
        (403, "error_permission.json", ErrorKind.AUTH),
        (404, "error_not_found.json", ErrorKind.NOT_FOUND),
        (413, "error_request_too_large.json", ErrorKind.BAD_REQUEST),
        (429, "error_rate_limit.json", ErrorKind.RATE_LIMITED),
        (500, "error_api.json", ErrorKind.OVERLOADED),
        (529, "error_overloaded.json", ErrorKind.OVERLOADED),
    ],
)
def test_errors_map_to_one_normalized_kind(status, name, kind):
    error = adapter.error(status, {"request-id": "req_1"}, raw(f"anthropic/{name}"))
    assert error.kind is kind
    assert error.status == status
    assert error.message == load(f"anthropic/{name}")["error"]["message"]


def test_rate_limit_carries_retry_after():
    body = raw("anthropic/error_rate_limit.json")
    error = adapter.error(
        429, {"retry-after": "17", "anthropic-ratelimit-input-tokens-remaining": "0"}, body
    )
    assert error.retry_after == 17.0
    assert error.retryable
    assert adapter.error(429, {}, body).retry_after is None


def test_non_json_error_body_still_maps():
    error = adapter.error(502, {}, b"<html>bad gateway</html>")
    assert error.kind is ErrorKind.OVERLOADED
    assert "bad gateway" in error.message


# --- cache writes --------------------------------------------------------------------------

CACHE_USAGE = {
    "input_tokens": 40,
    "cache_creation_input_tokens": 3000,
    "cache_read_input_tokens": 500,
    "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
    "output_tokens": 7,
}


def test_cache_writes_are_read_by_ttl():
    data = load("anthropic/text.response.json") | {"usage": CACHE_USAGE}
    _, usage = adapter.chat_response(TARGET, data)
    assert usage == Usage(
        prompt_tokens=3540,
        completion_tokens=7,
        cached_tokens=500,
        cache_write_tokens=3000,
        cache_write_1h_tokens=2000,
    )


def test_streamed_cache_writes_are_read_from_message_start_and_kept_through_message_delta():
    start = {**CACHE_USAGE, "output_tokens": 1}
    delta = {k: v for k, v in CACHE_USAGE.items() if k != "cache_creation"}
    body = (
        "event: message_start\ndata: "
        + json.dumps(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": "claude",
                    "usage": start,
                },
            }
        )
        + "\n\nevent: content_block_start\ndata: "
        + json.dumps(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
        )
        + "\n\nevent: content_block_delta\ndata: "
        + json.dumps(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi"},
            }
        )
        + "\n\nevent: message_delta\ndata: "
        + json.dumps(
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": delta}
        )
        + '\n\nevent: message_stop\ndata: {"type": "message_stop"}\n\n'
    ).encode()
    decoder = adapter.stream_decoder(TARGET)
    decode(decoder, body)
    assert decoder.done
    assert decoder.usage == Usage(
        prompt_tokens=3540,
        completion_tokens=7,
        cached_tokens=500,
        cache_write_tokens=3000,
        cache_write_1h_tokens=2000,
    )
