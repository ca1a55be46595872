"""A generation event as the queue carries it: a small orjson document, versioned.

Encoding runs on the request path (inside the events sink), so it only copies fields; every
derived figure (status, timings, throughput) is worked out by the batch writer.
"""

from __future__ import annotations

from typing import Any

import orjson

from routing.events import GenerationEvent

VERSION = 1


def _cap(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    if len(text.encode()) <= limit:
        return text
    return text.encode()[:limit].decode(errors="ignore")


def event_to_record(event: GenerationEvent, *, body_limit: int = 0) -> dict[str, Any]:
    usage = event.usage
    record: dict[str, Any] = {
        "v": VERSION,
        "generation_id": event.generation_id,
        "organization_id": event.organization_id,
        "key_id": event.key_id,
        "requested_model": event.requested_model,
        "model": event.model,
        "provider": event.provider,
        "endpoint_id": event.endpoint_id,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "cost_nanousd": event.cost_nanousd,
        "streamed": event.streamed,
        "error": event.error,
        "attempts": list(event.attempts),
        "received_at": event.received_at,
        "finished_at": event.finished_at,
    }
    if body_limit:
        # Only for organizations that opted in; the gateway may not carry bodies at all.
        record["prompt_body"] = _cap(getattr(event, "request_body", None), body_limit)
        record["response_body"] = _cap(getattr(event, "response_body", None), body_limit)
    return record


def encode(event: GenerationEvent, *, body_limit: int = 0) -> bytes:
    return orjson.dumps(event_to_record(event, body_limit=body_limit))


def decode(payload: bytes | memoryview | str) -> dict[str, Any]:
    if isinstance(payload, memoryview):
        payload = payload.tobytes()
    return orjson.loads(payload)
