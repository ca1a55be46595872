"""The provider simulator behaves like a model for clients' sake, over real HTTP on all three
wires: natural prompts pick the tool that fits (or none), a tool's result gets a text answer,
tool arguments and JSON answers validate against their schemas, and JSON mode follows the keys,
example or schema the prompt gives."""

from __future__ import annotations

import datetime
import enum
import json
import math
import uuid
from typing import Literal

import httpx
import jsonschema
import pydantic
import pytest

OPENAI_AUTH = {"Authorization": "Bearer sk-sim"}
ANTHROPIC_AUTH = {"x-api-key": "sk-ant-sim", "anthropic-version": "2023-06-01"}
GEMINI_AUTH = {"x-goog-api-key": "AIza-sim"}
WIRES = ["openai", "anthropic", "gemini"]
FORMATS = jsonschema.FormatChecker()

WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather for a city",
    "schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city, e.g. Berlin"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
        "additionalProperties": False,
    },
}
FLIGHTS = {
    "name": "search_flights",
    "description": "Search flights between two airports on a date",
    "schema": {
        "type": "object",
        "properties": {
            "origin": {"type": "string"},
            "destination": {"type": "string"},
            "date": {"type": "string", "format": "date"},
            "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
        },
        "required": ["origin", "destination", "date", "passengers"],
        "additionalProperties": False,
    },
}
TOOLS = [WEATHER, FLIGHTS]


@pytest.fixture
def http():
    with httpx.Client(timeout=5) as client:
        yield client


# --- one request shape, three wires ---


class Reply:
    """A wire's answer reduced to what these tests look at."""

    def __init__(self, text: str | None, calls: list[tuple[str, dict]], output_tokens: int):
        self.text = text
        self.calls = calls
        self.output_tokens = output_tokens


def ask(http, sim, wire, messages, *, tools=(), choice=None, system=None, json_schema=None):
    """`messages` in OpenAI's form (user/assistant with tool_calls/tool), translated per wire.
    `json_schema`: a schema dict, or True for JSON without a schema."""
    if wire == "openai":
        return _openai(http, sim, messages, tools, choice, system, json_schema)
    if wire == "anthropic":
        return _anthropic(http, sim, messages, tools, choice, system, json_schema)
    return _gemini(http, sim, messages, tools, choice, system, json_schema)


def _openai(http, sim, messages, tools, choice, system, json_schema):
    body = {"model": "gpt-4.1-mini", "messages": messages}
    if system:
        body["messages"] = [{"role": "system", "content": system}, *messages]
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t["name"],
                    "description": t["description"],
                    "parameters": t["schema"],
                },
            }
            for t in tools
        ]
    if choice is not None:
        body["tool_choice"] = (
            choice
            if choice in ("required", "none", "auto")
            else {"type": "function", "function": {"name": choice}}
        )
    if json_schema is True:
        body["response_format"] = {"type": "json_object"}
    elif json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": json_schema},
        }
    url = f"{sim.base_url('openai', 'openai')}/chat/completions"
    data = http.post(url, json=body, headers=OPENAI_AUTH).json()
    message = data["choices"][0]["message"]
    calls = [
        (c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in message.get("tool_calls") or ()
    ]
    return Reply(message["content"], calls, data["usage"]["completion_tokens"])


def _anthropic(http, sim, messages, tools, choice, system, json_schema):
    converted = []
    for m in messages:
        if m["role"] == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": m["tool_call_id"],
                "content": m["content"],
            }
            if converted and converted[-1]["role"] == "user":
                converted[-1]["content"].append(block)
            else:
                converted.append({"role": "user", "content": [block]})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            converted.append(
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": c["id"],
                            "name": c["function"]["name"],
                            "input": json.loads(c["function"]["arguments"]),
                        }
                        for c in m["tool_calls"]
                    ],
                }
            )
        elif m["role"] == "user" and converted and converted[-1]["role"] == "user":
            converted[-1]["content"].append({"type": "text", "text": m["content"]})
        else:
            converted.append(
                {"role": m["role"], "content": [{"type": "text", "text": m["content"]}]}
            )
    body = {"model": "claude-3-5-haiku-latest", "max_tokens": 1024, "messages": converted}
    if system:
        body["system"] = system
    if tools:
        body["tools"] = [
            {"name": t["name"], "description": t["description"], "input_schema": t["schema"]}
            for t in tools
        ]
    if choice is not None:
        body["tool_choice"] = {
            "required": {"type": "any"},
            "none": {"type": "none"},
            "auto": {"type": "auto"},
        }.get(choice, {"type": "tool", "name": choice})
    if json_schema is True:  # how the gateway asks Anthropic for JSON mode
        body["tools"] = [{"name": "json_output", "input_schema": {"type": "object"}}]
        body["tool_choice"] = {"type": "tool", "name": "json_output"}
    elif json_schema is not None:
        body["output_format"] = {"type": "json_schema", "schema": json_schema}
    url = f"{sim.base_url('anthropic', 'anthropic')}/v1/messages"
    data = http.post(url, json=body, headers=ANTHROPIC_AUTH).json()
    calls = [(b["name"], b["input"]) for b in data["content"] if b["type"] == "tool_use"]
    texts = [b["text"] for b in data["content"] if b["type"] == "text"]
    if json_schema is True and calls:
        texts, calls = [json.dumps(calls[0][1])], []
    return Reply(texts[0] if texts else None, calls, data["usage"]["output_tokens"])


def _gemini(http, sim, messages, tools, choice, system, json_schema):
    contents, names = [], {}
    for m in messages:
        if m["role"] == "tool":
            part = {
                "functionResponse": {
                    "name": names[m["tool_call_id"]],
                    "response": {"result": m["content"]},
                }
            }
            contents.append({"role": "user", "parts": [part]})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            parts = []
            for c in m["tool_calls"]:
                names[c["id"]] = c["function"]["name"]
                args = json.loads(c["function"]["arguments"])
                parts.append({"functionCall": {"name": c["function"]["name"], "args": args}})
            contents.append({"role": "model", "parts": parts})
        else:
            role = "model" if m["role"] == "assistant" else "user"
            contents.append({"role": role, "parts": [{"text": m["content"]}]})
    body = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    if tools:
        body["tools"] = [
            {
                "functionDeclarations": [
                    {
                        "name": t["name"],
                        "description": t["description"],
                        "parametersJsonSchema": t["schema"],
                    }
                    for t in tools
                ]
            }
        ]
    if choice is not None:
        config = {"mode": {"required": "ANY", "none": "NONE", "auto": "AUTO"}.get(choice, "ANY")}
        if config["mode"] == "ANY" and choice != "required":
            config["allowedFunctionNames"] = [choice]
        body["toolConfig"] = {"functionCallingConfig": config}
    if json_schema is not None:
        body["generationConfig"] = {"responseMimeType": "application/json"}
        if json_schema is not True:
            body["generationConfig"]["responseJsonSchema"] = json_schema
    url = f"{sim.base_url('google-ai-studio', 'gemini')}/models/gemini-3.1-flash-lite"
    data = http.post(f"{url}:generateContent", json=body, headers=GEMINI_AUTH).json()
    parts = data["candidates"][0]["content"]["parts"]
    calls = [
        (p["functionCall"]["name"], p["functionCall"]["args"]) for p in parts if "functionCall" in p
    ]
    texts = [p["text"] for p in parts if "text" in p]
    return Reply(texts[0] if texts else None, calls, data["usageMetadata"]["candidatesTokenCount"])


def user(text):
    return [{"role": "user", "content": text}]


def called(reply, tool):
    assert reply.calls, f"no tool was called; the answer was {reply.text!r}"
    (name, arguments), *_ = reply.calls
    assert name == tool["name"]
    jsonschema.validate(arguments, tool["schema"], format_checker=FORMATS)
    return arguments


# --- choosing a tool ---


@pytest.mark.parametrize("wire", WIRES)
def test_a_natural_prompt_picks_the_tool_that_fits_with_arguments_from_the_prompt(sim, http, wire):
    weather = ask(http, sim, wire, user("What's the weather like in Paris?"), tools=TOOLS)
    assert called(weather, WEATHER)["city"] == "Paris"

    prompt = "Find me flights from Lisbon to New York on 2026-05-03 for 2 adults"
    flights = called(ask(http, sim, wire, user(prompt), tools=TOOLS), FLIGHTS)
    assert flights == {
        "origin": "Lisbon",
        "destination": "New York",
        "date": "2026-05-03",
        "passengers": 2,
    }

    fahrenheit = ask(http, sim, wire, user("weather in Oslo in fahrenheit please"), tools=TOOLS)
    assert called(fahrenheit, WEATHER) == {"city": "Oslo", "unit": "fahrenheit"}


@pytest.mark.parametrize("wire", WIRES)
def test_no_tool_is_called_when_none_fits(sim, http, wire):
    for prompt in ("Tell me a joke about cats", "hi", "Write a poem about the city at night"):
        reply = ask(http, sim, wire, user(prompt), tools=TOOLS)
        assert reply.calls == [] and reply.text, prompt


@pytest.mark.parametrize("wire", WIRES)
def test_forcing_a_tool_still_calls_one(sim, http, wire):
    # Nothing fits "hi": "required" / "any" / ANY call the first tool; a named one that tool.
    first = ask(http, sim, wire, user("hi"), tools=TOOLS, choice="required")
    called(first, WEATHER)
    named = ask(http, sim, wire, user("hi"), tools=TOOLS, choice="search_flights")
    called(named, FLIGHTS)
    # "required" with a prompt that fits: the tool that fits.
    fits = ask(http, sim, wire, user("any flights to Rome?"), tools=TOOLS, choice="required")
    assert called(fits, FLIGHTS)["destination"] == "Rome"
    none = ask(http, sim, wire, user("What's the weather in Paris?"), tools=TOOLS, choice="none")
    assert none.calls == [] and none.text


def _after_result(prompt, name, arguments, result, *follow_up):
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }
    return [
        *user(prompt),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": result},
        *({"role": "user", "content": text} for text in follow_up),
    ]


@pytest.mark.parametrize("wire", WIRES)
def test_after_a_tool_result_the_answer_is_text_that_reports_it(sim, http, wire):
    conversation = _after_result(
        "What's the weather like in Paris?",
        "get_weather",
        {"city": "Paris"},
        '{"temperature": 21, "conditions": "sunny"}',
    )
    reply = ask(http, sim, wire, conversation, tools=TOOLS)
    assert reply.calls == []  # the loop ends, though the prompt still speaks of weather
    assert "21" in reply.text and "sunny" in reply.text and "get_weather" in reply.text
    assert reply.output_tokens == len(reply.text.split())  # usage counts what was said
    # Forcing doesn't loop either.
    assert ask(http, sim, wire, conversation, tools=TOOLS, choice="required").calls == []

    # Unless the words sent after the result ask for a tool by name.
    asked = _after_result(
        "What's the weather like in Paris?",
        "get_weather",
        {"city": "Paris"},
        "Sunny, 21 C",
        "Thanks. Now use search_flights from Paris to Rome on 2026-06-01 for 1 person.",
    )
    again = ask(http, sim, wire, asked, tools=TOOLS)
    assert called(again, FLIGHTS)["destination"] == "Rome"


def test_an_agent_loop_ends(sim, http):
    """A minimal agent: call tools until the model answers in text. It ends after one call."""
    messages = user("What's the weather like in Paris?")
    for turn in range(5):  # noqa: B007 - read after the loop
        reply = ask(http, sim, "openai", messages, tools=TOOLS)
        if not reply.calls:
            break
        (name, arguments), *_ = reply.calls
        messages = _after_result(messages[0]["content"], name, arguments, '{"temp_c": 18}')
    assert turn == 1 and "18" in reply.text


def test_choices_are_deterministic(sim, http):
    prompt = user("Find me flights from Lisbon to Madrid for 3 people")
    first = ask(http, sim, "openai", prompt, tools=TOOLS)
    assert ask(http, sim, "openai", prompt, tools=TOOLS).calls == first.calls


# --- arguments and JSON that satisfy a schema ---


class Priority(enum.StrEnum):
    LOW = "low"
    HIGH = "high"


class Address(pydantic.BaseModel):
    street: str
    city: str
    postcode: str = pydantic.Field(pattern=r"^\d{5}$")


class Cat(pydantic.BaseModel):
    kind: Literal["cat"] = "cat"
    lives: int = pydantic.Field(ge=1, le=9)


class Dog(pydantic.BaseModel):
    kind: Literal["dog"] = "dog"
    good: bool = True


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=2, max_length=40)
    age: int = pydantic.Field(ge=0, le=130)
    email: str | None = None
    id: uuid.UUID
    born: datetime.date
    seen: datetime.datetime
    priority: Priority = Priority.LOW
    addresses: list[Address] = pydantic.Field(min_length=1, max_length=3)
    matrix: list[list[float]] = []
    pet: Cat | Dog = pydantic.Field(discriminator="kind")
    friends: list[Person] = []
    scores: dict[str, int] = {}
    tags: set[str] = set()
    ratio: float = pydantic.Field(gt=0, lt=1)
    step: int = pydantic.Field(multiple_of=5, ge=12)


SCHEMAS = {
    "pydantic": Person.model_json_schema(),
    "formats": {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "mail": {"type": "string", "format": "email"},
            "site": {"type": "string", "format": "uri"},
            "ref": {"type": "string", "format": "uuid"},
            "code": {"type": "string", "minLength": 12, "maxLength": 16},
            "kind": {"const": "event"},
            "level": {"type": "integer", "default": 3, "minimum": 1, "maximum": 5},
        },
        "required": ["when", "day", "mail", "site", "ref", "code", "kind", "level"],
    },
    "nested_arrays": {
        "type": "object",
        "properties": {
            "grid": {
                "type": "array",
                "minItems": 2,
                "maxItems": 2,
                "items": {
                    "type": "array",
                    "minItems": 3,
                    "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5},
                },
            },
            "labels": {
                "type": "array",
                "items": {"enum": ["a", "b", "c"]},
                "uniqueItems": True,
                "minItems": 3,
            },
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 10}]},
            "either": {"oneOf": [{"type": "string", "maxLength": 2}, {"type": "boolean"}]},
        },
        "required": ["grid", "labels", "maybe", "either"],
        "additionalProperties": False,
    },
    "refs": {
        "definitions": {
            "node": {
                "type": "object",
                "properties": {
                    "value": {"type": "integer"},
                    "children": {"type": "array", "items": {"$ref": "#/definitions/node"}},
                },
                "required": ["value", "children"],
            }
        },
        "type": "object",
        "properties": {"root": {"$ref": "#/definitions/node"}, "note": {"type": "null"}},
        "required": ["root", "note"],
    },
}
PROMPT = (
    "Ada Lovelace, 36, lives at 12 Baker Street in London; email ada@example.org, "
    "born 1815-12-10, last seen 2026-02-01 10:30. See https://example.org/ada."
)


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_tool_arguments_and_json_answers_validate_against_the_schema(sim, http, wire, name):
    schema = SCHEMAS[name]
    tool = {"name": "record", "description": "Record it", "schema": schema}
    for prompt in (PROMPT, "hi"):
        reply = ask(http, sim, wire, user(prompt), tools=[tool], choice="record")
        called(reply, tool)
        answer = ask(http, sim, wire, user(prompt), json_schema=schema)
        value = json.loads(answer.text)
        jsonschema.validate(value, schema, format_checker=FORMATS)
        # JSON is counted as it is tokenized: by characters.
        assert answer.output_tokens == math.ceil(len(answer.text) / 4)
        if name == "pydantic":
            Person.model_validate(value)


def test_json_values_come_from_the_prompt(sim, http):
    value = json.loads(ask(http, sim, "openai", user(PROMPT), json_schema=SCHEMAS["pydantic"]).text)
    assert value["name"] == "Ada Lovelace" and value["age"] == 36
    assert value["born"] == "1815-12-10" and value["seen"] == "2026-02-01T10:30:00Z"
    assert value["email"] == "ada@example.org"
    assert value["addresses"][0]["city"] == "London"


@pytest.mark.parametrize("wire", WIRES)
def test_json_mode_follows_the_keys_the_prompt_names(sim, http, wire):
    named = "Return a JSON object with keys name and age. Grace Hopper was 85."
    assert json.loads(ask(http, sim, wire, user(named), json_schema=True).text) == {
        "name": "Grace Hopper",
        "age": 85,
    }
    fields = (
        "Give me JSON with the fields `title` (string), `year` (integer) and `genres`. "
        'The film "Alien" came out in 1979.'
    )
    value = json.loads(ask(http, sim, wire, user(fields), json_schema=True).text)
    assert value["title"] == "Alien" and value["year"] == 1979
    assert isinstance(value["genres"], list)

    example = 'Answer in this format: {"city": "...", "population": 0}. Tell me about Lyon.'
    value = json.loads(ask(http, sim, wire, user(example), json_schema=True).text)
    assert set(value) == {"city", "population"} and value["city"] == "Lyon"
    assert isinstance(value["population"], int)

    plain = json.loads(ask(http, sim, wire, user("Tell me about Lyon"), json_schema=True).text)
    assert isinstance(plain, dict) and plain  # a small object all the same


@pytest.mark.parametrize("wire", WIRES)
def test_json_mode_follows_a_schema_in_the_system_prompt(sim, http, wire):
    # instructor's JSON modes put the schema in the system prompt; LangChain's format
    # instructions show an example schema before the real one.
    schema = {
        "properties": {
            "name": {"title": "Name", "type": "string"},
            "age": {"title": "Age", "type": "integer"},
        },
        "required": ["name", "age"],
        "title": "User",
        "type": "object",
    }
    system = (
        "As a genius expert, your task is to understand the content and provide the parsed "
        "objects in json that match the following json_schema:\n\n"
        f"{json.dumps(schema, indent=2)}\n\n"
        "Make sure to return an instance of the JSON, not the schema itself"
    )
    reply = ask(http, sim, wire, user("Jason is 25 years old"), system=system, json_schema=True)
    assert json.loads(reply.text) == {"name": "Jason", "age": 25}

    langchain = (
        "The output should be formatted as a JSON instance that conforms to the JSON schema "
        'below.\n\nAs an example, for the schema {"properties": {"foo": {"title": "Foo", '
        '"description": "a list of strings", "type": "array", "items": {"type": "string"}}}, '
        '"required": ["foo"]}\nthe object {"foo": ["bar", "baz"]} is a well-formatted instance '
        'of the schema. The object {"properties": {"foo": ["bar", "baz"]}} is not '
        f"well-formatted.\n\nHere is the output schema:\n```\n{json.dumps(schema)}\n```"
    )
    reply = ask(http, sim, wire, user(f"{langchain}\n\nJason is 25 years old"), json_schema=True)
    assert json.loads(reply.text) == {"name": "Jason", "age": 25}


@pytest.mark.parametrize("wire", WIRES)
def test_streamed_json_is_the_same_answer_with_the_same_usage(sim, http, wire):
    schema = SCHEMAS["formats"]
    prompt = "Plan an event on 2026-07-14"
    if wire == "openai":
        body = {
            "model": "gpt-4.1-mini",
            "messages": user(prompt),
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "e", "schema": schema},
            },
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        url = f"{sim.base_url('openai', 'openai')}/chat/completions"
        lines = http.post(url, json=body, headers=OPENAI_AUTH).text.split("\n")
        chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        tokens = chunks[-1]["usage"]["completion_tokens"]
    elif wire == "anthropic":
        body = {
            "model": "claude-3-5-haiku-latest",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
            "output_format": {"type": "json_schema", "schema": schema},
            "stream": True,
        }
        url = f"{sim.base_url('anthropic', 'anthropic')}/v1/messages"
        events = http.post(url, json=body, headers=ANTHROPIC_AUTH).text.strip().split("\n\n")
        data = [json.loads(e.split("\ndata: ", 1)[1]) for e in events]
        text = "".join(
            d["delta"].get("text", "") for d in data if d["type"] == "content_block_delta"
        )
        tokens = data[-2]["usage"]["output_tokens"]
    else:
        body = {
            "contents": [{"role": "user", "parts": [{"text": prompt}]}],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseJsonSchema": schema,
            },
        }
        url = f"{sim.base_url('google-ai-studio', 'gemini')}/models/gemini-3.1-flash-lite"
        raw = http.post(
            f"{url}:streamGenerateContent", params={"alt": "sse"}, json=body, headers=GEMINI_AUTH
        ).text
        chunks = [json.loads(e[6:]) for e in raw.split("\r\n\r\n") if e.startswith("data: ")]
        text = "".join(c["candidates"][0]["content"]["parts"][0].get("text", "") for c in chunks)
        tokens = chunks[-1]["usageMetadata"]["candidatesTokenCount"]
    whole = ask(http, sim, wire, user(prompt), json_schema=schema)
    assert text == whole.text and tokens == whole.output_tokens == math.ceil(len(text) / 4)
    value = json.loads(text)
    jsonschema.validate(value, schema, format_checker=FORMATS)
    assert value["day"] == "2026-07-14"
