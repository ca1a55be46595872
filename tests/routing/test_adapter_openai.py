"""The OpenAI-compatible adapter against recorded OpenAI and OpenRouter wire payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from routing.providers.base import ErrorKind, StreamDecoder, Target, UpstreamError, Usage
from routing.providers.openai_compat import OpenAIAdapter

FIXTURES = Path(__file__).parent / "fixtures"
TARGET = Target("openai", "openai", "https://api.openai.com/v1", "sk-test-openai", "gpt-4.1-mini")
adapter = OpenAIAdapter()


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode(decoder: StreamDecoder, body: bytes, size: int = 7) -> list[dict]:
    """Feed the body in odd-sized pieces, as a network would split it."""
    chunks = []
    for start in range(0, len(body), size):
        chunks += decoder.feed(body[start : start + size])
    return chunks + decoder.finish()


def assemble(chunks: list[dict]) -> dict:
    """Accumulate chunks the way the OpenAI SDK does, into one message + finish_reason."""
    message: dict[str, Any] = {"content": None, "tool_calls": {}}
    finish = None
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        (choice,) = chunk["choices"]
        assert set(choice) >= {"index", "delta", "finish_reason"}
        delta = choice["delta"]
        if delta.get("content"):
            message["content"] = (message["content"] or "") + delta["content"]
        for call in delta.get("tool_calls") or ():
            slot = message["tool_calls"].setdefault(
                call["index"], {"id": None, "name": None, "arguments": ""}
            )
            slot["id"] = call.get("id") or slot["id"]
            function = call.get("function") or {}
            slot["name"] = function.get("name") or slot["name"]
            slot["arguments"] += function.get("arguments") or ""
        finish = choice["finish_reason"] or finish
    calls = [message["tool_calls"][i] for i in sorted(message["tool_calls"])]
    return {"content": message["content"], "tool_calls": calls, "finish_reason": finish}


# --- requests ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["tools_conversation", "json_schema"])
def test_chat_request_passes_openai_fields_through_and_drops_ours(case):
    request = adapter.chat_request(TARGET, load(f"client/{case}.json"), stream=False)
    expected = load(f"openai/{case}.request.json")
    assert request.method == expected["method"]
    assert request.url == expected["url"]
    assert request.headers == expected["headers"]
    assert request.json == expected["json"]
    assert not {"provider", "models", "route", "hedge_after_ms"} & set(request.json)


def test_streamed_request_always_asks_for_usage():
    body = load("client/reasoning_stream.json")  # the client said include_usage: false
    request = adapter.chat_request(TARGET, body, stream=True)
    assert request.json == load("openai/reasoning_stream.request.json")["json"]
    assert request.json["stream_options"] == {"include_usage": True}
    assert body["stream_options"] == {"include_usage": False}  # the client's body is untouched


def test_non_streamed_request_carries_no_stream_options():
    body = {"model": "x", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    request = adapter.chat_request(TARGET, body, stream=False)
    assert "stream" not in request.json and "stream_options" not in request.json


def test_max_tokens_fields_are_kept_as_the_client_sent_them():
    legacy = adapter.chat_request(TARGET, {"messages": [], "max_tokens": 50}, stream=False)
    assert legacy.json["max_tokens"] == 50 and "max_completion_tokens" not in legacy.json
    new = adapter.chat_request(TARGET, {"messages": [], "max_completion_tokens": 60}, stream=False)
    assert new.json["max_completion_tokens"] == 60 and "max_tokens" not in new.json


def test_openrouter_target_uses_its_base_url_and_model_name():
    target = Target(
        "openrouter",
        "openai",
        "https://openrouter.ai/api/v1",
        "sk-or-test",
        "google/gemini-3.1-flash-lite",
        extra_headers={"HTTP-Referer": "https://llmapi.example", "X-Title": "LLM API"},
    )
    request = adapter.chat_request(
        target, {"messages": [{"role": "user", "content": "hi"}]}, stream=False
    )
    assert request.url == "https://openrouter.ai/api/v1/chat/completions"
    assert request.json["model"] == "google/gemini-3.1-flash-lite"
    assert request.headers["authorization"] == "Bearer sk-or-test"
    assert request.headers["X-Title"] == "LLM API"


# --- responses -----------------------------------------------------------------------------


def test_text_response_passes_through_with_cached_usage():
    result, usage = adapter.chat_response(TARGET, load("openai/chat_text.response.json"))
    assert result["object"] == "chat.completion"
    assert result["choices"][0]["message"]["content"] == "Hello! How can I help you today?"
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["system_fingerprint"] == "fp_6f2eabb9a5"
    assert not {"id", "model", "created", "usage"} & set(result)  # the gateway writes those
    assert usage == Usage(prompt_tokens=1117, completion_tokens=10, cached_tokens=1024)


def test_tool_call_response_keeps_calls_and_reasoning_tokens():
    result, usage = adapter.chat_response(TARGET, load("openai/chat_tool_calls.response.json"))
    message = result["choices"][0]["message"]
    assert [c["function"]["arguments"] for c in message["tool_calls"]] == [
        '{"location":"Paris, France"}',
        '{"location":"Tokyo, Japan"}',
    ]
    assert result["choices"][0]["finish_reason"] == "tool_calls"
    assert usage == Usage(prompt_tokens=82, completion_tokens=217, reasoning_tokens=192)
    assert usage.to_openai()["completion_tokens_details"] == {"reasoning_tokens": 192}


@pytest.mark.parametrize("name", ["chat_text", "chat_tool_calls"])
def test_stream_decodes_to_the_same_answer_and_usage_as_the_non_streamed_one(name):
    decoder = adapter.stream_decoder(TARGET)
    chunks = decode(decoder, raw(f"openai/{name}.stream.sse"))
    full, full_usage = adapter.chat_response(TARGET, load(f"openai/{name}.response.json"))
    message = full["choices"][0]["message"]

    streamed = assemble(chunks)
    assert streamed["content"] == message["content"]
    assert [(c["id"], c["name"], c["arguments"]) for c in streamed["tool_calls"]] == [
        (c["id"], c["function"]["name"], c["function"]["arguments"])
        for c in message.get("tool_calls", [])
    ]
    assert streamed["finish_reason"] == full["choices"][0]["finish_reason"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(chunk["choices"] for chunk in chunks)  # the usage-only chunk isn't passed on
    assert decoder.usage == full_usage
    assert decoder.done


def test_stream_without_done_marker_is_a_cut():
    body = raw("openai/chat_text.stream.sse")
    cut = body[: body.index(b"data: [DONE]")]
    decoder = adapter.stream_decoder(TARGET)
    decode(decoder, cut)
    assert decoder.done is False
    assert decoder.usage is not None  # the usage chunk arrived before the cut

    decoder = adapter.stream_decoder(TARGET)
    decode(decoder, body[: len(body) // 2])  # mid-event
    assert decoder.done is False and decoder.usage is None


def test_first_chunk_gets_the_assistant_role_when_the_server_omits_it():
    decoder = adapter.stream_decoder(TARGET)
    chunks = decoder.feed(b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n')
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hi"}


def test_groq_usage_in_x_groq_is_read():
    decoder = adapter.stream_decoder(TARGET)
    decoder.feed(
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
        b'"x_groq":{"usage":{"prompt_tokens":9,"completion_tokens":3}}}\n\ndata: [DONE]\n\n'
    )
    assert decoder.usage == Usage(prompt_tokens=9, completion_tokens=3)
    assert decoder.done


def test_openrouter_mid_stream_error_surfaces_after_the_text_before_it():
    decoder = adapter.stream_decoder(TARGET)
    # One read holds the comments, the text and the error: the text comes first...
    chunks = decoder.feed(raw("openai/openrouter_stream_error.sse"))
    assert assemble(chunks)["content"] == "Once upon"
    # ...and the error is raised by the next call.
    with pytest.raises(UpstreamError) as err:
        decoder.finish()
    assert err.value.kind is ErrorKind.OVERLOADED
    assert "Provider disconnected" in err.value.message
    assert decoder.done is False


def test_openrouter_mid_stream_error_in_pieces_raises_from_feed():
    decoder = adapter.stream_decoder(TARGET)
    with pytest.raises(UpstreamError):
        decode(decoder, raw("openai/openrouter_stream_error.sse"))


def test_openrouter_error_in_a_200_body_raises():
    with pytest.raises(UpstreamError) as err:
        adapter.chat_response(
            TARGET, {"error": {"code": 502, "message": "Provider returned error"}}
        )
    assert err.value.kind is ErrorKind.OVERLOADED


# --- embeddings ----------------------------------------------------------------------------


def test_embeddings_request_and_response_pass_through():
    target = Target(
        "openai", "openai", "https://api.openai.com/v1", "sk-test", "text-embedding-3-small"
    )
    body = {
        "model": "openai/text-embedding-3-small",
        "input": ["hello", "world"],
        "encoding_format": "float",
        "dimensions": 4,
        "provider": {"order": ["openai"]},
    }
    request = adapter.embeddings_request(target, body)
    assert request.url == "https://api.openai.com/v1/embeddings"
    assert request.json == {
        "model": "text-embedding-3-small",
        "input": ["hello", "world"],
        "encoding_format": "float",
        "dimensions": 4,
    }
    data = load("openai/embeddings.response.json")
    result, usage = adapter.embeddings_response(target, data)
    assert result == {"object": "list", "data": data["data"]}
    assert usage == Usage(prompt_tokens=8)


def test_base64_embeddings_are_forwarded_undecoded():
    data = load("openai/embeddings_base64.response.json")
    result, usage = adapter.embeddings_response(TARGET, data)
    assert result["data"][0]["embedding"] == "n0vivLhBr7u0QPg5HgLFvA=="
    assert usage.prompt_tokens == 5


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "kind"),
    [
        (400, "error_context_length.json", ErrorKind.CONTEXT_LENGTH),
        (400, "error_invalid_request.json", ErrorKind.BAD_REQUEST),
        (400, "error_content_filter.json", ErrorKind.CONTENT_FILTER),
        (401, "error_invalid_api_key.json", ErrorKind.AUTH),
        (402, "error_openrouter_credits.json", ErrorKind.AUTH),
        (403, "error_openrouter_moderation.json", ErrorKind.CONTENT_FILTER),
        (404, "error_model_not_found.json", ErrorKind.NOT_FOUND),
        (413, "error_invalid_request.json", ErrorKind.BAD_REQUEST),
        (429, "error_rate_limit.json", ErrorKind.RATE_LIMITED),
        (429, "error_insufficient_quota.json", ErrorKind.AUTH),
        (500, "error_server.json", ErrorKind.OVERLOADED),
        (503, "error_server.json", ErrorKind.OVERLOADED),
        (502, "error_bad_gateway.html", ErrorKind.OVERLOADED),
    ],
)
def test_errors_map_to_one_normalized_kind(status, name, kind):
    error = adapter.error(status, {}, raw(f"openai/{name}"))
    assert error.kind is kind
    assert error.status == status
    assert error.message


def test_error_message_comes_from_the_body():
    error = adapter.error(400, {}, raw("openai/error_context_length.json"))
    assert error.message.startswith("This model's maximum context length is 128000 tokens")
    html = adapter.error(502, {}, raw("openai/error_bad_gateway.html"))
    assert "502 Bad Gateway" in html.message


def test_rate_limit_carries_retry_after():
    body = raw("openai/error_rate_limit.json")
    assert adapter.error(429, {"retry-after": "20"}, body).retry_after == 20.0
    assert adapter.error(429, {"retry-after-ms": "312"}, body).retry_after == 0.312
    assert adapter.error(429, {}, body).retry_after is None
    assert adapter.error(429, {"retry-after": "20"}, body).retryable
    assert not adapter.error(400, {}, raw("openai/error_context_length.json")).retryable


def test_completions_are_never_stored_upstream_whatever_the_client_says():
    body = {
        "model": "x",
        "messages": [{"role": "user", "content": "hi"}],
        "store": True,
        "metadata": {"team": "red"},  # OpenAI takes metadata only with store on
    }
    for stream in (False, True):
        payload = adapter.chat_request(TARGET, body, stream=stream).json
        assert payload["store"] is False
        assert "metadata" not in payload
    assert body["store"] is True  # the client's body is untouched


def test_openrouter_cache_writes_are_read():
    _, usage = adapter.chat_response(
        TARGET,
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 2100,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 2048},
            },
        },
    )
    assert usage == Usage(prompt_tokens=2100, completion_tokens=5, cache_write_tokens=2048)
