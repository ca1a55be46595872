"""Schemathesis fuzzes every operation of our OpenAPI schema against the served gateway with a
valid key: whatever it sends (valid and invalid shapes alike), the answer is never a 5xx (502
aside: that is a provider's failure, and the simulator here never fails). Path ids are often
those of a real file and batch of the caller's, so operations are fuzzed past their 404."""

from __future__ import annotations

import json
import os
import re
import zlib

import httpx
import pytest
import schemathesis
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

# More for a deeper local run: LLMAPI_FUZZ_EXAMPLES=500 pytest tests/routing/test_schemathesis.py
EXAMPLES = int(os.environ.get("LLMAPI_FUZZ_EXAMPLES", "25"))
OPENAPI = SchemaGenerator().get_schema(request=None, public=True)
schema = schemathesis.openapi.from_dict(OPENAPI)
HERO = "google/gemini-3.1-flash-lite"


def _v1_routes(patterns, prefix: str = "") -> set[str]:
    """Every /v1 route Django serves, in OpenAPI's path syntax."""
    routes: set[str] = set()
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            routes |= _v1_routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern) and route.startswith("v1/"):
            routes.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))
    return routes


def test_the_schema_describes_every_v1_operation():
    served = _v1_routes(get_resolver().url_patterns) - {"/v1/openapi.json"}
    assert served == set(OPENAPI["paths"])


@pytest.fixture
def fuzz_target(gateway):
    """The server, a valid key, and ids of a real file and batch of the key's organization."""
    base_url, secret = gateway
    headers = {"Authorization": f"Bearer {secret}"}
    line = {
        "custom_id": "1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": HERO, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
    }
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        uploaded = client.post(
            "/files",
            files={"file": ("in.jsonl", json.dumps(line).encode() + b"\n")},
            data={"purpose": "batch"},
        )
        assert uploaded.status_code == 200, uploaded.text
        file_id = uploaded.json()["id"]
        batch = client.post(
            "/batches",
            json={
                "input_file_id": file_id,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
        assert batch.status_code == 200, batch.text
    ids = {"file_id": file_id, "batch_id": batch.json()["id"], "model_id": HERO}
    return base_url.removesuffix("/v1"), headers, ids


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_5xx(case, fuzz_target):
    base_url, headers, ids = fuzz_target
    # Half the time a real id, so the operation runs rather than answering 404.
    for name, value in (case.path_parameters or {}).items():
        if name in ids and zlib.crc32(str(value).encode()) % 2 == 0:
            case.path_parameters[name] = ids[name]
    response = case.call(base_url=base_url, headers=headers, timeout=30)
    case.validate_response(response, checks=[not_a_server_error])
