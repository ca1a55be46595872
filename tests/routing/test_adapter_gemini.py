"""The Gemini adapter (AI Studio and Vertex AI) against recorded Gemini wire payloads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from routing.providers.base import ErrorKind, StreamDecoder, Target, UpstreamError, Usage
from routing.providers.gemini import GeminiAdapter

FIXTURES = Path(__file__).parent / "fixtures"
TARGET = Target(
    "google-ai-studio",
    "gemini",
    "https://generativelanguage.googleapis.com/v1beta",
    "AIza-test",
    "gemini-3.1-flash-lite",
    auth="x-goog-api-key",
)
VERTEX = Target(
    "vertex-ai",
    "gemini",
    "https://europe-west4-aiplatform.googleapis.com/v1/projects/acme/locations/europe-west4/publishers/google",
    "ya29.test-token",
    "gemini-3.1-flash-lite",
    auth="bearer",
)
adapter = GeminiAdapter()


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
            slot = calls.setdefault(call["index"], {"arguments": ""})
            for key in ("id", "extra_content"):
                if key in call:
                    slot[key] = call[key]
            slot["name"] = call.get("function", {}).get("name") or slot.get("name")
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


def request_json(body: dict) -> dict:
    return adapter.chat_request(TARGET, body, stream=False).json


# --- requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "stream"),
    [("tools_conversation", False), ("json_schema", False), ("reasoning_stream", True)],
)
def test_chat_request_matches_the_recorded_gemini_request(case, stream):
    request = adapter.chat_request(TARGET, load(f"client/{case}.json"), stream=stream)
    expected = load(f"gemini/{case}.request.json")
    assert request.method == expected["method"]
    assert request.url == expected["url"]
    assert request.headers == expected["headers"]
    assert request.json == expected["json"]


def test_vertex_uses_its_url_and_a_bearer_token():
    request = adapter.chat_request(VERTEX, {"messages": [user("hi")]}, stream=True)
    assert request.url == (
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/acme/locations/europe-west4"
        "/publishers/google/models/gemini-3.1-flash-lite:streamGenerateContent?alt=sse"
    )
    assert request.headers == {
        "content-type": "application/json",
        "authorization": "Bearer ya29.test-token",
    }


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
        ),
    ],
)
def test_tool_choice_translates(choice, config):
    body = load("client/tools_conversation.json") | {"tool_choice": choice}
    assert request_json(body)["toolConfig"] == {"functionCallingConfig": config}


def test_a_returned_thought_signature_goes_back_on_its_call():
    body = load("client/tools_conversation.json")
    calls = body["messages"][3]["tool_calls"]
    calls[0]["extra_content"] = {"google": {"thought_signature": "CiQBjz1rX4Jm8c3q"}}
    parts = request_json(body)["contents"][1]["parts"]
    assert parts[1]["thoughtSignature"] == "CiQBjz1rX4Jm8c3q"
    assert "thoughtSignature" not in parts[2]


def test_tool_result_for_an_unknown_call_is_a_bad_request():
    body = {"messages": [user("hi"), {"role": "tool", "tool_call_id": "call_x", "content": "42"}]}
    with pytest.raises(UpstreamError) as err:
        request_json(body)
    assert err.value.kind is ErrorKind.BAD_REQUEST


def test_json_object_only_sets_the_mime_type():
    config = request_json({"messages": [user("hi")], "response_format": {"type": "json_object"}})[
        "generationConfig"
    ]
    assert config == {"responseMimeType": "application/json"}


@pytest.mark.parametrize(
    ("effort", "level"),
    [
        ("minimal", "minimal"),
        ("low", "low"),
        ("medium", "medium"),
        ("high", "high"),
        ("none", "minimal"),
    ],
)
def test_reasoning_effort_becomes_a_thinking_level(effort, level):
    config = request_json({"messages": [user("hi")], "reasoning_effort": effort})[
        "generationConfig"
    ]
    assert config["thinkingConfig"] == {"thinkingLevel": level}


def test_include_reasoning_asks_for_the_thoughts_text():
    body = {"messages": [user("hi")], "reasoning_effort": "low", "include_reasoning": True}
    config = request_json(body)["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingLevel": "low", "includeThoughts": True}
    # Without an effort there is no thinking to show.
    plain = request_json({"messages": [user("hi")], "include_reasoning": True})
    assert "thinkingConfig" not in plain.get("generationConfig", {})


def test_image_url_mime_type_is_guessed_from_the_extension():
    parts = request_json(
        {
            "messages": [
                user(
                    [
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.webp?size=2"}},
                        {"type": "image_url", "image_url": {"url": "https://x.test/photo"}},
                    ]
                )
            ]
        }
    )["contents"][0]["parts"]
    assert parts == [
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://x.test/a.webp?size=2"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/photo"}},
    ]


# --- responses -----------------------------------------------------------------------------


def test_text_response_skips_thoughts_and_counts_them_as_completion():
    result, usage = adapter.chat_response(TARGET, load("gemini/text.response.json"))
    assert result == {
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! How can I help you today?",
                    "reasoning": load("gemini/text.response.json")["candidates"][0]["content"][
                        "parts"
                    ][0]["text"],
                },
                "finish_reason": "stop",
            }
        ],
    }
    assert usage == Usage(
        prompt_tokens=1200, completion_tokens=57, cached_tokens=1024, reasoning_tokens=48
    )


def test_function_calls_become_tool_calls_with_ids_and_signatures():
    result, usage = adapter.chat_response(TARGET, load("gemini/function_call.response.json"))
    (choice,) = result["choices"]
    assert choice["finish_reason"] == "tool_calls"  # Gemini says STOP
    assert choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert [
        (c["type"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls
    ] == [
        ("function", "get_weather", {"location": "Paris, France"}),
        ("function", "get_weather", {"location": "Tokyo, Japan"}),
    ]
    assert all(re.fullmatch(r"call_[0-9a-f]{24}", c["id"]) for c in calls)
    assert calls[0]["id"] != calls[1]["id"]
    assert calls[0]["extra_content"] == {
        "google": {
            "thought_signature": load("gemini/function_call.response.json")["candidates"][0][
                "content"
            ]["parts"][0]["thoughtSignature"]
        }
    }
    assert "extra_content" not in calls[1]
    assert usage == Usage(prompt_tokens=95, completion_tokens=154, reasoning_tokens=120)


def test_tool_calls_round_trip_into_the_next_request():
    result, _ = adapter.chat_response(TARGET, load("gemini/function_call.response.json"))
    message = result["choices"][0]["message"]
    body = {
        "messages": [
            user("Weather in Paris and Tokyo?"),
            message,
            {
                "role": "tool",
                "tool_call_id": message["tool_calls"][0]["id"],
                "content": '{"temp": 18}',
            },
            {"role": "tool", "tool_call_id": message["tool_calls"][1]["id"], "content": "24C"},
        ]
    }
    contents = request_json(body)["contents"]
    original = load("gemini/function_call.response.json")["candidates"][0]["content"]["parts"]
    assert contents[1] == {"role": "model", "parts": original}
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"content": {"temp": 18}}}},
        {"functionResponse": {"name": "get_weather", "response": {"content": "24C"}}},
    ]


def test_json_schema_answer_is_plain_content():
    result, _ = adapter.chat_response(TARGET, load("gemini/json_schema.response.json"))
    assert json.loads(result["choices"][0]["message"]["content"]) == {
        "name": "Ada Lovelace",
        "born": 1815,
    }


def test_safety_finish_is_content_filter():
    result, usage = adapter.chat_response(TARGET, load("gemini/safety_finish.response.json"))
    assert result["choices"][0]["finish_reason"] == "content_filter"
    assert result["choices"][0]["message"]["content"] == ""
    assert usage == Usage(prompt_tokens=21)


def test_blocked_prompt_is_content_filter_with_empty_content():
    result, usage = adapter.chat_response(TARGET, load("gemini/blocked_prompt.response.json"))
    assert result["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ""},
            "finish_reason": "content_filter",
        }
    ]
    assert usage == Usage(prompt_tokens=17)


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
    ],
)
def test_finish_reasons_map(reason, finish):
    data = load("gemini/text.response.json")
    data["candidates"][0]["finishReason"] = reason
    assert adapter.chat_response(TARGET, data)[0]["choices"][0]["finish_reason"] == finish


def test_several_candidates_become_several_choices():
    data = load("gemini/text.response.json")
    second = json.loads(json.dumps(data["candidates"][0]))
    second["index"] = 1
    second["content"]["parts"] = [{"text": "Hi there!"}]
    data["candidates"].append(second)
    result, _ = adapter.chat_response(TARGET, data)
    assert [(c["index"], c["message"]["content"]) for c in result["choices"]] == [
        (0, "Hello! How can I help you today?"),
        (1, "Hi there!"),
    ]


# --- streams -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["text", "function_call"])
def test_stream_decodes_to_the_same_answer_and_usage_as_the_non_streamed_one(name):
    decoder = adapter.stream_decoder(TARGET)
    chunks = decode(decoder, raw(f"gemini/{name}.stream.sse"))
    full, full_usage = adapter.chat_response(TARGET, load(f"gemini/{name}.response.json"))
    message = full["choices"][0]["message"]

    streamed = assemble(chunks)
    assert streamed["content"] == message["content"]
    assert streamed["reasoning"] == message.get("reasoning")
    assert [
        (c["name"], c["arguments"], c.get("extra_content")) for c in streamed["tool_calls"]
    ] == [
        (c["function"]["name"], c["function"]["arguments"], c.get("extra_content"))
        for c in message.get("tool_calls", [])
    ]
    assert all(c["id"].startswith("call_") for c in streamed["tool_calls"])
    assert streamed["finish_reason"] == full["choices"][0]["finish_reason"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    # Each chunk repeats usageMetadata cumulatively: counted once, equal to the non-streamed one.
    assert decoder.usage == full_usage
    assert decoder.done


def test_stream_that_ends_before_a_finish_reason_is_a_cut():
    body = raw("gemini/text.stream.sse")
    last = body.rindex(b"data: ")
    decoder = adapter.stream_decoder(TARGET)
    chunks = decode(decoder, body[:last])
    assert decoder.done is False
    assert assemble(chunks)["content"] == "Hello! How"
    assert decoder.usage == Usage(
        prompt_tokens=1200, completion_tokens=52, cached_tokens=1024, reasoning_tokens=48
    )

    decoder = adapter.stream_decoder(TARGET)
    decode(decoder, body[: last + 40])  # mid-event: the half JSON is dropped, not raised
    assert decoder.done is False


def test_blocked_prompt_stream_ends_with_content_filter():
    decoder = adapter.stream_decoder(TARGET)
    chunks = decode(decoder, raw("gemini/blocked_prompt.stream.sse"))
    assert assemble(chunks)["finish_reason"] == "content_filter"
    assert decoder.done
    assert decoder.usage == Usage(prompt_tokens=17)


def test_in_stream_error_raises_after_the_text_before_it():
    decoder = adapter.stream_decoder(TARGET)
    chunks = decoder.feed(raw("gemini/stream_error.sse"))
    assert assemble(chunks)["content"] == "Once upon a time"
    with pytest.raises(UpstreamError) as err:
        decoder.finish()
    assert err.value.kind is ErrorKind.OVERLOADED
    assert err.value.status == 503
    assert decoder.done is False


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("error_context_length.json", ErrorKind.CONTEXT_LENGTH),
        ("error_invalid_argument.json", ErrorKind.BAD_REQUEST),
        ("error_api_key_invalid.json", ErrorKind.AUTH),
        ("error_failed_precondition.json", ErrorKind.AUTH),
        ("error_unauthenticated.json", ErrorKind.AUTH),
        ("error_permission_denied.json", ErrorKind.AUTH),
        ("error_not_found.json", ErrorKind.NOT_FOUND),
        ("error_resource_exhausted.json", ErrorKind.RATE_LIMITED),
        ("error_internal.json", ErrorKind.OVERLOADED),
        ("error_unavailable.json", ErrorKind.OVERLOADED),
        ("error_deadline_exceeded.json", ErrorKind.OVERLOADED),
    ],
)
def test_errors_map_to_one_normalized_kind(name, kind):
    data = load(f"gemini/{name}")
    error = adapter.error(data["error"]["code"], {}, raw(f"gemini/{name}"))
    assert error.kind is kind
    assert error.status == data["error"]["code"]
    assert error.message == data["error"]["message"]


def test_rate_limit_retry_after_from_header_else_retry_info():
    body = raw("gemini/error_resource_exhausted.json")
    assert adapter.error(429, {}, body).retry_after == 22.0
    assert adapter.error(429, {"Retry-After": "5"}, body).retry_after == 5.0
    bare = b'{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}'
    assert adapter.error(429, {}, bare).retry_after is None


def test_error_wrapped_in_a_json_array_is_read():
    body = b"[" + raw("gemini/error_context_length.json") + b"]"
    assert adapter.error(400, {}, body).kind is ErrorKind.CONTEXT_LENGTH


def test_error_without_a_google_body_falls_back_on_the_status():
    assert adapter.error(503, {}, b"upstream connect error").kind is ErrorKind.OVERLOADED
    assert adapter.error(404, {}, b"").kind is ErrorKind.NOT_FOUND
    assert adapter.error(429, {"retry-after": "3"}, b"").retry_after == 3.0
