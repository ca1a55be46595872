from __future__ import annotations

import atexit

from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"

    def ready(self) -> None:
        from observability.writer import log_buffer
        from routing import events

        # Every finished generation goes to this process's buffer (no I/O on the hot path).
        events.subscribe(log_buffer.sink)
        # Which organizations keep prompt and response bodies (off unless they opt in).
        events.set_body_policy(log_buffer.keeps_bodies)
        from observability import metrics

        events.subscribe(metrics.record_generation)
        events.subscribe_refusals(metrics.record_refusal)
        from observability import tracing

        # Spans for every request and attempt, when an OTLP endpoint is configured.
        tracing.configure()
        # What is still buffered when the process ends is pushed (the ASGI lifespan hook
        # does the same at a graceful shutdown, while the event loop still runs).
        atexit.register(log_buffer.shutdown)
