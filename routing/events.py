"""What the gateway tells the rest of the platform when a generation ends.

The request path only hands a small record to the registered sinks (no I/O here): billing
settles from it and observability logs it, each in its own batches, off the hot path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from routing.providers.base import Usage

if TYPE_CHECKING:
    from routing.gateway import Admission
    from routing.router import Attempt
    from routing.snapshot import EndpointSnap

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GenerationEvent:
    generation_id: str
    organization_id: str
    key_id: str
    requested_model: str
    model: str
    provider: str
    endpoint_id: int
    usage: Usage
    cost_nanousd: int
    streamed: bool
    error: str | None
    attempts: tuple[dict, ...]
    received_at: float
    finished_at: float


Sink = Callable[[GenerationEvent], None]
_sinks: list[Sink] = []
# Requests refused before any provider was called: (reason, limit) -> None.
RefusalSink = Callable[[str, str], None]
_refusal_sinks: list[RefusalSink] = []


def subscribe_refusals(sink: RefusalSink) -> None:
    if sink not in _refusal_sinks:
        _refusal_sinks.append(sink)


def request_refused(reason: str, limit: str) -> None:
    """reason: rate_limit | spend; limit: which one (rpm, tpm, key_spend_limit, ...)."""
    for sink in _refusal_sinks:
        try:
            sink(reason, limit)
        except Exception:
            logger.exception("a refusal sink failed")


def subscribe(sink: Sink) -> None:
    if sink not in _sinks:
        _sinks.append(sink)


def unsubscribe(sink: Sink) -> None:
    if sink in _sinks:
        _sinks.remove(sink)


def generation_finished(
    admission: Admission,
    endpoint: EndpointSnap,
    usage: Usage,
    cost: int,
    attempts: list[Attempt],
    *,
    streamed: bool,
    error: str | None = None,
) -> GenerationEvent:
    event = GenerationEvent(
        generation_id=admission.generation_id,
        organization_id=str(admission.key.organization_id),
        key_id=str(admission.key.key_id),
        requested_model=admission.models[0].id,
        model=endpoint.model_id,
        provider=endpoint.provider,
        endpoint_id=endpoint.id,
        usage=usage,
        cost_nanousd=cost,
        streamed=streamed,
        error=error,
        attempts=tuple(a.as_dict() for a in attempts),
        received_at=admission.received_at,
        finished_at=time.time(),
    )
    for sink in _sinks:
        try:
            sink(event)
        except Exception:  # a broken sink must not break an answered request
            logger.exception("generation event sink failed")
    return event
