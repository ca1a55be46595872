"""Prometheus metrics, fed from the gateway's events (a finished generation, a refused
request) and read at scrape time for the writer's queue.

Multiprocess-safe: with PROMETHEUS_MULTIPROC_DIR set (several uvicorn or Celery processes),
each process writes its own files and /metrics aggregates them; without it the process's own
registry answers. Increments are cheap: label children are cached per label tuple.
"""

from __future__ import annotations

import hmac
import os
from functools import cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from routing.events import GenerationEvent

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter("llmapi_requests_total", "Generations finished", ["model", "provider", "status"])
ERRORS = Counter("llmapi_request_errors_total", "Generations that failed", ["kind"])
LATENCY = Histogram(
    "llmapi_request_duration_seconds",
    "Time from receiving a request to its last byte",
    ["model", "provider"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM = Histogram(
    "llmapi_upstream_attempt_duration_seconds",
    "One call to a provider",
    ["provider", "outcome"],
    buckets=LATENCY_BUCKETS,
)
REFUSED = Counter(
    "llmapi_requests_refused_total",
    "Requests refused before any provider was called",
    ["reason", "limit"],
)


@cache
def _requests(model: str, provider: str, status: str):
    return REQUESTS.labels(model, provider, status)


@cache
def _latency(model: str, provider: str):
    return LATENCY.labels(model, provider)


@cache
def _upstream(provider: str, outcome: str):
    return UPSTREAM.labels(provider, outcome)


def record_generation(event: GenerationEvent) -> None:
    status = "ok" if event.error is None else "error"
    _requests(event.model, event.provider, status).inc()
    if event.error is not None:
        ERRORS.labels(event.error).inc()
    _latency(event.model, event.provider).observe(max(0.0, event.finished_at - event.received_at))
    for attempt in event.attempts:
        duration = attempt.get("duration_ms")
        if duration is not None:
            _upstream(attempt.get("provider", ""), attempt.get("outcome") or "").observe(
                duration / 1000
            )


def record_refusal(reason: str, limit: str) -> None:
    REFUSED.labels(reason, limit).inc()


class QueueCollector:
    """The request-log writer's backlog, measured when Prometheus scrapes."""

    def collect(self):
        from observability.writer.queue import get_log_queue

        gauge = GaugeMetricFamily(
            "llmapi_log_queue_pending", "Finished generations waiting to be written"
        )
        try:
            gauge.add_metric([], float(get_log_queue().pending()))
        except Exception:
            return
        yield gauge


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    return registry


_queue_registry = CollectorRegistry()
_queue_registry.register(QueueCollector())


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse("a bearer token is required", status=401, content_type="text/plain")
    body = generate_latest(_registry()) + generate_latest(_queue_registry)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
