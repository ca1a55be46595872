"""Schemathesis fuzzes every operation of our OpenAPI schema against the served gateway:
whatever it sends, the answer is never a 5xx (502 aside: that is a provider's failure, and the
simulator here never fails)."""

from __future__ import annotations

import os

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

# More for a deeper local run: LLMAPI_FUZZ_EXAMPLES=500 pytest tests/routing/test_schemathesis.py
EXAMPLES = int(os.environ.get("LLMAPI_FUZZ_EXAMPLES", "25"))
schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))


@pytest.fixture
def fuzz_target(gateway):
    base_url, secret = gateway
    return base_url.removesuffix("/v1"), {"Authorization": f"Bearer {secret}"}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_5xx(case, fuzz_target):
    base_url, headers = fuzz_target
    response = case.call(base_url=base_url, headers=headers, timeout=30)
    case.validate_response(response, checks=[not_a_server_error])
