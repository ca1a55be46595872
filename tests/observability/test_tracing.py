"""OpenTelemetry: a request through the gateway becomes a request span with one child span per
upstream attempt, so a fallback reads as a trace; with an OTLP endpoint configured, the spans
reach it over OTLP/HTTP."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from observability import tracing
from observability.models import RequestLog
from observability.writer import flush_now
from tests.observability.helpers import wait_until

HERO = "google/gemini-3.1-flash-lite"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield exporter
    tracing.use_provider(None)
    provider.shutdown()


def _by_generation(exporter, generation_id):
    finished = exporter.get_finished_spans()
    request = next(s for s in finished if s.attributes.get("llmapi.generation_id") == generation_id)
    children = sorted(
        (
            s
            for s in finished
            if s.parent is not None and s.parent.span_id == request.context.span_id
        ),
        key=lambda s: s.attributes["llmapi.attempt.index"],
    )
    return request, children


def test_a_forced_fallback_is_a_request_span_with_two_attempt_spans(openai_client, sim, spans):
    sim.set("google-ai-studio", error_rate=1, error_kind="500")
    reply = openai_client.chat.completions.create(
        model=HERO, messages=[{"role": "user", "content": "hi"}], max_tokens=8
    )

    request, attempts = _by_generation(spans, reply.id)
    assert request.name == f"chat {HERO}"
    assert request.kind == SpanKind.SERVER
    assert request.status.status_code == StatusCode.OK
    assert request.attributes["gen_ai.provider.name"] == "vertex-ai"
    assert request.attributes["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert request.attributes["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    assert request.attributes["llmapi.organization_id"]

    assert [s.name for s in attempts] == ["attempt google-ai-studio", "attempt vertex-ai"]
    assert all(s.context.trace_id == request.context.trace_id for s in attempts)
    failed, won = attempts
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["http.response.status_code"] == 500
    assert failed.attributes["error.type"] == "overloaded"
    assert won.status.status_code == StatusCode.OK
    # The attempts ran one after the other, inside the request.
    assert request.start_time <= failed.start_time <= failed.end_time <= won.start_time
    assert won.end_time <= request.end_time


def test_a_failed_request_is_an_error_span(openai_client, sim, spans):
    for slug in ("google-ai-studio", "vertex-ai", "openrouter", "private-vllm"):
        sim.set(slug, error_rate=1, error_kind="500")
    with pytest.raises(openai.InternalServerError):
        openai_client.chat.completions.create(
            model=HERO, messages=[{"role": "user", "content": "hi"}], max_tokens=8
        )
    [request] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert request.status.status_code == StatusCode.ERROR
    children = [s for s in spans.get_finished_spans() if s.parent is not None]
    assert len(children) == request.attributes["llmapi.attempts"] >= 2
    assert all(s.status.status_code == StatusCode.ERROR for s in children)


def test_the_waterfall_has_each_attempts_start_and_the_streams_first_token(openai_client, sim):
    sim.set("google-ai-studio", error_rate=1, error_kind="500")
    chunks = list(
        openai_client.chat.completions.create(
            model=HERO, messages=[{"role": "user", "content": "hi"}], max_tokens=8, stream=True
        )
    )

    def written():
        flush_now()
        return RequestLog.objects.filter(generation_id=chunks[0].id).first()

    log = wait_until(written)
    failed, won = log.attempts.order_by("index")
    assert failed.offset_ms is not None and won.offset_ms is not None
    assert won.offset_ms >= failed.offset_ms + failed.duration_ms - 1
    assert won.ttft_ms is not None and 0 < won.ttft_ms <= log.total_ms
    assert log.gateway_ms is not None and log.gateway_ms <= failed.offset_ms + 1


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def do_POST(self):  # noqa: N802 - the handler's name is fixed by http.server
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((self.path, self.headers["content-type"], body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def collector():
    _Collector.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Collector.received
    server.shutdown()
    server.server_close()


def test_spans_are_exported_over_otlp_when_an_endpoint_is_configured(openai_client, collector):
    url, received = collector
    provider = tracing.configure(url)
    try:
        reply = openai_client.chat.completions.create(
            model=HERO, messages=[{"role": "user", "content": "hi"}], max_tokens=8
        )
        assert provider.force_flush(timeout_millis=10_000)
    finally:
        tracing.use_provider(None)
        provider.shutdown()

    assert received, "nothing reached the collector"
    path, content_type, body = received[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    exported = ExportTraceServiceRequest()
    exported.ParseFromString(b"".join(b for _, _, b in received[:1]))
    [resource_spans] = exported.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "llmapi"
    names = [s.name for scope in resource_spans.scope_spans for s in scope.spans]
    assert f"chat {HERO}" in names and any(n.startswith("attempt ") for n in names)
    generation_ids = {
        a.value.string_value
        for scope in resource_spans.scope_spans
        for s in scope.spans
        for a in s.attributes
        if a.key == "llmapi.generation_id"
    }
    assert reply.id in generation_ids


def test_without_an_endpoint_nothing_is_traced(settings):
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = ""
    assert tracing.configure() is None


def test_a_callers_traceparent_puts_the_request_in_the_callers_trace(gateway, spans):
    base_url, secret = gateway
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = httpx.post(
        f"{base_url}/chat/completions",
        json={"model": HERO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
        headers={
            "Authorization": f"Bearer {secret}",
            "traceparent": f"00-{trace_id}-{parent_id}-01",
        },
        timeout=30,
    )
    assert response.status_code == 200
    request, attempts = _by_generation(spans, response.json()["id"])
    assert format(request.context.trace_id, "032x") == trace_id
    assert format(request.parent.span_id, "016x") == parent_id
    assert attempts and all(format(a.context.trace_id, "032x") == trace_id for a in attempts)

    # A malformed header is ignored: the request starts a trace of its own.
    response = httpx.post(
        f"{base_url}/chat/completions",
        json={"model": HERO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
        headers={"Authorization": f"Bearer {secret}", "traceparent": "not-a-trace"},
        timeout=30,
    )
    assert response.status_code == 200
    request, _ = _by_generation(spans, response.json()["id"])
    assert request.parent is None
