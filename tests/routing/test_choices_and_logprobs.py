"""n > 1 and logprobs (issue 13, point 6): served by the endpoints whose wire can (n choices
in one call, billed for all; log probabilities passed through or translated), refused with a
clear 400 where none can, never dropped silently; what is held covers every choice."""

from __future__ import annotations

import openai
import pytest

from tests.billing.test_attacks_holds import USD, chat, set_balance

HERO = "google/gemini-3.1-flash-lite"
PRO = "google/gemini-3.1-pro"
HAIKU = "anthropic/claude-3.5-haiku"
HELLO = [{"role": "user", "content": "hi"}]


def test_anthropic_endpoints_are_skipped_for_logprobs_and_n(openai_client):
    # Haiku is served by Anthropic (cheapest) and OpenRouter: the request that wants log
    # probabilities goes to OpenRouter.
    plain = openai_client.chat.completions.create(model=HAIKU, messages=HELLO, max_tokens=5)
    assert plain.model_extra["provider"] == "anthropic"
    probed = openai_client.chat.completions.create(
        model=HAIKU, messages=HELLO, max_tokens=5, logprobs=True
    )
    assert probed.model_extra["provider"] == "openrouter"
    two = openai_client.chat.completions.create(model=HAIKU, messages=HELLO, max_tokens=5, n=2)
    assert two.model_extra["provider"] == "openrouter"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"logprobs": True, "top_logprobs": 3}, "logprobs"),
        ({"n": 2}, "n"),
    ],
)
def test_what_no_endpoint_can_do_is_a_clear_400(openai_client, extra, param):
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.chat.completions.create(
            model=HAIKU,
            messages=HELLO,
            max_tokens=5,
            extra_body={"provider": {"only": ["anthropic"]}},
            **extra,
        )
    error = refused.value.body
    assert error["param"] == param
    assert error["code"] == "unsupported_parameter"
    assert "anthropic" in error["message"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 9}, "n"),
        ({"n": 0}, "n"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": "yes"}, "logprobs"),
    ],
)
def test_bad_values_are_400s(openai_client, extra, param):
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.chat.completions.create(
            model=HERO, messages=HELLO, max_tokens=5, extra_body=extra
        )
    assert refused.value.body["param"] == param


def test_what_is_held_covers_every_choice(gateway, alice, sim):
    """A balance that affords one long choice gets a cap about a quarter as long for n=4."""
    base_url, secret = gateway
    for slug in ("google-ai-studio", "vertex-ai", "openrouter"):
        sim.set(slug, output_tokens=5)
    set_balance(alice.org, USD // 10)
    body = {"model": PRO, "messages": HELLO}
    one = chat(base_url, secret, body)
    four = chat(base_url, secret, {**body, "n": 4})
    assert one.status_code == four.status_code == 200, four.text
    cap_one = int(one.headers["x-llmapi-max-tokens-lowered"])
    cap_four = int(four.headers["x-llmapi-max-tokens-lowered"])
    assert cap_one // 5 <= cap_four <= cap_one // 3


WIRES = {"openai": ("openai/gpt-4.1-mini", "openai"), "gemini": (HERO, "google-ai-studio")}


@pytest.mark.parametrize("wire", sorted(WIRES))
def test_n_choices_are_served_and_billed_for_all(openai_client, generation_events, wire):
    model, provider = WIRES[wire]
    one = openai_client.chat.completions.create(
        model=model, messages=HELLO, max_tokens=6, extra_body={"provider": {"only": [provider]}}
    )
    three = openai_client.chat.completions.create(
        model=model,
        messages=HELLO,
        max_tokens=6,
        n=3,
        extra_body={"provider": {"only": [provider]}},
    )
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert len({c.message.content for c in three.choices}) == 3  # three answers
    assert three.usage.completion_tokens == 3 * one.usage.completion_tokens
    assert three.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt, once
    costs = {e.generation_id: e.cost_nanousd for e in generation_events}
    assert costs[three.id] > costs[one.id]

    stream = openai_client.chat.completions.create(
        model=model,
        messages=HELLO,
        max_tokens=6,
        n=2,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"provider": {"only": [provider]}},
    )
    texts: dict[int, str] = {}
    finished = set()
    usage = None
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finished.add(choice.index)
        usage = chunk.usage or usage
    assert set(texts) == finished == {0, 1} and all(texts.values())
    assert usage.completion_tokens == 2 * one.usage.completion_tokens


@pytest.mark.parametrize("wire", sorted(WIRES))
def test_logprobs_come_back_in_openais_shape(openai_client, wire):
    model, provider = WIRES[wire]
    reply = openai_client.chat.completions.create(
        model=model,
        messages=HELLO,
        max_tokens=6,
        logprobs=True,
        top_logprobs=2,
        extra_body={"provider": {"only": [provider]}},
    )
    choice = reply.choices[0]
    tokens = choice.logprobs.content
    assert "".join(t.token for t in tokens) == choice.message.content
    assert all(t.logprob < 0 and len(t.top_logprobs) == 2 for t in tokens)
    assert all(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob for t in tokens)

    stream = openai_client.chat.completions.create(
        model=model,
        messages=HELLO,
        max_tokens=6,
        logprobs=True,
        stream=True,
        extra_body={"provider": {"only": [provider]}},
    )
    streamed = [
        token
        for chunk in stream
        for c in chunk.choices
        if c.logprobs and c.logprobs.content
        for token in c.logprobs.content
    ]
    assert len(streamed) == 6 and all(t.logprob < 0 for t in streamed)
