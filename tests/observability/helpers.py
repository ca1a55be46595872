"""Helpers for observability tests: generation events as the gateway emits them, logged-in
cookies for WebSocket tests, and waiting for the background writer."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from django.conf import settings as django_settings
from django.test import Client

from routing.events import GenerationEvent
from routing.providers.base import Usage


def attempt(provider="google-ai-studio", outcome="ok", status=None, duration_ms=120.0, **extra):
    return {
        "provider": provider,
        "model": "google/gemini-3.1-flash-lite",
        "outcome": outcome,
        "status": status,
        "message": "" if outcome == "ok" else "the provider failed",
        "duration_ms": duration_ms,
        **extra,
    }


def make_event(organization, **overrides) -> GenerationEvent:
    now = time.time()
    values = {
        "generation_id": f"gen-{uuid.uuid4().hex}",
        "organization_id": str(organization.id),
        "key_id": str(uuid.uuid4()),
        "requested_model": "google/gemini-3.1-flash-lite",
        "model": "google/gemini-3.1-flash-lite",
        "provider": "google-ai-studio",
        "endpoint_id": 1,
        "usage": Usage(prompt_tokens=12, completion_tokens=30, cached_tokens=2, reasoning_tokens=0),
        "cost_nanousd": 4_600,
        "streamed": False,
        "error": None,
        "attempts": (attempt(),),
        "received_at": now - 0.5,
        "finished_at": now,
    }
    values.update(overrides)
    return GenerationEvent(**values)


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


def ws_headers(cookie: bytes | None = None) -> list[tuple[bytes, bytes]]:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie))
    return headers


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(interval)
