"""Clients of the Responses API (POST /v1/responses) on each wire: the openai SDK's
`responses` (Python and Node), the OpenAI Agents SDK's tool loop, and the AI SDK's default
`@ai-sdk/openai` provider. The whole module is skipped while the gateway doesn't route
/v1/responses."""

from __future__ import annotations

import json

import pytest
from django.urls import Resolver404, resolve
from pydantic import BaseModel

from tests.conformance.conftest import ALL_WIRES, WIRES, only, run_node

try:
    resolve("/v1/responses")
except Resolver404:
    pytest.skip("the gateway does not serve /v1/responses yet", allow_module_level=True)

CLIENT = "openai (Python) Responses"
AGENTS = "OpenAI Agents SDK"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather of a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


class City(BaseModel):
    name: str
    population: int


@ALL_WIRES
@pytest.mark.conformance(CLIENT, "responses.create")
def test_create(openai_client, wire):
    model, provider = WIRES[wire]
    response = openai_client.responses.create(
        model=model,
        input="Hello there",
        instructions="Be brief.",
        max_output_tokens=16,
        extra_body=only(provider),
    )
    assert response.status in ("completed", "incomplete")
    assert response.output_text
    assert 0 < response.usage.output_tokens <= 16


@ALL_WIRES
@pytest.mark.conformance(CLIENT, "responses.stream")
def test_stream(openai_client, wire):
    model, provider = WIRES[wire]
    with openai_client.responses.stream(
        model=model, input="Stream please", max_output_tokens=16, extra_body=only(provider)
    ) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas and "".join(deltas) == final.output_text
    assert final.usage.output_tokens > 0


@ALL_WIRES
@pytest.mark.conformance(CLIENT, "tools round trip")
def test_tools_round_trip(openai_client, wire):
    model, provider = WIRES[wire]
    kwargs = {
        "model": model,
        "max_output_tokens": 64,
        "tools": [WEATHER],
        "extra_body": only(provider),
    }
    items: list = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]
    first = openai_client.responses.create(input=items, **kwargs)
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and isinstance(json.loads(call.arguments)["city"], str)
    items += [item.model_dump(exclude_none=True) for item in first.output]
    items.append({"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"})
    final = openai_client.responses.create(input=items, **kwargs)
    assert final.output_text


@ALL_WIRES
@pytest.mark.conformance(CLIENT, "responses.parse (Pydantic)")
def test_parse(openai_client, wire):
    model, provider = WIRES[wire]
    response = openai_client.responses.parse(
        model=model,
        input="The largest city of France, as JSON.",
        text_format=City,
        max_output_tokens=64,
        extra_body=only(provider),
    )
    city = response.output_parsed
    assert isinstance(city, City) and city.name and isinstance(city.population, int)


@ALL_WIRES
@pytest.mark.conformance(AGENTS, "two-tool agent loop")
def test_agent_loop(gateway, wire):
    from agents import (
        Agent,
        ModelSettings,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )
    from openai import AsyncOpenAI

    set_tracing_disabled(True)  # no traces sent to OpenAI
    base_url, secret = gateway
    model, provider = WIRES[wire]
    called: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather of a city."""
        called.append("get_weather")
        return "Sunny, 21 C"

    @function_tool
    def get_time(city: str) -> str:
        """The local time in a city."""
        called.append("get_time")
        return "14:05"

    agent = Agent(
        name="assistant",
        instructions="Answer with the tools.",
        tools=[get_weather, get_time],
        model=OpenAIResponsesModel(
            model=model,
            openai_client=AsyncOpenAI(base_url=base_url, api_key=secret, max_retries=0),
        ),
        model_settings=ModelSettings(max_tokens=64, extra_body=only(provider)),
    )
    result = Runner.run_sync(
        agent, "Use get_weather for Paris, then use get_time for Paris.", max_turns=4
    )
    assert called and set(called) <= {"get_weather", "get_time"}
    assert isinstance(result.final_output, str) and result.final_output


NODE = {
    "openai_sdk.mjs": [
        ("openai (Node) Responses", {}, ["responses.create", "responses.stream", "responses tools"])
    ],
    "ai_sdk.mjs": [
        (
            "AI SDK + @ai-sdk/openai (Responses)",
            {"package": "openai"},
            ["generateText", "streamText", "generateObject", "tools"],
        )
    ],
}


@pytest.mark.parametrize("script", list(NODE))
def test_node_responses_clients(gateway, record_cell, script):
    base_url, key = gateway
    scenarios = [
        {"client": client, "scenario": feature, "wire": wire, "model": m, "provider": p, **extra}
        for client, extra, features in NODE[script]
        for feature in features
        for wire, (m, p) in WIRES.items()
    ]
    results = run_node(script, scenarios, base_url=base_url, key=key)
    for result in results:
        record_cell(
            result["client"], result["scenario"], result["wire"], result["ok"], result["detail"]
        )
    failed = [r for r in results if not r["ok"]]
    assert not failed, "\n".join(
        f"{r['client']} {r['scenario']} on {r['wire']}: {r['detail']}" for r in failed
    )
