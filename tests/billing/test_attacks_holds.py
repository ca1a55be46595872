"""Attacks on what is held, through the real request path (uvicorn, the provider simulator,
the hold store of the suite's backend): what a free account could make us spend upstream
beyond what it had, and what it could get served without paying for.

Each test says what it measured before the fix."""

from __future__ import annotations

import base64
import concurrent.futures
import time
from decimal import Decimal

import httpx
import orjson
import pytest

from billing import selectors, services
from billing.holds import org_snapshots
from billing.models import LedgerEntry, Plan

NANO = Decimal(1_000_000_000)
USD = 1_000_000_000
HERO = "google/gemini-3.1-flash-lite"
PRO = "google/gemini-3.1-pro"
HAIKU = "anthropic/claude-3.5-haiku"


def set_balance(org, nanousd: int) -> None:
    services.billing_account_for(organization=org)
    balance = selectors.ledger_sum(organization=org)
    if balance != nanousd:
        services.ledger_post(
            organization=org,
            kind=LedgerEntry.Kind.ADJUSTMENT,
            amount_nanousd=nanousd - balance,
            reference=f"test:balance:{time.monotonic_ns()}",
        )
    org_snapshots.clear_local()


def chat(base_url: str, secret: str, body: dict, *, timeout: float = 60) -> httpx.Response:
    return httpx.post(
        f"{base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=timeout,
    )


def cost_of(reply: dict) -> int:
    return int(Decimal(str(reply["usage"]["cost"])) * NANO)


def stream(base_url: str, secret: str, content: str, *, max_tokens: int):
    """A streamed chat request, its response open in a `with` block."""
    return httpx.stream(
        "POST",
        f"{base_url}/chat/completions",
        json={
            "model": HERO,
            "stream": True,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": content}],
        },
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def wait_for_usage(org, *, seconds: float = 15) -> list[LedgerEntry]:
    """The organization's usage entries once one is there (work left detached by a request
    whose client went away finishes after its answer)."""
    deadline = time.monotonic() + seconds
    entries = usage_entries(org)
    while time.monotonic() < deadline and not entries:
        time.sleep(0.2)
        entries = usage_entries(org)
    return entries


def usage_entries(org) -> list[LedgerEntry]:
    services.usage_flush()
    return list(LedgerEntry.objects.filter(organization=org, kind=LedgerEntry.Kind.USAGE))


def test_a_fallback_model_is_held_at_its_own_output_cap(gateway, alice, sim):
    """The fallback trick: the primary has no endpoint the request allows, so every call goes
    to the pricier fallback, which used to be held at the primary's 8,192-token cap and called
    with no cap at all. Before: 12 concurrent requests took a $1 balance to -$6.20 (each
    fallback answer wrote 60,000 tokens of Gemini Pro). After: the balance stays >= 0."""
    base_url, secret = gateway
    set_balance(alice.org, USD)
    sim.set("google-ai-studio", output_tokens=60_000)
    body = {
        "model": HAIKU,
        "models": [HAIKU, PRO],
        "provider": {"only": ["google-ai-studio"]},
        "messages": [{"role": "user", "content": "write a long story"}],
    }
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        replies = list(pool.map(lambda _: chat(base_url, secret, body), range(12)))
    served = [r.json() for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code == 402]
    assert served and len(served) + len(refused) == 12
    # Every call upstream carried its cap: Gemini Pro's 65,536 tokens at most.
    assert all(r["usage"]["completion_tokens"] <= 65_536 for r in served)
    assert sim.stats("google-ai-studio")["completion_tokens"] <= 65_536 * len(served)
    assert sum(e.amount_nanousd for e in usage_entries(alice.org)) == -sum(map(cost_of, served))
    assert selectors.ledger_sum(organization=alice.org) >= 0
    assert selectors.billing_check() == []


def test_without_max_tokens_the_hold_covers_the_priciest_candidate(gateway, alice, sim):
    """The hold is the worst candidate's worst case, not the primary's: with no room, the
    402 names what would have been held. Before: Gemini Pro's output held at Flash Lite's
    4,096-token cap ($0.045); after: at its own 65,536 ($0.72)."""
    base_url, secret = gateway
    set_balance(alice.org, 0)
    body = {
        "model": HERO,
        "models": [HERO, PRO],
        "messages": [{"role": "user", "content": "hi"}],
    }
    refused = chat(base_url, secret, body)
    assert refused.status_code == 402
    requested = refused.json()["error"]["metadata"]["requested_nanousd"]
    pro_output = 65_536 * 11 * USD // 1_000_000  # OpenRouter's $11 per 1M output tokens
    assert requested >= pro_output


def test_an_adapters_thinking_budget_is_inside_the_hold(gateway, alice, sim):
    """Anthropic's thinking budget raises max_tokens upstream. Before: held for 100 output
    tokens, the call wrote 272 (256 thinking + 16) and cost more than was held. After: the
    hold covers the budget and the upstream cap equals it."""
    base_url, secret = gateway
    body = {
        "model": HERO,
        "models": [HERO, HAIKU],
        "provider": {"only": ["anthropic"]},
        "reasoning_effort": "high",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "think hard"}],
    }
    set_balance(alice.org, 0)
    refused = chat(base_url, secret, body)
    assert refused.status_code == 402
    held = refused.json()["error"]["metadata"]["requested_nanousd"]
    set_balance(alice.org, USD)
    reply = chat(base_url, secret, body)
    assert reply.status_code == 200, reply.text
    # Thinking was on (Anthropic counts it in output_tokens): more than the 100 asked for.
    assert reply.json()["usage"]["completion_tokens"] > 100
    assert cost_of(reply.json()) <= held


def test_a_small_balance_gets_a_lower_cap_instead_of_a_refusal(gateway, alice, sim):
    """Holding the worst case must not make small balances useless. Before: "hi" to Gemini Pro
    without max_tokens needed $0.72 of room and a $0.01 balance got 402. After: it is served
    with a cap the room affords, said in a header; below a useful minimum it is refused."""
    base_url, secret = gateway
    sim.set("google-ai-studio", output_tokens=5_000)
    sim.set("vertex-ai", output_tokens=5_000)
    sim.set("openrouter", output_tokens=5_000)
    set_balance(alice.org, USD // 100)
    body = {"model": PRO, "messages": [{"role": "user", "content": "hi"}]}
    reply = chat(base_url, secret, body)
    assert reply.status_code == 200, reply.text
    cap = int(reply.headers["x-llmapi-max-tokens-lowered"])
    assert 256 <= cap < 65_536
    assert reply.json()["usage"]["completion_tokens"] <= cap
    assert reply.json()["choices"][0]["finish_reason"] == "length"
    usage_entries(alice.org)  # flushed
    assert selectors.ledger_sum(organization=alice.org) >= 0

    set_balance(alice.org, 1_000)  # a millionth of a dollar: not even 256 tokens
    refused = chat(base_url, secret, body)
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "insufficient_quota"
    # A caller who set max_tokens asked for exactly that: no silent lowering.
    set_balance(alice.org, USD // 100)
    exact = chat(base_url, secret, {**body, "max_tokens": 65_536})
    assert exact.status_code == 402


def test_files_and_audio_are_estimated_from_their_size(gateway, alice, sim):
    """A 2 MB PDF was estimated at 7 tokens (its filename); now at its size, within the
    model's context window, so the hold covers what the provider can bill."""
    base_url, secret = gateway
    set_balance(alice.org, 0)
    pdf = base64.b64encode(b"%PDF-1.7 " + b"x" * 2_000_000).decode()
    body = {
        "model": HERO,
        "max_tokens": 16,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "summarize"},
                    {
                        "type": "file",
                        "file": {
                            "filename": "big.pdf",
                            "file_data": f"data:application/pdf;base64,{pdf}",
                        },
                    },
                ],
            }
        ],
    }
    refused = chat(base_url, secret, body)
    assert refused.status_code == 402
    requested = refused.json()["error"]["metadata"]["requested_nanousd"]
    # The whole 131,072-token context at the cheapest input price ($0.05 per 1M) at least.
    assert requested >= 131_072 * 50_000_000 // 1_000_000
    audio = base64.b64encode(b"\0" * 3_200_000).decode()  # 100 s of 16 kHz WAV
    body["messages"][0]["content"][1] = {
        "type": "input_audio",
        "input_audio": {"data": audio, "format": "wav"},
    }
    refused = chat(base_url, secret, body)
    assert refused.status_code == 402
    assert refused.json()["error"]["metadata"]["requested_nanousd"] >= 12_500 * 50


def test_the_plan_caps_requests_in_flight(gateway, alice, sim):
    """Before: all 6 slow requests were admitted at once; after: the plan's cap (2 here)
    admits 2, and the others get 429 with Retry-After."""
    base_url, secret = gateway
    set_balance(alice.org, USD)
    Plan.objects.filter(slug="prepaid").update(max_in_flight=2)
    services.billing_account_for(organization=alice.org)
    from billing.holds import org_snapshots as snapshots

    snapshots.refresh(alice.org.id)
    for slug in ("google-ai-studio", "vertex-ai", "openrouter", "private-vllm"):
        sim.set(slug, latency_ms=1500)
    body = {"model": HERO, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda _: chat(base_url, secret, body), range(6)))
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200, 200, 429, 429, 429, 429]
    busy = next(r for r in replies if r.status_code == 429)
    assert busy.json()["error"]["code"] == "too_many_requests_in_flight"
    assert busy.headers["retry-after"] == "1"
    # Once they finished, the organization has its room back.
    assert chat(base_url, secret, body).status_code == 200


def test_a_hedged_loser_is_billed_and_the_plan_bounds_hedging(
    gateway, alice, sim, generation_events
):
    """Before: `hedge_after_ms: 0` raced two providers at once and the cancelled loser was
    never billed. After: the hedge waits the plan's minimum (250 ms on prepaid) and the
    loser's prompt is billed at its own price with the generation."""
    base_url, secret = gateway
    set_balance(alice.org, USD)
    sim.set("google-ai-studio", latency_ms=1500)
    body = {
        "model": HERO,
        "max_tokens": 16,
        "hedge_after_ms": 0,
        "provider": {"order": ["google-ai-studio", "vertex-ai"]},
        "messages": [{"role": "user", "content": "hello " * 200}],
    }
    reply = chat(base_url, secret, body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["provider"] == "vertex-ai"
    event = next(e for e in generation_events if e.generation_id == reply.json()["id"])
    loser, winner = event.attempts
    assert loser["outcome"] == "cancelled" and winner["outcome"] == "ok" and winner["hedged"]
    assert winner["started_at"] - loser["started_at"] >= 0.24
    assert loser["cost"] > 0
    usage_entries(alice.org)  # flushed
    entry = LedgerEntry.objects.get(reference=reply.json()["id"])
    assert -entry.amount_nanousd == cost_of(reply.json()) == event.cost_nanousd
    winner_alone = event.cost_nanousd - loser["cost"]
    assert winner_alone > 0


def test_attempts_that_time_out_after_sending_are_billed(gateway, alice, sim, settings):
    """Before: every attempt timed out after the request was sent, the hold was released
    and $0 billed. After: each attempt's prompt at its endpoint's price."""
    base_url, secret = gateway
    set_balance(alice.org, USD)
    settings.ROUTING_ATTEMPT_TIMEOUT = 0.3
    for slug in ("google-ai-studio", "vertex-ai", "openrouter", "private-vllm"):
        sim.set(slug, error_rate=1, error_kind="stall")
    body = {
        "model": HERO,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "hello " * 500}],
    }
    reply = chat(base_url, secret, body)
    assert reply.status_code == 502
    attempts = reply.json()["error"]["metadata"]["attempts"]
    timed_out = [a for a in attempts if a["outcome"] == "timeout"]
    assert len(timed_out) >= 2
    # The last attempt may not start: the earlier ones' prompts used up the hold's room.
    assert all(a["outcome"] in ("timeout", "hold_spent") for a in attempts)
    entries = usage_entries(alice.org)
    assert len(entries) == 1 and entries[0].amount_nanousd < 0
    # Each timed-out attempt's prompt (~754 tokens) at $0.05-0.07 per 1M at least.
    assert -entries[0].amount_nanousd >= len(timed_out) * 754 * 50
    assert "cost" in reply.json()["error"]["message"]


def test_a_client_that_hangs_up_is_billed_when_the_answer_arrives(gateway, alice, sim):
    """Before: a non-streamed request whose client hung up released its hold and billed $0
    although the provider answered. After: the call finishes and is billed its real usage."""
    base_url, secret = gateway
    set_balance(alice.org, USD)
    for slug in ("google-ai-studio", "vertex-ai", "openrouter", "private-vllm"):
        sim.set(slug, latency_ms=1000, output_tokens=200)
    body = {"model": HERO, "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(httpx.ReadTimeout):
        chat(base_url, secret, body, timeout=0.3)
    entries = wait_for_usage(alice.org)
    assert len(entries) == 1
    served = sum(sim.stats(s)["completion_tokens"] for s in ("google-ai-studio", "vertex-ai"))
    assert served == 200
    # 200 output tokens at $0.15 per 1M at least: the real answer, not an estimate.
    assert -entries[0].amount_nanousd >= 200 * 150_000_000 // 1_000_000
    assert selectors.billing_check() == []


def test_a_cut_stream_bills_what_was_delivered_counting_cjk_and_reasoning(gateway, alice, sim):
    """A stream cut before the provider's usage: billed from what was delivered. Before: CJK
    text counted 4 characters a token (a 60-character answer billed as 15 tokens). After:
    about a token a character, and never less than the prompt as held."""
    base_url, secret = gateway
    set_balance(alice.org, USD)
    text = "数据库连接池已经满了请稍后再试" * 4  # 60 characters
    for slug in ("google-ai-studio", "vertex-ai", "openrouter", "private-vllm"):
        sim.script(slug, text)
        sim.set(slug, error_rate=1, error_kind="cut", cut_after_tokens=1000)
    with stream(base_url, secret, "status?", max_tokens=500) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    chunks = [orjson.loads(line[6:]) for line in lines]
    delivered = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )
    last = chunks[-1]
    if last["choices"] and last["choices"][0].get("finish_reason") == "error":
        assert last["usage"]["completion_tokens"] >= len(delivered)
    entries = usage_entries(alice.org)
    assert len(entries) == 1 and -entries[0].amount_nanousd == cost_of(last)


def test_a_stream_the_client_leaves_is_billed_its_real_usage(gateway, alice, sim):
    """The client reads a few chunks and hangs up while the provider is still writing (and
    billing us). Before: billed the ~3 tokens delivered. After: the upstream stream is read
    to its end, detached, and the provider's own usage (300 tokens) is billed."""
    base_url, secret = gateway
    set_balance(alice.org, USD)
    for slug in ("google-ai-studio", "vertex-ai", "openrouter", "private-vllm"):
        sim.set(slug, tokens_per_second=150, output_tokens=300)
    with stream(base_url, secret, "tell me a story", max_tokens=1000) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(3)]
    assert all(line.startswith("data: ") or not line for line in received)
    entries = wait_for_usage(alice.org)
    assert len(entries) == 1
    # 300 output tokens at $0.15 per 1M at least: the provider's count, not the 3 delivered.
    assert -entries[0].amount_nanousd >= 300 * 150_000_000 // 1_000_000


def test_an_answer_without_usage_is_billed_at_least_its_estimate(db):
    """A provider's answer without `usage` was billed $0; now the prompt as estimated and the
    answer's own text."""
    from routing.gateway import Admission, floored_usage
    from routing.providers.base import Usage
    from routing.services import catalog_load
    from routing.snapshot import catalog
    from routing.tokens import estimate_prompt

    catalog_load()
    catalog.invalidate()
    endpoint = catalog.get().resolve(HERO).endpoints[0]
    body = {"messages": [{"role": "user", "content": "hello there " * 50}]}
    admission = Admission(
        key=None,
        models=[],
        candidates=[endpoint],
        prompt_tokens=0,
        max_tokens=0,
        headers={},
        estimate=estimate_prompt(body),
    )
    answer = {"choices": [{"message": {"role": "assistant", "content": "word " * 40}}]}
    usage = floored_usage(admission, endpoint, answer, Usage())
    assert usage.prompt_tokens >= 150 and usage.completion_tokens >= 50
    reported = Usage(prompt_tokens=7, completion_tokens=3)
    assert floored_usage(admission, endpoint, answer, reported) == reported
