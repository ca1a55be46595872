"""/v1/responses with the official openai SDK against the gateway served over HTTP, providers
simulated: each wire, streams (the SDK's accumulating helper and the raw event order), function
calling, structured output, reasoning, stored responses and their tenant isolation, errors,
and billing."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import openai
import pytest
from pydantic import BaseModel

from routing.models import StoredResponse

HERO = "google/gemini-3.1-flash-lite"
WIRES = [
    pytest.param(HERO, None, id="gemini"),
    pytest.param("openai/gpt-4.1-mini", None, id="openai"),
    pytest.param(
        "anthropic/claude-3.5-haiku", {"provider": {"only": ["anthropic"]}}, id="anthropic"
    ),
]
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def _error(excinfo) -> dict:
    return excinfo.value.body if isinstance(excinfo.value.body, dict) else {}


def _cost(response) -> Decimal:
    return Decimal(str(response.usage.model_extra["cost"]))


@pytest.mark.parametrize(("model", "extra"), WIRES)
def test_create_with_string_input_on_each_wire(openai_client, generation_events, model, extra):
    response = openai_client.responses.create(
        model=model, input="Hello there", max_output_tokens=12, extra_body=extra
    )
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status in ("completed", "incomplete")
    assert response.model == model
    assert response.output_text
    [message] = response.output
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "output_text"
    assert message.content[0].annotations == []
    assert response.usage.output_tokens == 12
    assert response.usage.total_tokens == response.usage.input_tokens + 12
    assert _cost(response) > 0
    # The response is its generation: the logs and the ledger name the same call.
    assert [e.generation_id for e in generation_events] == [
        "gen-" + response.id.removeprefix("resp_")
    ]
    if extra:
        assert response.model_extra["provider"] == "anthropic"


@pytest.mark.parametrize(("model", "extra"), WIRES)
def test_create_with_items_and_instructions_on_each_wire(openai_client, sim, model, extra):
    response = openai_client.responses.create(
        model=model,
        instructions="Answer in one short sentence.",
        input=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Tell me about Paris"}],
            },
        ],
        max_output_tokens=20,
        temperature=0.5,
        metadata={"ticket": "42"},
        extra_body=extra,
    )
    assert response.output_text
    assert response.instructions == "Answer in one short sentence."
    assert response.metadata == {"ticket": "42"}
    assert response.temperature == 0.5
    assert response.max_output_tokens == 20
    # Instructions and three turns reached the provider: more prompt than the last turn alone.
    assert response.usage.input_tokens > 10


def test_max_output_tokens_reached_is_incomplete(openai_client, sim):
    sim.set("google-ai-studio", output_tokens=50)
    response = openai_client.responses.create(model=HERO, input="Long story", max_output_tokens=8)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"


# Streams -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "extra"), WIRES)
def test_stream_helper_accumulates_the_response(openai_client, sim, model, extra):
    sim.set("google-ai-studio", output_tokens=20)
    with openai_client.responses.stream(
        model=model, input="Stream please", max_output_tokens=20, extra_body=extra
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) > 1
    assert final.output_text == "".join(deltas)
    assert final.status == "completed" or final.incomplete_details.reason == "max_output_tokens"
    assert final.usage.output_tokens > 0
    assert _cost(final) > 0


def test_raw_stream_event_order(openai_client, sim):
    sim.set("google-ai-studio", output_tokens=10)
    events = list(
        openai_client.responses.create(
            model=HERO, input="Say hi", max_output_tokens=50, stream=True
        )
    )
    types = [e.type for e in events]
    deltas = types.count("response.output_text.delta")
    assert deltas >= 2
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    ids = {e.response.id for e in events if hasattr(e, "response")}
    assert len(ids) == 1
    item_id = events[2].item.id
    assert all(e.item_id == item_id for e in events if hasattr(e, "item_id"))
    assert all(e.output_index == 0 for e in events if hasattr(e, "output_index"))
    done = events[-1].response
    assert done.status == "completed"
    assert done.usage.output_tokens == 10
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert done.output[0].content[0].text == text
    assert events[-4].text == text


def test_streamed_response_is_stored_and_retrievable(openai_client, sim):
    sim.set("google-ai-studio", output_tokens=5)
    with openai_client.responses.stream(model=HERO, input="Hi", max_output_tokens=10) as stream:
        final = stream.get_final_response()
    again = openai_client.responses.retrieve(final.id)
    assert again.output_text == final.output_text
    assert again.usage.output_tokens == final.usage.output_tokens


# Tools ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "extra"), WIRES)
def test_function_calling_round_trip(openai_client, model, extra):
    question = [{"role": "user", "content": "What's the weather in Paris? Use get_weather."}]
    first = openai_client.responses.create(
        model=model, input=question, tools=[WEATHER], tool_choice="required", extra_body=extra
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls, first.output
    call = calls[0]
    assert call.name == "get_weather"
    assert call.call_id
    assert "city" in json.loads(call.arguments)
    assert first.tools[0].name == "get_weather"
    final = openai_client.responses.create(
        model=model,
        tools=[WEATHER],
        input=[
            *question,
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 18}'},
        ],
        extra_body=extra,
    )
    assert final.output_text
    assert not [item for item in final.output if item.type == "function_call"]


def test_forced_function_call_streams_its_arguments(openai_client):
    with openai_client.responses.stream(
        model=HERO,
        input="Weather in Oslo?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" in types
    assert types.index("response.function_call_arguments.done") < types.index(
        "response.output_item.done"
    )
    [call] = [item for item in final.output if item.type == "function_call"]
    assert call.name == "get_weather"
    assert json.loads(call.arguments)["city"]
    assert final.tool_choice.name == "get_weather"


# Structured output and reasoning ---------------------------------------------------------------


class Person(BaseModel):
    name: str
    age: int


@pytest.mark.parametrize(("model", "extra"), WIRES)
def test_parse_with_a_pydantic_model(openai_client, model, extra):
    response = openai_client.responses.parse(
        model=model, input="A person", text_format=Person, extra_body=extra
    )
    person = response.output_parsed
    assert isinstance(person, Person)
    assert isinstance(person.name, str) and isinstance(person.age, int)
    assert response.text.format.type == "json_schema"


def test_json_object_format(openai_client):
    response = openai_client.responses.create(
        model=HERO, input="A JSON object please", text={"format": {"type": "json_object"}}
    )
    assert isinstance(json.loads(response.output_text), dict)


def test_reasoning_effort_gives_a_reasoning_item(openai_client):
    response = openai_client.responses.create(
        model=HERO,
        input="Think hard",
        reasoning={"effort": "high", "summary": "auto"},
        max_output_tokens=400,
    )
    kinds = [item.type for item in response.output]
    assert kinds[0] == "reasoning" and "message" in kinds
    assert response.output[0].summary[0].type == "summary_text"
    assert response.output[0].summary[0].text
    assert response.usage.output_tokens_details.reasoning_tokens > 0
    assert response.reasoning.effort == "high"


def test_streamed_reasoning_summary(openai_client):
    with openai_client.responses.stream(
        model=HERO,
        input="Think hard",
        reasoning={"effort": "low", "summary": "auto"},
        max_output_tokens=400,
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[2:4] == ["response.output_item.added", "response.reasoning_summary_part.added"]
    assert "response.reasoning_summary_text.delta" in types
    order = [
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.content_part.added",
        "response.output_text.done",
        "response.completed",
    ]
    assert [types.index(t) for t in order] == sorted(types.index(t) for t in order)
    summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert final.output[0].type == "reasoning"
    assert final.output[0].summary[0].text == summary
    assert final.output[1].type == "message"


def test_reasoning_items_passed_back_are_accepted(openai_client):
    first = openai_client.responses.create(
        model=HERO, input="Think", reasoning={"effort": "low", "summary": "auto"}
    )
    follow = openai_client.responses.create(
        model=HERO,
        input=[
            {"role": "user", "content": "Think"},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"role": "user", "content": "And now?"},
        ],
    )
    assert follow.output_text


# Stored responses ------------------------------------------------------------------------------


def test_previous_response_id_continues_the_conversation(openai_client, sim):
    first = openai_client.responses.create(model=HERO, input="My name is Ada.", max_output_tokens=8)
    alone = openai_client.responses.create(model=HERO, input="What is my name?", store=False)
    second = openai_client.responses.create(
        model=HERO, input="What is my name?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    # The first turn and its answer went to the provider again.
    assert second.usage.input_tokens > alone.usage.input_tokens
    third = openai_client.responses.create(
        model=HERO, input="And again?", previous_response_id=second.id
    )
    assert third.usage.input_tokens > second.usage.input_tokens


def test_retrieve_and_delete(openai_client):
    created = openai_client.responses.create(model=HERO, input="Keep me", max_output_tokens=8)
    fetched = openai_client.responses.retrieve(created.id)
    assert fetched.id == created.id
    assert fetched.output_text == created.output_text
    assert _cost(fetched) == _cost(created)
    items = openai_client.responses.input_items.list(created.id)
    assert [i.type for i in items.data] == ["message"]
    assert items.data[0].content[0].text == "Keep me"
    deleted = openai_client.responses.delete(created.id)
    assert deleted is None or True  # the SDK returns None for a 200 delete
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(created.id)


def test_delete_answers_the_deleted_object(gateway, openai_client):
    base_url, secret = gateway
    created = openai_client.responses.create(model=HERO, input="Bye", max_output_tokens=4)
    answer = httpx.delete(
        f"{base_url}/responses/{created.id}", headers={"Authorization": f"Bearer {secret}"}
    )
    assert answer.status_code == 200
    assert answer.json() == {"id": created.id, "object": "response.deleted", "deleted": True}


def test_store_false_is_not_retrievable(openai_client):
    response = openai_client.responses.create(model=HERO, input="Forget me", store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as excinfo:
        openai_client.responses.create(
            model=HERO, input="Continue", previous_response_id=response.id
        )
    assert _error(excinfo)["param"] == "previous_response_id"


def test_another_tenant_gets_404_for_every_response_id(gateway, openai_client, charlie, sim):
    from openai import OpenAI

    from accounts import services

    created = openai_client.responses.create(model=HERO, input="Acme's secret", max_output_tokens=4)
    base_url, _ = gateway
    _, secret = services.api_key_create(
        organization=charlie.org, created_by=charlie.user, name="globex"
    )
    other = OpenAI(base_url=base_url, api_key=secret, max_retries=0)
    with pytest.raises(openai.NotFoundError) as excinfo:
        other.responses.retrieve(created.id)
    assert _error(excinfo)["code"] == "not_found"
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(created.id)
    before = sim.stats("google-ai-studio")["requests"]
    with pytest.raises(openai.NotFoundError) as excinfo:
        other.responses.create(model=HERO, input="Continue", previous_response_id=created.id)
    assert _error(excinfo)["param"] == "previous_response_id"
    assert sim.stats("google-ai-studio")["requests"] == before  # refused before any call
    assert openai_client.responses.retrieve(created.id).id == created.id  # still there


# Errors --------------------------------------------------------------------------------------


def test_missing_model_is_400(openai_client):
    with pytest.raises(openai.BadRequestError) as excinfo:
        openai_client.responses.create(model=None, input="hi")  # type: ignore[arg-type]
    assert _error(excinfo)["param"] == "model"
    assert _error(excinfo)["type"] == "invalid_request_error"


def test_built_in_tools_are_refused(openai_client, sim):
    with pytest.raises(openai.BadRequestError) as excinfo:
        openai_client.responses.create(
            model=HERO, input="Search the news", tools=[{"type": "web_search"}]
        )
    error = _error(excinfo)
    assert error["param"] == "tools[0].type"
    assert "web_search" in error["message"]
    with pytest.raises(openai.BadRequestError):  # a stream is refused before it starts too
        with openai_client.responses.stream(
            model=HERO, input="Search", tools=[{"type": "file_search", "vector_store_ids": ["v"]}]
        ) as stream:
            list(stream)
    assert sim.stats("google-ai-studio")["requests"] == 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": HERO}, "input"),
        ({"model": HERO, "input": []}, "input"),
        ({"model": HERO, "input": [{"type": "message", "role": "robot", "content": "x"}]}, None),
        ({"model": HERO, "input": [{"type": "computer_call_output"}]}, "input[0].type"),
        ({"model": HERO, "input": "hi", "max_output_tokens": 100_000}, "max_output_tokens"),
        ({"model": HERO, "input": "hi", "temperature": 7}, "temperature"),
        ({"model": HERO, "input": "hi", "reasoning": {"effort": "huge"}}, "reasoning.effort"),
        ({"model": HERO, "input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format"),
        ({"model": HERO, "input": "hi", "background": True}, "background"),
        ({"model": HERO, "input": "hi", "previous_response_id": "nope"}, "previous_response_id"),
        ({"model": HERO, "input": "hi", "tool_choice": {"type": "file_search"}}, "tool_choice"),
    ],
)
def test_bad_requests_are_400_in_the_openai_shape(gateway, sim, body, param):
    base_url, secret = gateway
    answer = httpx.post(
        f"{base_url}/responses", json=body, headers={"Authorization": f"Bearer {secret}"}
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    if param:
        assert error["param"] == param
    assert sim.stats("google-ai-studio")["requests"] == 0


def test_unknown_model_is_404(openai_client):
    with pytest.raises(openai.NotFoundError) as excinfo:
        openai_client.responses.create(model="gemini-3.1-flash-lyte", input="hi")
    assert _error(excinfo)["code"] == "model_not_found"


def test_upstream_failure_before_streaming_is_502(openai_client, sim):
    for slug in ("google-ai-studio", "vertex-ai", "openrouter", "private-vllm"):
        sim.set(slug, error_rate=1.0, error_kind="500")
    with pytest.raises(openai.InternalServerError) as excinfo:
        openai_client.responses.create(model=HERO, input="hi")
    assert excinfo.value.status_code == 502
    assert _error(excinfo)["code"] == "upstream_error"
    with pytest.raises(openai.InternalServerError) as excinfo:
        openai_client.responses.create(model=HERO, input="hi", stream=True)
    assert excinfo.value.status_code == 502


# Billing -------------------------------------------------------------------------------------


def test_usage_is_billed_to_the_ledger(openai_client, alice):
    from billing import services
    from billing.models import LedgerEntry

    response = openai_client.responses.create(model=HERO, input="Bill me", max_output_tokens=16)
    with openai_client.responses.stream(model=HERO, input="Me too", max_output_tokens=16) as s:
        streamed = s.get_final_response()
    services.usage_flush()
    entries = {
        e.reference: -e.amount_nanousd
        for e in LedgerEntry.objects.filter(organization=alice.org, kind=LedgerEntry.Kind.USAGE)
    }
    for answer in (response, streamed):
        generation = "gen-" + answer.id.removeprefix("resp_")
        assert entries[generation] == int(_cost(answer) * 1_000_000_000) > 0
    assert StoredResponse.objects.filter(organization=alice.org).count() == 2


def test_stream_cut_midway_ends_with_error_and_failed(gateway, sim, generation_events):
    base_url, secret = gateway
    sim.set("google-ai-studio", error_rate=1, error_kind="cut", cut_after_tokens=3)
    with httpx.stream(
        "POST",
        f"{base_url}/responses",
        json={"model": HERO, "input": "Hi", "max_output_tokens": 16, "stream": True},
        headers={"Authorization": f"Bearer {secret}"},
    ) as answer:
        assert answer.status_code == 200
        lines = list(answer.iter_lines())
    kinds = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    events = [
        json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")
    ]
    assert [e["type"] for e in events] == kinds
    assert kinds[-2:] == ["error", "response.failed"]
    assert events[-2]["code"] == "stream_cut"
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "server_error"
    # What was delivered stays in the output, closed as incomplete.
    assert failed["output"][0]["status"] == "incomplete"
    assert failed["output"][0]["content"][0]["text"]
    assert "response.output_item.done" in kinds
    assert generation_events[-1].error == "stream_cut"
    assert generation_events[-1].usage.completion_tokens >= 3


def test_input_items_are_listed_newest_first_by_default(openai_client):
    created = openai_client.responses.create(
        model=HERO,
        input=[
            {"role": "user", "content": "One"},
            {"role": "assistant", "content": "Two"},
            {"role": "user", "content": "Three"},
        ],
        max_output_tokens=4,
    )
    texts = [i.content[0].text for i in openai_client.responses.input_items.list(created.id)]
    assert texts == ["Three", "Two", "One"]
    page = openai_client.responses.input_items.list(created.id, order="asc", limit=2)
    assert [i.content[0].text for i in page.data] == ["One", "Two"]
    assert page.has_more is True
    rest = openai_client.responses.input_items.list(created.id, order="asc", after=page.data[-1].id)
    assert [i.content[0].text for i in rest.data] == ["Three"]


# Hot path ------------------------------------------------------------------------------------


@pytest.fixture
def storage_sql(monkeypatch):
    """The SQL run on the stored responses' table from any thread (the server's too)."""
    from django.db.backends import utils

    seen: list[str] = []
    for name in ("execute", "executemany"):
        original = getattr(utils.CursorWrapper, name)

        def recording(self, sql, *args, _original=original, **kwargs):
            if "routing_storedresponse" in str(sql):
                seen.append(str(sql))
            return _original(self, sql, *args, **kwargs)

        monkeypatch.setattr(utils.CursorWrapper, name, recording)
    return seen


def test_no_storage_query_without_store_and_one_lookup_to_continue(openai_client, storage_sql):
    """A response that isn't stored costs no query of its own; continuing a stored one costs
    its one lookup (and a stored one's write goes behind its answer)."""
    first = openai_client.responses.create(model=HERO, input="Hi", max_output_tokens=4)
    openai_client.responses.retrieve(first.id)  # written by now
    storage_sql.clear()
    openai_client.responses.create(model=HERO, input="Hi", max_output_tokens=4, store=False)
    assert storage_sql == []
    openai_client.responses.create(
        model=HERO, input="Again", max_output_tokens=4, store=False, previous_response_id=first.id
    )
    assert len(storage_sql) == 1 and storage_sql[0].lstrip().upper().startswith("SELECT")


def test_a_client_leaving_midstream_is_billed_what_was_generated(gateway, sim, generation_events):
    import time

    base_url, secret = gateway
    sim.set("google-ai-studio", output_tokens=60, tokens_per_second=100)
    with httpx.stream(
        "POST",
        f"{base_url}/responses",
        json={"model": HERO, "input": "Long", "max_output_tokens": 60, "stream": True},
        headers={"Authorization": f"Bearer {secret}"},
    ) as answer:
        for line in answer.iter_lines():
            if line.startswith("data: ") and "output_text.delta" in line:
                response_id = json.loads(line.removeprefix("data: "))["item_id"]
                break
    generation = "gen-" + response_id.removeprefix("msg_")
    deadline = time.monotonic() + 10
    while not generation_events and time.monotonic() < deadline:
        time.sleep(0.05)
    [event] = generation_events
    assert event.generation_id == generation
    assert event.error == "client_disconnected"
    assert event.usage.completion_tokens == 60  # read to its end upstream, and billed
