"""The official openai SDK against the gateway served over HTTP, providers simulated."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import openai
import pytest

HERO = "google/gemini-3.1-flash-lite"


def test_non_streamed_chat(openai_client, generation_events):
    reply = openai_client.chat.completions.create(
        model=HERO, messages=[{"role": "user", "content": "Hello there"}], max_tokens=12
    )
    assert reply.id.startswith("gen-")
    assert reply.model == HERO
    assert reply.model_extra["provider"] == "google-ai-studio"  # the cheapest endpoint
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens == 12
    assert Decimal(str(reply.usage.model_extra["cost"])) > 0
    assert [e.generation_id for e in generation_events] == [reply.id]


def test_streamed_chat_with_usage(openai_client, sim):
    sim.set("google-ai-studio", output_tokens=20)
    stream = openai_client.chat.completions.create(
        model=HERO,
        messages=[{"role": "user", "content": "Stream please"}],
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert all(c.id == chunks[0].id for c in chunks)
    assert chunks[-1].usage.completion_tokens == 20
    assert chunks[-1].choices == []
    assert Decimal(str(chunks[-1].usage.model_extra["cost"])) > 0
    assert {c.model_extra["provider"] for c in chunks} == {"google-ai-studio"}


@pytest.mark.parametrize(
    "model",
    [
        "google/gemini-3.1-flash-lite",
        "google/gemini-3.1-flash",
        "google/gemini-3.1-pro",
        "openai/gpt-4.1-mini",
        "anthropic/claude-3.5-haiku",
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_every_catalog_chat_model_answers(openai_client, model, stream):
    kwargs = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    if stream:
        chunks = list(openai_client.chat.completions.create(stream=True, **kwargs))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        assert openai_client.chat.completions.create(**kwargs).choices[0].message.content


def test_tools_round_trip(openai_client):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    messages = [{"role": "user", "content": "What's the weather in Paris?"}]
    for model in (HERO, "anthropic/claude-3.5-haiku", "openai/gpt-4.1-mini"):
        reply = openai_client.chat.completions.create(
            model=model, messages=messages, tools=tools, tool_choice="required"
        )
        call = reply.choices[0].message.tool_calls[0]
        assert reply.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "get_weather"
        assert "city" in json.loads(call.function.arguments)
        follow_up = openai_client.chat.completions.create(
            model=model,
            tools=tools,
            messages=[
                *messages,
                reply.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'},
            ],
        )
        assert follow_up.choices[0].message.content


def test_vision_with_url_and_data_url(openai_client):
    pixel = (
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
        "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    reply = openai_client.chat.completions.create(
        model=HERO,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these images?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    {"type": "image_url", "image_url": {"url": pixel}},
                ],
            }
        ],
    )
    assert reply.choices[0].message.content
    assert reply.usage.prompt_tokens > 100  # images are counted


def test_json_schema_output(openai_client):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    for model in (HERO, "openai/gpt-4.1-mini", "anthropic/claude-3.5-haiku"):
        reply = openai_client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "A person"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "person", "schema": schema, "strict": True},
            },
        )
        data = json.loads(reply.choices[0].message.content)
        assert isinstance(data["name"], str) and isinstance(data["age"], int), model


def test_reasoning_effort_reports_reasoning_tokens(openai_client):
    reply = openai_client.chat.completions.create(
        model=HERO,
        messages=[{"role": "user", "content": "Think hard"}],
        reasoning_effort="high",
        max_tokens=300,
    )
    assert reply.usage.completion_tokens_details.reasoning_tokens > 0


def test_embeddings(openai_client):
    result = openai_client.embeddings.create(
        model="openai/text-embedding-3-small", input=["one", "two"], dimensions=64
    )
    assert len(result.data) == 2
    assert len(result.data[0].embedding) == 64
    assert result.usage.prompt_tokens > 0
    floats = openai_client.embeddings.create(
        model="text-embedding-3-small", input="one", encoding_format="float"
    )
    assert len(floats.data[0].embedding) == 1536


def test_models_list_and_detail(openai_client):
    ids = {m.id for m in openai_client.models.list()}
    assert {HERO, "openai/gpt-4.1-mini", "anthropic/claude-3.5-haiku"} <= ids
    model = openai_client.models.retrieve(HERO)
    endpoints = model.model_extra["endpoints"]
    assert [e["provider"] for e in endpoints][:1] == ["google-ai-studio"]
    assert {e["provider"] for e in endpoints} == {
        "google-ai-studio",
        "vertex-ai",
        "openrouter",
        "private-vllm",
    }
    assert endpoints[0]["pricing"]["prompt"] == "0.05"
    assert all(e["simulated"] for e in endpoints)


# Errors, each in the OpenAI shape with the right status --------------------------------------


def _error(excinfo) -> dict:
    return excinfo.value.body if isinstance(excinfo.value.body, dict) else {}


def test_unknown_model_is_404_with_suggestions(openai_client):
    with pytest.raises(openai.NotFoundError) as excinfo:
        openai_client.chat.completions.create(
            model="gemini-3.1-flash-lyte", messages=[{"role": "user", "content": "hi"}]
        )
    body = _error(excinfo)
    assert body["code"] == "model_not_found"
    assert "gemini-3.1-flash-lite" in body["message"]


def test_bad_key_is_401(gateway):
    from openai import OpenAI

    base_url, secret = gateway
    client = OpenAI(base_url=base_url, api_key=secret[:-1] + "x", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=HERO, messages=[{"role": "user", "content": "hi"}])


def test_disallowed_model_is_403(gateway, alice):
    from openai import OpenAI

    from accounts import services

    base_url, _ = gateway
    _, secret = services.api_key_create(
        organization=alice.org,
        created_by=alice.user,
        name="only-gpt",
        allowed_models=["openai/gpt-4.1-mini"],
    )
    client = OpenAI(base_url=base_url, api_key=secret, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as excinfo:
        client.chat.completions.create(model=HERO, messages=[{"role": "user", "content": "hi"}])
    assert _error(excinfo)["code"] == "model_not_allowed"
    assert client.chat.completions.create(
        model="openai/gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}]
    ).choices


def test_prompt_over_the_context_window_is_refused_before_any_call(openai_client, sim):
    with pytest.raises(openai.BadRequestError) as excinfo:
        openai_client.chat.completions.create(
            model=HERO, messages=[{"role": "user", "content": "word " * 200_000}]
        )
    assert _error(excinfo)["code"] == "context_length_exceeded"
    assert sim.stats("google-ai-studio")["requests"] == 0


def test_max_tokens_over_the_model_limit_is_refused(openai_client, sim):
    with pytest.raises(openai.BadRequestError) as excinfo:
        openai_client.chat.completions.create(
            model=HERO, messages=[{"role": "user", "content": "hi"}], max_tokens=100_000
        )
    assert _error(excinfo)["param"] == "max_tokens"
    assert sim.stats("google-ai-studio")["requests"] == 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[]", None),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "google/gemini-3.1-flash-lite", "messages": []}', "messages"),
        (b'{"model": "google/gemini-3.1-flash-lite", "messages": [{"role": "x"}]}', None),
        (
            b'{"model": "google/gemini-3.1-flash-lite", "temperature": 7, '
            b'"messages": [{"role": "user", "content": "hi"}]}',
            "temperature",
        ),
    ],
)
def test_malformed_requests_are_400(gateway, body, param):
    base_url, secret = gateway
    response = httpx.post(
        f"{base_url}/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    if param:
        assert error["param"] == param
