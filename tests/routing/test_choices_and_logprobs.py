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
