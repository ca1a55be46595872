"""What a generation costs, in integer nano-USD: each kind of token at its own price."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.conf import settings

from routing.health import HealthBook, health_book
from routing.providers.base import Usage
from routing.snapshot import EndpointSnap

PER_MILLION = 1_000_000
NANO = Decimal(1_000_000_000)


def cost_nanousd(endpoint: EndpointSnap, usage: Usage) -> int:
    """Cached prompt tokens at the cached price, prompt tokens written to the cache at the
    cache-write price of their TTL, reasoning tokens at the reasoning price, never counted
    twice; rounded once, half up, at the end.

    A generation served by the provider simulator costs nothing (unless
    ROUTING_BILL_SIMULATED, for the test suite's money path): its answer is not a provider's,
    so no credit, bought or granted, is ever spent on it."""
    if endpoint.simulated and not settings.ROUTING_BILL_SIMULATED:
        return 0
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    written = min(usage.cache_write_tokens, usage.prompt_tokens - cached)
    written_1h = min(usage.cache_write_1h_tokens, written)
    reasoning = min(usage.reasoning_tokens, usage.completion_tokens)
    total = (
        (usage.prompt_tokens - cached - written) * endpoint.input_price
        + cached * endpoint.cached_input_price
        + (written - written_1h) * endpoint.cache_write_price
        + written_1h * endpoint.cache_write_1h_price
        + (usage.completion_tokens - reasoning) * endpoint.output_price
        + reasoning * endpoint.reasoning_price
    )
    return (total + PER_MILLION // 2) // PER_MILLION


def worst_case_nanousd(endpoint: EndpointSnap, *, prompt_tokens: int, max_tokens: int) -> int:
    """The most a request can cost on this endpoint: what a spend hold reserves. Any prompt
    token may be a cache write, so the prompt is held at the dearest input-side price."""
    prompt = max(endpoint.input_price, endpoint.cache_write_price, endpoint.cache_write_1h_price)
    output = max(endpoint.output_price, endpoint.reasoning_price)
    total = prompt_tokens * prompt + max_tokens * output
    return -(-total // PER_MILLION)


# A provider can stream this much slower than its usual (nominal or measured) throughput
# before a hold sized for it lapses; and never slower than HOLD_MIN_TPS is assumed.
HOLD_SLOWDOWN = 4
HOLD_MIN_TPS = 5


def hold_ttl_seconds(
    candidates: Iterable[EndpointSnap], *, max_tokens: int, health: HealthBook | None = None
) -> float:
    """How long a request's spend hold must live: past it the hold counts as left by a dead
    process and is given back, while the request may still be running and spending. Every
    attempt may wait out its timeouts, then the answer takes `max_tokens` at the slowest
    candidate's worst throughput (its nominal or measured one, whichever is lower, slowed
    down). Never shorter than BILLING_HOLD_TTL_SECONDS."""
    health = health or health_book
    slowest = None
    for endpoint in candidates:
        measured = health.medians(endpoint.key)[1]
        rates = [r for r in (endpoint.nominal_throughput_tps, measured) if r]
        usual = min(rates) if rates else HOLD_MIN_TPS
        worst = max(usual / HOLD_SLOWDOWN, HOLD_MIN_TPS)
        slowest = worst if slowest is None else min(slowest, worst)
    writing = max_tokens / (slowest or HOLD_MIN_TPS)
    waiting = settings.ROUTING_MAX_ATTEMPTS * (
        settings.ROUTING_CONNECT_TIMEOUT + settings.ROUTING_ATTEMPT_TIMEOUT
    )
    return max(float(settings.BILLING_HOLD_TTL_SECONDS), writing + waiting)


def nano_to_usd(nano: int) -> Decimal:
    return Decimal(nano) / NANO


def price_per_million_usd(nano_per_million: int) -> Decimal:
    return (Decimal(nano_per_million) / NANO).normalize()
