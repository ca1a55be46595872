"""The openai Python SDK's Chat Completions on each wire: what the client sees."""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel

from tests.conformance.conftest import ALL_WIRES, WIRES, only

CLIENT = "openai (Python)"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


class City(BaseModel):
    name: str
    population: int


@ALL_WIRES
@pytest.mark.conformance(CLIENT, "chat.completions.create")
def test_create(openai_client, wire):
    model, provider = WIRES[wire]
    reply = openai_client.chat.completions.create(
        model=model,
        max_tokens=8,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        extra_body=only(provider),
    )
    assert reply.model == model
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert 0 < reply.usage.completion_tokens <= 8


@ALL_WIRES
@pytest.mark.conformance(CLIENT, "chat stream")
def test_stream(openai_client, wire):
    model, provider = WIRES[wire]
    stream = openai_client.chat.completions.create(
        model=model,
        max_tokens=8,
        messages=[{"role": "user", "content": "Stream please"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body=only(provider),
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens == 8


@ALL_WIRES
@pytest.mark.conformance(CLIENT, "tools round trip")
def test_tools_round_trip(openai_client, wire):
    model, provider = WIRES[wire]
    messages = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]
    kwargs = {"model": model, "max_tokens": 64, "tools": [WEATHER], "extra_body": only(provider)}
    first = openai_client.chat.completions.create(messages=messages, **kwargs)
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
    ]
    final = openai_client.chat.completions.create(messages=messages, **kwargs)
    assert final.choices[0].finish_reason in ("stop", "length")
    assert final.choices[0].message.content


@ALL_WIRES
@pytest.mark.conformance(CLIENT, "parse (Pydantic)")
def test_parse(openai_client, wire):
    model, provider = WIRES[wire]
    reply = openai_client.chat.completions.parse(
        model=model,
        max_tokens=64,
        messages=[{"role": "user", "content": "The largest city of France, as JSON."}],
        response_format=City,
        extra_body=only(provider),
    )
    city = reply.choices[0].message.parsed
    assert isinstance(city, City) and city.name and isinstance(city.population, int)


@ALL_WIRES
@pytest.mark.conformance(CLIENT, "errors as typed exceptions")
def test_errors(openai_client, sim, wire):
    model, provider = WIRES[wire]
    with pytest.raises(openai.BadRequestError) as bad:
        openai_client.chat.completions.create(
            model=model, max_tokens=-1, messages=[{"role": "user", "content": "hi"}]
        )
    assert bad.value.body["type"] == "invalid_request_error"
    sim.set(provider, error_rate=1.0, error_kind="429", retry_after=0)
    with pytest.raises(openai.RateLimitError):
        openai_client.chat.completions.create(
            model=model,
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
            extra_body=only(provider),
        )
