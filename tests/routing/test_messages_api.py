"""Anthropic's Messages API (/v1/messages) through the official anthropic SDK, on each
provider wire: Gemini and OpenAI-compatible endpoints are translated, Anthropic's get the
client's request as it was (thinking signatures, cache_control, top_k...)."""

from __future__ import annotations

import base64
import json
import re
from decimal import Decimal

import anthropic
import httpx
import pytest

from billing import services as billing_services
from billing.models import LedgerEntry

WIRES = {
    "gemini": ("google/gemini-3.1-flash-lite", "google-ai-studio"),
    "openai": ("openai/gpt-4.1-mini", "openai"),
    "anthropic": ("anthropic/claude-3.5-haiku", "anthropic"),
}
REASONING = {  # a model that thinks, per wire (Anthropic's passes `thinking` as it was sent)
    "gemini": ("google/gemini-3.1-pro", "google-ai-studio"),
    "anthropic": ("anthropic/claude-3.5-haiku", "anthropic"),
}
WEATHER = {
    "name": "get_weather",
    "description": "The current weather of a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
# A 1x1 PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()


def only(provider: str, **extra) -> dict:
    return {"provider": {"only": [provider]}, **extra}


def cost(message) -> Decimal:
    return Decimal(str(message.usage.model_extra["cost"]))


@pytest.mark.parametrize("wire", sorted(WIRES))
def test_create_answers_a_message_billed_as_its_generation(
    anthropic_client, generation_events, wire
):
    model, provider = WIRES[wire]
    message = anthropic_client.messages.create(
        model=model,
        max_tokens=16,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello there"}],
        metadata={"user_id": "user-42"},
        extra_body=only(provider, temperature=0.5, top_p=0.9),
    )
    assert message.id.startswith("msg_")
    assert (message.type, message.role, message.model) == ("message", "assistant", model)
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0
    assert 0 < message.usage.output_tokens <= 16
    assert message.model_extra["provider"] == provider
    [event] = generation_events
    assert event.generation_id == "gen-" + message.id.removeprefix("msg_")
    assert Decimal(event.cost_nanousd) / 10**9 == cost(message) > 0


@pytest.mark.parametrize("wire", sorted(WIRES))
def test_the_stream_is_anthropics_event_sequence(anthropic_client, gateway, wire):
    model, provider = WIRES[wire]
    base_url, secret = gateway
    body = {
        "model": model,
        "max_tokens": 12,
        "stream": True,
        "messages": [{"role": "user", "content": "Stream please"}],
        **only(provider),
    }
    with httpx.stream(
        "POST", f"{base_url}/messages", json=body, headers={"x-api-key": secret}, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = re.findall(r"event: (\w+)\ndata: (.+)\n\n", raw)
    names = [name for name, _ in events]
    assert all(json.loads(data)["type"] == name for name, data in events)
    sequence = " ".join(dict.fromkeys(names))  # first appearances, in order
    assert sequence.startswith("message_start")
    assert re.fullmatch(
        r"message_start (ping )?content_block_start (ping )?content_block_delta content_block_stop"
        r" message_delta message_stop",
        sequence,
    ), names
    assert names[-2:] == ["message_delta", "message_stop"]
    final_usage = json.loads(events[-2][1])["usage"]
    assert final_usage["output_tokens"] == 12
    assert Decimal(str(final_usage["cost"])) > 0

    # The SDK's own accumulator agrees.
    with anthropic_client.messages.stream(
        model=model,
        max_tokens=12,
        messages=[{"role": "user", "content": "Stream please"}],
        extra_body=only(provider),
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 12


@pytest.mark.parametrize("wire", sorted(WIRES))
@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
def test_a_tool_round_trip(anthropic_client, wire, streamed):
    model, provider = WIRES[wire]
    messages = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]
    kwargs = {
        "model": model,
        "max_tokens": 200,
        "tools": [WEATHER],
        "tool_choice": {"type": "auto"},
        "extra_body": only(provider),
    }
    if streamed:
        with anthropic_client.messages.stream(messages=messages, **kwargs) as stream:
            kinds = {event.type for event in stream}
            first = stream.get_final_message()
        assert "input_json" in kinds  # input_json_delta events, accumulated by the SDK
    else:
        first = anthropic_client.messages.create(messages=messages, **kwargs)
    assert first.stop_reason == "tool_use"
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert call.name == "get_weather"
    assert isinstance(call.input, dict) and isinstance(call.input.get("city"), str)

    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"},
                {"type": "text", "text": "Thanks, now answer."},
            ],
        },
    ]
    final = anthropic_client.messages.create(messages=messages, **kwargs)
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.content[-1].type == "text" and final.content[-1].text


@pytest.mark.parametrize("wire", sorted(REASONING))
def test_thinking_comes_back_as_thinking_blocks(anthropic_client, wire):
    model, provider = REASONING[wire]
    request = {
        "model": model,
        "max_tokens": 3000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Think, then answer: 2+2?"}],
        "extra_body": only(provider),
    }
    message = anthropic_client.messages.create(**request)
    assert [block.type for block in message.content][:2] == ["thinking", "text"]
    assert message.content[0].thinking
    if wire == "anthropic":  # passed through: Anthropic's signature, to send back later
        assert message.content[0].signature
    with anthropic_client.messages.stream(**request) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds and "text" in kinds
    assert kinds.index("thinking") < kinds.index("text")
    assert final.content[0].type == "thinking" and final.content[0].thinking
    if wire == "anthropic":
        assert "signature" in kinds and final.content[0].signature


def test_an_anthropic_tool_loop_with_thinking_sends_the_signed_blocks_back(anthropic_client):
    # Anthropic wants the earlier turn's signed thinking back in a tool loop: passed through.
    kwargs = {
        "model": "anthropic/claude-3.5-haiku",
        "max_tokens": 3000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [WEATHER],
        "extra_body": only("anthropic"),
    }
    messages = [{"role": "user", "content": "Weather in Oslo? Use get_weather."}]
    first = anthropic_client.messages.create(messages=messages, **kwargs)
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert first.content[0].type == "thinking"
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "-3 C"}],
        },
    ]
    final = anthropic_client.messages.create(messages=messages, **kwargs)
    assert final.content[-1].type == "text"


def test_cache_control_reaches_anthropic_and_is_priced_as_cache_writes_then_reads(
    anthropic_client,
):
    system = [
        {
            "type": "text",
            "text": "You are a careful assistant. " * 400,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    kwargs = {
        "model": "anthropic/claude-3.5-haiku",
        "max_tokens": 8,
        "system": system,
        "messages": [{"role": "user", "content": "hi"}],
        "extra_body": only("anthropic"),
    }
    written = anthropic_client.messages.create(**kwargs)
    read = anthropic_client.messages.create(**kwargs)
    assert written.usage.cache_creation_input_tokens > 1000
    assert written.usage.cache_read_input_tokens == 0
    assert read.usage.cache_read_input_tokens == written.usage.cache_creation_input_tokens
    # Writes cost more than the input price, reads less: the second call is cheaper.
    assert cost(read) < cost(written)


@pytest.mark.parametrize("wire", sorted(WIRES))
def test_images_and_documents(anthropic_client, wire):
    model, provider = WIRES[wire]
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "What is in this image?"},
    ]
    if wire != "openai":  # OpenAI's chat models take no PDF in this catalog's simulator
        content.insert(
            0,
            {
                "type": "document",
                "source": {
                    "type": "base64",
                    "media_type": "application/pdf",
                    "data": base64.b64encode(b"%PDF-1.4 a tiny document").decode(),
                },
            },
        )
    message = anthropic_client.messages.create(
        model=model,
        max_tokens=8,
        messages=[{"role": "user", "content": content}],
        extra_body=only(provider),
    )
    assert message.content[0].text


def test_stop_sequences_top_k_and_tool_choice_any_are_accepted(anthropic_client):
    message = anthropic_client.messages.create(
        model="google/gemini-3.1-flash-lite",
        max_tokens=50,
        stop_sequences=["zzz"],
        extra_body={"top_k": 5, "temperature": 0.2},
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "Anything"}],
    )
    assert message.stop_reason == "tool_use"
    assert [b.name for b in message.content if b.type == "tool_use"] == ["get_weather"]


def test_count_tokens(anthropic_client):
    short = anthropic_client.messages.count_tokens(
        model="anthropic/claude-3.5-haiku", messages=[{"role": "user", "content": "Hello"}]
    )
    long = anthropic_client.messages.count_tokens(
        model="anthropic/claude-3.5-haiku",
        system="Be brief.",
        tools=[WEATHER],
        messages=[{"role": "user", "content": "Hello " * 200}],
    )
    assert 0 < short.input_tokens < long.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client.messages.count_tokens(
            model="nope/nothing", messages=[{"role": "user", "content": "Hello"}]
        )


def test_errors_are_anthropics_typed_exceptions(anthropic_client, gateway):
    base_url, secret = gateway
    with pytest.raises(anthropic.BadRequestError) as bad:
        anthropic_client.messages.create(
            model="anthropic/claude-3.5-haiku",
            max_tokens=0,
            messages=[{"role": "user", "content": "hi"}],
        )
    assert bad.value.body["type"] == "error"
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in bad.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError) as missing:
        anthropic_client.messages.create(
            model="nope/nothing", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError):
        anthropic_client.messages.create(
            model="anthropic/claude-3.5-haiku",
            max_tokens=5,
            messages=[{"role": "tool", "content": "hi"}],
        )
    wrong = anthropic.Anthropic(
        base_url=base_url.removesuffix("/v1"), api_key="llmapi_nope", max_retries=0
    )
    with pytest.raises(anthropic.AuthenticationError) as denied:
        wrong.messages.create(
            model="anthropic/claude-3.5-haiku",
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
        )
    assert denied.value.body["error"]["type"] == "authentication_error"
    # No key at all, refused before the body is read: Anthropic's shape too.
    response = httpx.post(f"{base_url}/messages", json={"model": "x"}, timeout=10)
    assert response.status_code == 401
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "authentication_error"


def test_out_of_credit_is_a_402_billing_error(anthropic_client, alice):
    billing_services.billing_account_for(organization=alice.org)
    from billing import selectors as billing_selectors

    billing_services.ledger_post(
        organization=alice.org,
        kind=LedgerEntry.Kind.ADJUSTMENT,
        amount_nanousd=-billing_selectors.ledger_sum(organization=alice.org) - 10**9,
        reference="test:drain",
    )
    with pytest.raises(anthropic.APIStatusError) as refused:
        anthropic_client.messages.create(
            model="anthropic/claude-3.5-haiku",
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
        )
    assert refused.value.status_code == 402
    assert refused.value.body["error"]["type"] == "billing_error"


@pytest.mark.parametrize("wire", sorted(WIRES))
def test_a_stream_that_fails_midway_ends_with_an_error_event(anthropic_client, sim, wire):
    model, provider = WIRES[wire]
    sim.set(provider, error_rate=1.0, error_kind="cut", output_tokens=40)
    with pytest.raises(anthropic.APIStatusError) as failed:
        with anthropic_client.messages.stream(
            model=model,
            max_tokens=40,
            messages=[{"role": "user", "content": "A long answer please"}],
            extra_body=only(provider),
        ) as stream:
            for _ in stream:
                pass
    assert failed.value.body["type"] == "error"
    assert failed.value.body["error"]["type"] == "api_error"


def test_models_answer_in_anthropics_shape(anthropic_client):
    models = anthropic_client.models.list()
    ids = [model.id for model in models.data]
    assert "anthropic/claude-3.5-haiku" in ids and "google/gemini-3.1-flash-lite" in ids
    assert {model.type for model in models.data} == {"model"}
    one = anthropic_client.models.retrieve("anthropic/claude-3.5-haiku")
    assert one.display_name and one.created_at


# Money: what the client's own request, passed to Anthropic as sent, could make us spend -------


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"service_tier": "priority"}, "service_tier"),
        ({"inference_geo": "us"}, "inference_geo"),
        (
            {"mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "x"}]},
            "mcp_servers",
        ),
        ({"container": "container_1"}, "container"),
    ],
)
def test_fields_anthropic_charges_extra_for_are_refused_before_any_call(
    anthropic_client, sim, generation_events, extra, param
):
    """Passed through natively, these would be billed to us above the listed prices (a dearer
    tier or region, MCP and code-execution use) with nothing held for them. Before: accepted and
    sent to Anthropic as they were."""
    with pytest.raises(anthropic.BadRequestError) as refused:
        anthropic_client.messages.create(
            model="anthropic/claude-3.5-haiku",
            max_tokens=8,
            messages=[{"role": "user", "content": "hi"}],
            extra_body=only("anthropic", **extra),
        )
    assert param in refused.value.body["error"]["message"]
    assert sim.stats("anthropic")["requests"] == 0
    assert generation_events == []


def test_the_native_request_asks_anthropic_for_no_more_than_was_held(
    anthropic_client, sim, generation_events
):
    """The client's max_tokens and thinking budget are replaced by the held output cap (the
    budget shrunk under it): Anthropic can't write, and bill, more than the hold covers, and
    the generation is billed once at what Anthropic reported."""
    message = anthropic_client.messages.create(
        model="anthropic/claude-3.5-haiku",
        max_tokens=1500,
        thinking={"type": "enabled", "budget_tokens": 2000},
        messages=[{"role": "user", "content": "Think hard."}],
        extra_body=only("anthropic"),
    )
    sent = sim.last_request("anthropic")
    assert sent["max_tokens"] == 1500 + 2000  # the budget is added to the answer's room
    assert sent["thinking"]["budget_tokens"] < sent["max_tokens"]
    assert message.usage.output_tokens <= sent["max_tokens"]
    [event] = generation_events
    assert Decimal(event.cost_nanousd) / 10**9 == cost(message) > 0
