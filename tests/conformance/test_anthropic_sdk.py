"""The anthropic Python SDK on each wire: what the client sees. The gateway's side of the same
calls (billing, the exact event sequence, signatures sent back) is in
tests/routing/test_messages_api.py."""

from __future__ import annotations

import anthropic
import pytest

from tests.conformance.conftest import ALL_WIRES, REASONING, WIRES, only

CLIENT = "anthropic (Python)"
WEATHER = {
    "name": "get_weather",
    "description": "The current weather of a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@ALL_WIRES
@pytest.mark.conformance(CLIENT, "messages.create")
def test_create(anthropic_client, wire):
    model, provider = WIRES[wire]
    message = anthropic_client.messages.create(
        model=model,
        max_tokens=8,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello there"}],
        extra_body=only(provider),
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert 0 < message.usage.output_tokens <= 8


@ALL_WIRES
@pytest.mark.conformance(CLIENT, "messages.stream")
def test_stream(anthropic_client, wire):
    model, provider = WIRES[wire]
    with anthropic_client.messages.stream(
        model=model,
        max_tokens=8,
        messages=[{"role": "user", "content": "Stream please"}],
        extra_body=only(provider),
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text
    assert final.usage.output_tokens == 8


@ALL_WIRES
@pytest.mark.conformance(CLIENT, "tools round trip")
def test_tools_round_trip(anthropic_client, wire):
    model, provider = WIRES[wire]
    kwargs = {"model": model, "max_tokens": 64, "tools": [WEATHER], "extra_body": only(provider)}
    messages = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]
    first = anthropic_client.messages.create(messages=messages, **kwargs)
    assert first.stop_reason == "tool_use"
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert call.name == "get_weather" and isinstance(call.input["city"], str)
    messages += [
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"}],
        },
    ]
    final = anthropic_client.messages.create(messages=messages, **kwargs)
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.content[-1].type == "text" and final.content[-1].text


@pytest.mark.parametrize("wire", list(REASONING))
@pytest.mark.conformance(CLIENT, "thinking")
def test_thinking(anthropic_client, wire):
    model, provider = REASONING[wire]
    message = anthropic_client.messages.create(
        model=model,
        max_tokens=1100,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Think, then answer: 2+2?"}],
        extra_body=only(provider),
    )
    assert [block.type for block in message.content][:2] == ["thinking", "text"]
    assert message.content[0].thinking


@ALL_WIRES
@pytest.mark.conformance(CLIENT, "count_tokens")
def test_count_tokens(anthropic_client, wire):
    model, _ = WIRES[wire]
    short = anthropic_client.messages.count_tokens(
        model=model, messages=[{"role": "user", "content": "Hello"}]
    )
    long = anthropic_client.messages.count_tokens(
        model=model, tools=[WEATHER], messages=[{"role": "user", "content": "Hello " * 50}]
    )
    assert 0 < short.input_tokens < long.input_tokens


@ALL_WIRES
@pytest.mark.conformance(CLIENT, "errors as typed exceptions")
def test_errors(anthropic_client, sim, wire):
    model, provider = WIRES[wire]
    with pytest.raises(anthropic.BadRequestError) as bad:
        anthropic_client.messages.create(
            model=model, max_tokens=0, messages=[{"role": "user", "content": "hi"}]
        )
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    # The provider rate-limits and there is no other to fall back to.
    sim.set(provider, error_rate=1.0, error_kind="429", retry_after=0)
    with pytest.raises(anthropic.RateLimitError) as limited:
        anthropic_client.messages.create(
            model=model,
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
            extra_body=only(provider),
        )
    assert limited.value.body["error"]["type"] == "rate_limit_error"
