"""What a generation costs, in integer nano-USD: each kind of token at its own price."""

from __future__ import annotations

from decimal import Decimal

from routing.providers.base import Usage
from routing.snapshot import EndpointSnap

PER_MILLION = 1_000_000
NANO = Decimal(1_000_000_000)


def cost_nanousd(endpoint: EndpointSnap, usage: Usage) -> int:
    """Cached prompt tokens at the cached price, reasoning tokens at the reasoning price, never
    counted twice; rounded once, half up, at the end."""
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    reasoning = min(usage.reasoning_tokens, usage.completion_tokens)
    total = (
        (usage.prompt_tokens - cached) * endpoint.input_price
        + cached * endpoint.cached_input_price
        + (usage.completion_tokens - reasoning) * endpoint.output_price
        + reasoning * endpoint.reasoning_price
    )
    return (total + PER_MILLION // 2) // PER_MILLION


def worst_case_nanousd(endpoint: EndpointSnap, *, prompt_tokens: int, max_tokens: int) -> int:
    """The most a request can cost on this endpoint: what a spend hold reserves."""
    output = max(endpoint.output_price, endpoint.reasoning_price)
    total = prompt_tokens * endpoint.input_price + max_tokens * output
    return -(-total // PER_MILLION)


def nano_to_usd(nano: int) -> Decimal:
    return Decimal(nano) / NANO


def price_per_million_usd(nano_per_million: int) -> Decimal:
    return (Decimal(nano_per_million) / NANO).normalize()
