"""What the gateway tells the rest of the platform when a generation ends.

The request path only hands a small record to the registered sinks (no I/O here): billing
settles from it and observability logs it, each in its own batches, off the hot path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    operation: str = "chat"
    # Only for an organization that keeps bodies (keeps_bodies); capped by the log writer.
    request_body: Any = None
    response_body: Any = None


# Which organizations keep prompt and response bodies in their request logs: observability
# decides (from its settings, refreshed in the background); the gateway only asks.
def _keep_none(organization_id: str) -> bool:
    return False


_body_policy: Callable[[str], bool] = _keep_none


def set_body_policy(policy: Callable[[str], bool]) -> None:
    global _body_policy
    _body_policy = policy


def keeps_bodies(organization_id: str) -> bool:
    return _body_policy(organization_id)


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
    response_body: Any = None,
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
        operation=admission.operation,
        request_body=admission.request_body,
        response_body=response_body,
    )
    for sink in _sinks:
        try:
            sink(event)
        except Exception:  # a broken sink must not break an answered request
            logger.exception("generation event sink failed")
    return event


# A stream whose server process died: the gateway records its progress on its spend hold with
# this note, and when the hold expires billing settles it at that progress and hands the note
# back (billing.holds.orphans_subscribe), in whichever process runs the expiry (a worker).
ORPHAN_ERROR = "server_stopped"


def orphan_note(
    admission: Admission, endpoint: EndpointSnap, usage: Usage, attempts: list[Attempt]
) -> dict[str, Any]:
    """What the generation's log needs besides its ids and cost (kept small: it is written to
    the hold every few seconds while the stream runs)."""
    return {
        "rm": admission.models[0].id,
        "m": endpoint.model_id,
        "pv": endpoint.provider,
        "e": endpoint.id,
        "u": [
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens,
            usage.reasoning_tokens,
        ],
        "a": [a.as_dict() for a in attempts],
        "r": admission.received_at,
        "t": time.time(),
        "op": admission.operation,
    }


def generation_orphaned(record: Any, note: dict[str, Any]) -> GenerationEvent | None:
    """An orphan sink: the generation of a stream cut by its process dying, settled by the
    hold expiry at its last recorded progress, goes to the sinks like any other (its request
    log says how it ended)."""
    if "m" not in note:
        return None  # not a gateway's note
    prompt, completion, cached, reasoning = (list(note.get("u") or ()) + [0, 0, 0, 0])[:4]
    event = GenerationEvent(
        generation_id=record.reference,
        organization_id=record.organization_id,
        key_id=record.key_id or "",
        requested_model=note.get("rm") or note["m"],
        model=note["m"],
        provider=note.get("pv") or "",
        endpoint_id=note.get("e") or 0,
        usage=Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached,
            reasoning_tokens=reasoning,
        ),
        cost_nanousd=record.cost_nanousd,
        streamed=True,
        error=ORPHAN_ERROR,
        attempts=tuple(note.get("a") or ()),
        received_at=float(note.get("r") or time.time()),
        finished_at=float(note.get("t") or time.time()),
        operation=note.get("op") or "chat",
    )
    for sink in _sinks:
        try:
            sink(event)
        except Exception:
            logger.exception("generation event sink failed")
    return event
