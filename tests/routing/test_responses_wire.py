"""The Responses wire on its own: a Responses body as a chat body, a chat answer as a Response,
a chat chunk stream as typed Responses events (checked by the openai SDK's own models)."""

from __future__ import annotations

import orjson
import pytest
from openai._types import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from routing.errors import GatewayError
from routing.gateway import usd_fragment
from routing.validation import parse_chat
from routing.wires import responses as wire

HERO = "google/gemini-3.1-flash-lite"
EVENTS = TypeAdapter(ResponseStreamEvent)


def _chat(body: dict, history: list | None = None) -> dict:
    request = wire.read_request(body)
    chat = request.chat_body(history)
    parse_chat(chat)  # what the chat path accepts
    return chat


def test_string_input_and_instructions_become_messages():
    chat = _chat({"model": HERO, "input": "Hi", "instructions": "Be brief."})
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert chat["model"] == HERO
    assert "store" not in chat and "instructions" not in chat and "input" not in chat


def test_items_become_chat_turns():
    chat = _chat(
        {
            "model": HERO,
            "input": [
                {"role": "developer", "content": [{"type": "input_text", "text": "Rules."}]},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Look"},
                        {"type": "input_image", "image_url": "https://example.com/a.png"},
                    ],
                },
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {
                    "type": "message",
                    "role": "assistant",
                    "id": "msg_1",
                    "status": "completed",
                    "content": [
                        {"type": "output_text", "text": "Let me check.", "annotations": []}
                    ],
                },
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_a",
                    "name": "get_weather",
                    "arguments": '{"city": "Paris"}',
                },
                {
                    "type": "function_call",
                    "call_id": "call_b",
                    "name": "get_weather",
                    "arguments": '{"city": "Oslo"}',
                },
                {"type": "function_call_output", "call_id": "call_a", "output": "18C"},
                {
                    "type": "function_call_output",
                    "call_id": "call_b",
                    "output": [{"type": "input_text", "text": "3C"}],
                },
            ],
        }
    )
    assert chat["messages"] == [
        {"role": "developer", "content": "Rules."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "3C"},
    ]


def test_history_goes_between_instructions_and_input():
    history = [{"role": "user", "content": "Earlier"}, {"role": "assistant", "content": "Yes"}]
    chat = _chat({"model": HERO, "input": "Now", "instructions": "Sys"}, history)
    assert [m["content"] for m in chat["messages"]] == ["Sys", "Earlier", "Yes", "Now"]


def test_options_map_to_chat_fields():
    chat = _chat(
        {
            "model": HERO,
            "input": "Hi",
            "max_output_tokens": 64,
            "temperature": 0.2,
            "top_p": 0.9,
            "parallel_tool_calls": False,
            "user": "u1",
            "metadata": {"a": "b"},
            "store": True,
            "tools": [
                {
                    "type": "function",
                    "name": "f",
                    "parameters": {"type": "object", "properties": {}},
                    "strict": True,
                }
            ],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "person",
                    "schema": {"type": "object"},
                    "strict": True,
                }
            },
            "reasoning": {"effort": "low", "summary": "auto"},
            "provider": {"only": ["vertex-ai"]},
            "stream": True,
        }
    )
    assert chat["max_tokens"] == 64
    assert (chat["temperature"], chat["top_p"], chat["parallel_tool_calls"]) == (0.2, 0.9, False)
    assert chat["user"] == "u1"
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "f",
                "parameters": {"type": "object", "properties": {}},
                "strict": True,
            },
        }
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": {"type": "object"}, "strict": True},
    }
    assert chat["reasoning_effort"] == "low"
    assert chat["include_reasoning"] is True
    assert chat["provider"] == {"only": ["vertex-ai"]}
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    # Ours, not the provider's: never sent on.
    assert "metadata" not in chat and "store" not in chat and "text" not in chat


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi"}, "model"),
        ({"model": HERO}, "input"),
        ({"model": HERO, "input": 5}, "input"),
        ({"model": HERO, "input": [{"type": "message", "role": "tool", "content": "x"}]}, None),
        ({"model": HERO, "input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"model": HERO, "input": [{"type": "function_call", "name": "f"}]}, None),
        ({"model": HERO, "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"model": HERO, "input": "hi", "tools": [{"type": "file_search"}]}, "tools[0].type"),
        ({"model": HERO, "input": "hi", "tool_choice": "sometimes"}, "tool_choice"),
        ({"model": HERO, "input": "hi", "reasoning": {"effort": "huge"}}, "reasoning.effort"),
        ({"model": HERO, "input": "hi", "reasoning": {"summary": "long"}}, "reasoning.summary"),
        ({"model": HERO, "input": "hi", "text": {"format": {"type": "xml"}}}, "text.format"),
        ({"model": HERO, "input": "hi", "store": "yes"}, "store"),
        ({"model": HERO, "input": "hi", "metadata": {"a": 1}}, "metadata"),
        ({"model": HERO, "input": "hi", "conversation": "conv_1"}, "conversation"),
        ({"model": HERO, "input": "hi", "previous_response_id": "gen-1"}, "previous_response_id"),
    ],
)
def test_bad_bodies_are_refused_naming_the_field(body, param):
    with pytest.raises(GatewayError) as excinfo:
        wire.read_request(body)
    assert excinfo.value.status_code == 400
    if param:
        assert excinfo.value.param == param


def test_chat_errors_are_said_in_responses_terms():
    request = wire.read_request({"model": HERO, "input": "hi", "max_output_tokens": 0})
    with pytest.raises(GatewayError) as excinfo:
        try:
            parse_chat(request.chat_body())
        except GatewayError as error:
            raise wire.in_our_words(error) from None
    assert excinfo.value.param == "max_output_tokens"
    assert "max_output_tokens" in excinfo.value.message


def _request(**body) -> wire.ResponsesRequest:
    return wire.read_request({"model": HERO, "input": "hi", **body})


def _answer(message: dict, finish: str = "stop", **usage) -> dict:
    return {
        "id": "gen-abc123",
        "object": "chat.completion",
        "created": 1700000000,
        "model": HERO,
        "provider": "google-ai-studio",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 7,
            "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": usage.get("reasoning", 0)},
            "cost": usd_fragment(1234),
        },
    }


def _as_sdk(data: dict) -> Response:
    return Response.model_validate(orjson.loads(orjson.dumps(data)))


def test_a_chat_answer_becomes_a_response():
    response, turn = wire.response_from_chat(
        _request(metadata={"k": "v"}),
        _answer({"role": "assistant", "content": "Hello!", "reasoning": "Greet."}, reasoning=3),
    )
    parsed = _as_sdk(response)
    assert parsed.id == "resp_abc123"
    assert parsed.status == "completed"
    assert [item.type for item in parsed.output] == ["reasoning", "message"]
    assert parsed.output[0].summary[0].text == "Greet."
    assert parsed.output_text == "Hello!"
    assert parsed.usage.input_tokens == 10 and parsed.usage.output_tokens == 7
    assert parsed.usage.input_tokens_details.cached_tokens == 4
    assert parsed.usage.output_tokens_details.reasoning_tokens == 3
    assert parsed.metadata == {"k": "v"}
    assert parsed.store is True
    # The cost stays an exact decimal in the JSON.
    assert b'"cost":0.000001234' in orjson.dumps(response)
    assert turn == {"role": "assistant", "content": "Hello!"}


def test_tool_calls_become_function_call_items():
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
        "extra_content": {"google": {"thought_signature": "sig"}},
    }
    response, turn = wire.response_from_chat(
        _request(),
        _answer({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"),
    )
    [item] = _as_sdk(response).output
    assert (item.type, item.call_id, item.name, item.arguments) == (
        "function_call",
        "call_1",
        "f",
        "{}",
    )
    assert item.id == "fc_abc123_0"
    # The stored turn keeps the provider's signature for the next call.
    assert turn["tool_calls"] == [call]


def test_length_is_incomplete():
    response, _ = wire.response_from_chat(
        _request(), _answer({"role": "assistant", "content": "Cut"}, "length")
    )
    parsed = _as_sdk(response)
    assert parsed.status == "incomplete"
    assert parsed.incomplete_details.reason == "max_output_tokens"
    assert parsed.output[0].status == "incomplete"


def _chunk(delta: dict | None = None, finish: str | None = None, **extra) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "gen-abc123", "choices": choices, **extra}


def _run(chunks: list[dict], **body) -> tuple[list, wire.ResponseStream]:
    stream = wire.ResponseStream(
        _request(stream=True, **body),
        generation_id="gen-abc123",
        created_at=1700000000,
        model=HERO,
        provider="google-ai-studio",
        simulated=True,
    )
    frames = stream.start()
    for chunk in chunks:
        frames += stream.chunk(chunk)
    frames += stream.finish()
    events = []
    for frame in frames:
        head, data = frame.split(b"\n", 1)
        event = EVENTS.validate_python(orjson.loads(data.removeprefix(b"data: ")))
        assert head == b"event: " + event.type.encode()
        events.append(event)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    # The openai SDK's own accumulator (what `client.responses.stream` runs) accepts them.
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in events:
        state.handle_event(event)
    return events, stream


USAGE = {
    "prompt_tokens": 5,
    "completion_tokens": 9,
    "total_tokens": 14,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 2},
    "cost": usd_fragment(99),
}


def test_stream_of_reasoning_text_and_calls():
    events, stream = _run(
        [
            _chunk({"role": "assistant", "reasoning": "Hmm"}),
            _chunk({"reasoning": " ok"}),
            _chunk({"content": "Hel"}),
            _chunk({"content": "lo"}),
            _chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a"'},
                        }
                    ]
                }
            ),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
            _chunk({}, "tool_calls"),
            _chunk(None, usage=USAGE),
        ]
    )
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.output_index for e in events if hasattr(e, "output_index")] == (
        [0] * 7 + [1] * 7 + [2] * 5
    )
    final = events[-1].response
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]
    assert final.output[0].summary[0].text == "Hmm ok"
    assert final.output_text == "Hello"
    assert final.output[2].arguments == '{"a": 1}'
    assert final.usage.output_tokens_details.reasoning_tokens == 2
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    assert stream.turn == {
        "role": "assistant",
        "content": "Hello",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
        ],
    }


def test_stream_failing_midway_ends_with_error_then_failed():
    events, stream = _run(
        [
            _chunk({"content": "Hel"}),
            _chunk(
                {},
                "error",
                error={"message": "The provider's answer broke off.", "code": "stream_cut"},
                usage=USAGE,
            ),
        ]
    )
    types = [e.type for e in events]
    assert types[-4:] == [
        "response.content_part.done",
        "response.output_item.done",
        "error",
        "response.failed",
    ]
    assert events[-2].code == "stream_cut"
    failed = events[-1].response
    assert failed.status == "failed"
    assert failed.error.code == "server_error"
    assert failed.output[0].status == "incomplete"
    assert failed.usage.output_tokens == 9


def test_stream_cut_by_length_is_incomplete():
    events, _ = _run([_chunk({"content": "Hel"}), _chunk({}, "length"), _chunk(None, usage=USAGE)])
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


def test_an_empty_answer_is_an_empty_message():
    response, _ = wire.response_from_chat(
        _request(), _answer({"role": "assistant", "content": None})
    )
    parsed = _as_sdk(response)
    assert [item.type for item in parsed.output] == ["message"]
    assert parsed.output_text == ""


def test_parallel_calls_in_one_chunk_are_two_items():
    def call(n: int, city: str) -> dict:
        return {
            "index": n,
            "id": f"call_{n}",
            "type": "function",
            "function": {"name": "get_weather", "arguments": f'{{"city": "{city}"}}'},
        }

    events, stream = _run(
        [
            _chunk({"tool_calls": [call(0, "Paris"), call(1, "Oslo")]}),
            _chunk({}, "tool_calls"),
            _chunk(None, usage=USAGE),
        ]
    )
    final = events[-1].response
    assert [(i.id, i.call_id, i.arguments) for i in final.output] == [
        ("fc_abc123_0", "call_0", '{"city": "Paris"}'),
        ("fc_abc123_1", "call_1", '{"city": "Oslo"}'),
    ]
    added = [e.output_index for e in events if e.type == "response.output_item.added"]
    done = [e.output_index for e in events if e.type == "response.output_item.done"]
    assert added == done == [0, 1]
    assert stream.turn["content"] is None
    assert [c["id"] for c in stream.turn["tool_calls"]] == ["call_0", "call_1"]


def test_text_resuming_after_other_output_is_a_new_item_with_its_own_id():
    events, _ = _run(
        [
            _chunk({"content": "First"}),
            _chunk({"reasoning": "Hmm"}),
            _chunk({"content": "Second"}),
            _chunk({}, "stop"),
            _chunk(None, usage=USAGE),
        ]
    )
    final = events[-1].response
    assert [item.type for item in final.output] == ["message", "reasoning", "message"]
    ids = [item.id for item in final.output]
    assert len(set(ids)) == 3
    assert final.output_text == "FirstSecond"
