"""Structured logs: one JSON object per line with the request's id, never a key's secret."""

from __future__ import annotations

import io
import json
import logging

import httpx

from config.logging import JsonFormatter, RequestIdFilter


def test_a_requests_log_lines_carry_its_id_and_never_the_key(gateway, sim):
    base_url, secret = gateway
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        bad = httpx.post(
            f"{base_url}/chat/completions",
            json={"model": "nobody/nothing", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {secret}", "X-Request-Id": "trace-abc.123"},
            timeout=30,
        )
        ok = httpx.post(
            f"{base_url}/chat/completions",
            json={
                "model": "google/gemini-3.1-flash-lite",
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        )
    finally:
        root.removeHandler(handler)
    assert bad.status_code == 404
    assert bad.headers["x-request-id"] == "trace-abc.123"
    assert ok.headers["x-request-id"].startswith("req_")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [line for line in lines if line["request_id"] == "trace-abc.123"]
    assert mine, lines
    assert {"time", "level", "logger", "message"} <= set(mine[0])
    assert "/v1/chat/completions" in mine[0]["message"]
    assert secret not in stream.getvalue()
