"""OpenTelemetry: one span per request and one child span per upstream attempt.

The spans are built when the generation ends, from the timings the gateway already measured
(arrival, each attempt's start and duration, the end), so tracing adds nothing to the request
path while no exporter is configured and only a queue append per span when one is. They carry
the GenAI semantic conventions' attributes (operation, provider, models, token usage) plus the
generation id, the organization and the request id that the JSON logs also carry. A caller's
`traceparent` header makes the request span a child of the caller's span.

Spans are exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set (configure(), called
at start-up); tests hand their own provider to use_provider().
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from config.logging import request_id, trace_parent
from routing.events import GenerationEvent, subscribe, unsubscribe

logger = logging.getLogger(__name__)

TRACER_NAME = "llmapi.gateway"
_tracer: trace.Tracer | None = None
_propagator = TraceContextTextMapPropagator()


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _request_attributes(event: GenerationEvent) -> dict[str, Any]:
    usage = event.usage
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": event.operation,
        "gen_ai.request.model": event.requested_model,
        "gen_ai.response.model": event.model,
        "gen_ai.provider.name": event.provider,
        "gen_ai.response.id": event.generation_id,
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
        "llmapi.generation_id": event.generation_id,
        "llmapi.organization_id": event.organization_id,
        "llmapi.key_id": event.key_id,
        "llmapi.streamed": event.streamed,
        "llmapi.cost_nanousd": event.cost_nanousd,
        "llmapi.attempts": len(event.attempts),
    }
    if usage.cached_tokens:
        attributes["gen_ai.usage.cached_tokens"] = usage.cached_tokens
    if usage.reasoning_tokens:
        attributes["gen_ai.usage.reasoning_tokens"] = usage.reasoning_tokens
    rid = request_id.get()
    if rid:
        attributes["llmapi.request_id"] = rid
    if event.error:
        attributes["error.type"] = event.error
    return attributes


def _attempt_attributes(attempt: dict[str, Any], index: int) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.provider.name": attempt.get("provider") or "",
        "gen_ai.request.model": attempt.get("model") or "",
        "llmapi.attempt.index": index,
        "llmapi.attempt.outcome": attempt.get("outcome") or "",
        "llmapi.attempt.hedged": bool(attempt.get("hedged")),
    }
    if attempt.get("status"):
        attributes["http.response.status_code"] = int(attempt["status"])
    if attempt.get("ttft_ms") is not None:
        attributes["llmapi.attempt.ttft_ms"] = float(attempt["ttft_ms"])
    if attempt.get("outcome") not in ("ok", "cancelled"):
        attributes["error.type"] = attempt.get("outcome") or "error"
    return attributes


def record_generation(event: GenerationEvent, tracer: trace.Tracer | None = None) -> None:
    """The sink: the request's span and its attempts' spans, with the measured times."""
    tracer = tracer or _tracer
    if tracer is None:
        return
    # A caller that sent a W3C traceparent gets our spans inside its own trace (a malformed
    # header is ignored: the request span is then a root).
    given = trace_parent.get()
    caller = _propagator.extract({"traceparent": given}) if given else None
    span = tracer.start_span(
        f"{event.operation} {event.requested_model}",
        context=caller,
        kind=SpanKind.SERVER,
        start_time=_ns(event.received_at),
        attributes=_request_attributes(event),
    )
    parent = trace.set_span_in_context(span)
    cursor = event.received_at
    for index, attempt in enumerate(event.attempts):
        started = attempt.get("started_at") or cursor
        ended = started + float(attempt.get("duration_ms") or 0) / 1000
        cursor = ended
        child = tracer.start_span(
            f"attempt {attempt.get('provider') or ''}".strip(),
            context=parent,
            kind=SpanKind.CLIENT,
            start_time=_ns(started),
            attributes=_attempt_attributes(attempt, index),
        )
        outcome = attempt.get("outcome")
        if outcome == "ok":
            child.set_status(Status(StatusCode.OK))
        elif outcome != "cancelled":
            child.set_status(Status(StatusCode.ERROR, str(attempt.get("message") or outcome)))
        child.end(end_time=_ns(ended))
    if event.error:
        span.set_status(Status(StatusCode.ERROR, event.error))
    else:
        span.set_status(Status(StatusCode.OK))
    span.end(end_time=_ns(max(event.finished_at, cursor)))


def use_provider(provider: TracerProvider | None) -> None:
    """Trace through `provider` from now on (None: stop tracing)."""
    global _tracer
    if provider is None:
        _tracer = None
        unsubscribe(record_generation)
        return
    _tracer = provider.get_tracer(TRACER_NAME)
    subscribe(record_generation)


def configure(endpoint: str | None = None) -> TracerProvider | None:
    """At start-up: export spans over OTLP/HTTP when an endpoint is configured."""
    endpoint = endpoint if endpoint is not None else settings.OTEL_EXPORTER_OTLP_ENDPOINT
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    traces_url = (
        endpoint
        if endpoint.rstrip("/").endswith("/v1/traces")
        else (endpoint.rstrip("/") + "/v1/traces")
    )
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.OTEL_SERVICE_NAME})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url)))
    use_provider(provider)
    logger.info("tracing to %s", traces_url)
    return provider
