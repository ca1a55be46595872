"""Fuzzes the nested shapes of a chat completion body (messages and their parts, tool calls,
tools, tool_choice, response_format, provider preferences, numbers) against the served gateway:
whatever arrives, the answer is never a 5xx, and a refusal is a 400 in the OpenAI error shape."""

from __future__ import annotations

import json
import os

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

# More for a deeper local run: LLMAPI_FUZZ_EXAMPLES=1000 pytest tests/routing/test_chat_fuzz.py
EXAMPLES = int(os.environ.get("LLMAPI_FUZZ_EXAMPLES", "150"))
MODEL = "google/gemini-3.1-flash-lite"
PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "", "function", "auto"])
)
anything = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def maybe(strategy):
    """Mostly the right shape, sometimes anything at all: one wrong value among many right ones
    is what reaches the code past the first check."""
    return st.one_of(*[strategy] * 7, anything)


def obj(required: dict, optional: dict | None = None):
    return st.fixed_dictionaries(
        {k: maybe(v) for k, v in required.items()},
        optional={k: maybe(v) for k, v in (optional or {}).items()},
    )


numbers = (
    st.integers(min_value=-5, max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "0.5"])
)
text = st.text(max_size=30)
urls = st.sampled_from(
    [
        PNG,
        "https://example.com/cat.png",
        "http://example.com/a.jpg",
        "ftp://example.com/a.png",
        "data:text/plain;base64,aGk=",
        "data:image/png;base64,!!!",
        "",
    ]
)
parts = st.one_of(
    obj({"type": st.just("text"), "text": text}),
    obj(
        {"type": st.just("image_url"), "image_url": obj({"url": urls}, {"detail": text})},
    ),
    obj(
        {
            "type": st.just("input_audio"),
            "input_audio": obj({"data": st.just("UklGRg=="), "format": st.just("wav")}),
        }
    ),
    obj(
        {"type": st.just("file")},
        {"file": obj({}, {"file_data": st.just(PNG), "file_id": text, "filename": text})},
    ),
    obj({"type": st.just("refusal"), "refusal": text}),
    anything,
)
content = st.one_of(text, st.lists(parts, max_size=3), st.none())
tool_call = obj(
    {
        "id": text,
        "type": st.just("function"),
        "function": obj({"name": st.text(min_size=1, max_size=10), "arguments": st.just("{}")}),
    }
)
messages = st.one_of(
    obj({"role": st.sampled_from(["system", "developer", "user"]), "content": content}),
    obj(
        {"role": st.just("assistant")},
        {
            "content": content,
            "tool_calls": st.lists(tool_call, max_size=2),
            "name": text,
            "function_call": obj({"name": text, "arguments": text}),
        },
    ),
    obj({"role": st.just("tool"), "tool_call_id": text, "content": content}),
    anything,
)
tools = st.lists(
    obj(
        {
            "type": st.just("function"),
            "function": obj(
                {"name": st.text(min_size=1, max_size=10)},
                {
                    "description": text,
                    "parameters": st.just({"type": "object"}),
                    "strict": st.booleans(),
                },
            ),
        }
    ),
    max_size=2,
)
tool_choice = st.one_of(
    st.sampled_from(["none", "auto", "required"]),
    obj({"type": st.just("function"), "function": obj({"name": text})}),
)
response_format = st.one_of(
    obj({"type": st.sampled_from(["text", "json_object"])}),
    obj(
        {
            "type": st.just("json_schema"),
            "json_schema": obj(
                {"name": text}, {"schema": st.just({"type": "object"}), "strict": st.booleans()}
            ),
        }
    ),
)
provider = obj(
    {},
    {
        "order": st.lists(text, max_size=2),
        "only": st.lists(text, max_size=2),
        "ignore": st.lists(text, max_size=2),
        "allow_fallbacks": st.booleans(),
        "sort": st.sampled_from(["price", "latency", "throughput"]),
        "max_price": obj({}, {"prompt": numbers, "completion": numbers}),
        "preferred_max_latency": numbers,
        "preferred_min_throughput": numbers,
    },
)
bodies = st.fixed_dictionaries(
    {"model": st.just(MODEL), "messages": maybe(st.lists(messages, min_size=1, max_size=3))},
    optional={
        "max_tokens": maybe(st.integers(min_value=1, max_value=32)),
        "temperature": numbers,
        "top_p": numbers,
        "stream": maybe(st.booleans()),
        "stream_options": obj({}, {"include_usage": st.booleans()}),
        "tools": maybe(tools),
        "tool_choice": tool_choice,
        "response_format": response_format,
        "provider": provider,
        "hedge_after_ms": numbers,
        "seed": maybe(st.integers()),
        "user": maybe(text),
        "parallel_tool_calls": maybe(st.booleans()),
        "logit_bias": anything,
        "metadata": anything,
    },
)


@pytest.fixture
def chat(gateway):
    base_url, secret = gateway
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=30
    ) as client:
        yield client


def _hello(**extra):
    return {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], **extra}


@given(body=bodies)
# Shapes that answered 500 before the nested checks.
@example(
    body={
        "model": MODEL,
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": None, "tool_calls": "get_weather"},
        ],
    }
)
@example(
    body={
        "model": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": "https://x.test/a.png"}],
            }
        ],
    }
)
@example(body=_hello(provider={"max_price": {"prompt": "NaN"}}))
@example(body=_hello(provider={"max_price": {"completion": "Infinity"}}))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_message_shape_answers_5xx(chat, body):
    body = {"max_tokens": 16, **body}  # keeps each accepted request small
    response = chat.post(
        "/chat/completions",
        content=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code < 500, (response.status_code, response.text, body)
    if response.status_code == 400:
        error = response.json()["error"]
        assert set(error) >= {"message", "type", "param", "code"}, error
        assert error["type"] == "invalid_request_error"
        assert isinstance(error["message"], str) and error["message"]
