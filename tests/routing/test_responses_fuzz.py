"""Fuzzes the nested shapes of a Responses body (input items and their parts, tools,
tool_choice, text.format, reasoning, numbers): the translation refuses what it can't take with
a 400 naming a field and never raises anything else, and the served gateway never answers 5xx
to it."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.errors import GatewayError
from routing.validation import parse_chat
from routing.wires import responses as wire
from tests.routing.test_chat_fuzz import (
    EXAMPLES,
    MODEL,
    PNG,
    anything,
    maybe,
    numbers,
    obj,
    provider,
    text,
    urls,
)

parts = st.one_of(
    obj({"type": st.sampled_from(["input_text", "output_text"]), "text": text}),
    obj({"type": st.just("input_image")}, {"image_url": urls, "detail": text, "file_id": text}),
    obj({"type": st.just("input_file")}, {"file_data": st.just(PNG), "filename": text}),
    obj({"type": st.just("refusal"), "refusal": text}),
    anything,
)
content = st.one_of(text, st.lists(parts, max_size=3))
items = st.one_of(
    obj(
        {"role": st.sampled_from(["user", "system", "developer", "assistant"]), "content": content},
        {"type": st.just("message"), "id": text, "status": text},
    ),
    obj(
        {
            "type": st.just("function_call"),
            "call_id": text,
            "name": st.text(min_size=1, max_size=10),
            "arguments": st.just('{"a": 1}'),
        },
        {"id": text},
    ),
    obj(
        {"type": st.just("function_call_output"), "call_id": text},
        {"output": st.one_of(text, st.lists(parts, max_size=2))},
    ),
    obj({"type": st.just("reasoning")}, {"id": text, "summary": anything}),
    anything,
)
tools = st.lists(
    st.one_of(
        obj(
            {"type": st.just("function"), "name": st.text(min_size=1, max_size=10)},
            {
                "parameters": st.just({"type": "object"}),
                "strict": st.booleans(),
                "description": text,
            },
        ),
        obj({"type": st.sampled_from(["web_search", "file_search", "code_interpreter"])}),
    ),
    max_size=2,
)
bodies = st.fixed_dictionaries(
    {
        "model": st.just(MODEL),
        "input": maybe(st.one_of(text, st.lists(items, min_size=1, max_size=4))),
    },
    optional={
        "instructions": maybe(text),
        "max_output_tokens": maybe(st.integers(min_value=1, max_value=32)),
        "temperature": numbers,
        "top_p": numbers,
        "tools": maybe(tools),
        "tool_choice": st.one_of(
            st.sampled_from(["none", "auto", "required"]),
            obj({"type": st.sampled_from(["function", "web_search"]), "name": text}),
        ),
        "text": obj(
            {},
            {
                "format": obj(
                    {"type": st.sampled_from(["text", "json_object", "json_schema"])},
                    {"name": text, "schema": st.just({"type": "object"}), "strict": st.booleans()},
                )
            },
        ),
        "reasoning": obj(
            {},
            {
                "effort": st.sampled_from(["low", "high", "huge"]),
                "summary": st.sampled_from(["auto", "x"]),
            },
        ),
        "metadata": anything,
        "store": maybe(st.booleans()),
        "parallel_tool_calls": maybe(st.booleans()),
        "provider": provider,
        "previous_response_id": maybe(st.just("resp_0123456789abcdef")),
        "background": anything,
    },
)


@given(body=bodies)
@settings(max_examples=EXAMPLES * 4, deadline=None)
def test_the_translation_only_ever_refuses_with_a_400(body):
    try:
        request = wire.read_request(body)
        parse_chat(request.chat_body([{"role": "user", "content": "earlier"}]))
    except GatewayError as error:
        error = wire.in_our_words(error)
        assert error.status_code == 400
        assert error.message
    # Anything else (a TypeError, a KeyError) fails the test.


@pytest.fixture
def responses_api(gateway):
    base_url, secret = gateway
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=30
    ) as client:
        yield client


@given(body=bodies)
@settings(
    max_examples=EXAMPLES // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_body_answers_5xx(responses_api, body):
    body = {**body, "stream": False}
    answer = responses_api.post("/responses", json=body)
    assert answer.status_code < 500 or answer.status_code == 502, answer.text
    if answer.status_code != 200:
        error = answer.json()["error"]
        assert error["message"] and "type" in error
