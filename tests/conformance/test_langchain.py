"""LangChain's ChatOpenAI (Chat Completions) and ChatAnthropic (Messages) on each wire."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from tests.conformance.conftest import WIRES, only

CHAT_OPENAI = "LangChain ChatOpenAI"
CHAT_ANTHROPIC = "LangChain ChatAnthropic"
# The client is a parameter: the conformance marker takes it from there.
BOTH = pytest.mark.parametrize("client", [CHAT_OPENAI, CHAT_ANTHROPIC])


class City(BaseModel):
    """A city and how many people live there."""

    name: str
    population: int


@tool
def get_weather(city: str) -> str:
    """The current weather of a city."""
    return "Sunny, 21 C"


@pytest.fixture
def chat_model(gateway):
    """chat_model(client, wire, max_tokens): the LangChain chat model pinned to the wire."""
    from langchain_anthropic import ChatAnthropic
    from langchain_openai import ChatOpenAI

    base_url, secret = gateway

    def make(client: str, wire: str, max_tokens: int = 8):
        model, provider = WIRES[wire]
        if client == CHAT_OPENAI:
            return ChatOpenAI(
                model=model,
                base_url=base_url,
                api_key=secret,
                max_tokens=max_tokens,
                max_retries=0,
                timeout=30,
                stream_usage=True,
                extra_body=only(provider),
            )
        return ChatAnthropic(
            model=model,
            base_url=base_url.removesuffix("/v1"),
            api_key=secret,
            max_tokens=max_tokens,
            max_retries=0,
            default_request_timeout=30,
            model_kwargs={"extra_body": only(provider)},
        )

    return make


@BOTH
@pytest.mark.parametrize("wire", list(WIRES))
@pytest.mark.conformance(feature="invoke")
def test_invoke(chat_model, client, wire):
    reply = chat_model(client, wire).invoke("Hello there")
    assert isinstance(reply.content, str) and reply.content
    assert 0 < reply.usage_metadata["output_tokens"] <= 8


@BOTH
@pytest.mark.parametrize("wire", list(WIRES))
@pytest.mark.conformance(feature="stream")
def test_stream(chat_model, client, wire):
    chunks = list(chat_model(client, wire).stream("Stream please"))
    text = "".join(c.content for c in chunks if isinstance(c.content, str))
    assert text
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.usage_metadata["output_tokens"] == 8


@BOTH
@pytest.mark.parametrize("wire", list(WIRES))
@pytest.mark.conformance(feature="with_structured_output")
def test_with_structured_output(chat_model, client, wire):
    city = (
        chat_model(client, wire, max_tokens=64)
        .with_structured_output(City)
        .invoke("The largest city of France.")
    )
    assert isinstance(city, City) and city.name and isinstance(city.population, int)


@BOTH
@pytest.mark.parametrize("wire", list(WIRES))
@pytest.mark.conformance(feature="bind_tools round trip")
def test_bind_tools(chat_model, client, wire):
    model = chat_model(client, wire, max_tokens=64).bind_tools([get_weather])
    messages = [HumanMessage("What is the weather in Paris? Use get_weather.")]
    first = model.invoke(messages)
    [call] = first.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    messages += [first, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    final = model.invoke(messages)
    assert not final.tool_calls and final.text
