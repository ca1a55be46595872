"""Errors the gateway answers with, in the OpenAI shape (see accounts.api.errors)."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import APIException


class GatewayError(APIException):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status
        self.message = message
        self.error_code = code
        self.param = param
        self.error_type = error_type
        self.extra_headers = headers or {}
        self.metadata = metadata


def bad_request(message: str, *, param: str | None = None, code: str | None = None):
    return GatewayError(400, message, param=param, code=code or "invalid_request")


# What a caller is told of a provider's failure, by kind: never the provider's own words, which
# can carry our account details there (account and project ids, quotas, key fragments). The
# request log keeps those for us.
_UPSTREAM_FAILURES = {
    "timeout": "The provider did not answer in time.",
    "rate_limited": "The provider is rate limiting requests.",
    "overloaded": "The provider failed or is overloaded.",
    "connection": "The provider could not be reached.",
    "stream_cut": "The provider's answer broke off.",
    "context_length_exceeded": "The request does not fit the model's context window.",
    "content_filtered": "The provider's content filter refused the request.",
    "bad_request": "The provider refused the request as invalid.",
    "auth": "The provider refused our access; another provider may serve the model.",
    "not_found": "The provider does not serve this model at the moment.",
    "hold_spent": "The attempts so far used what this request was held for.",
}


def upstream_failure(kind: str, status: int | None = None) -> str:
    """A provider's failure in our words, by kind (and HTTP status when there was one)."""
    text = _UPSTREAM_FAILURES.get(str(kind))
    if text is None:
        text = (
            "The provider refused the request."
            if status is not None and 400 <= status < 500
            else "The provider failed."
        )
    return f"{text} (HTTP {status})" if status is not None else text


def upstream_message(error) -> str:
    """An UpstreamError as a caller may see it: our own words as they are (a part an adapter
    can't translate, say), the provider's replaced by upstream_failure()."""
    if getattr(error, "from_provider", True):
        return upstream_failure(error.kind, error.status)
    return error.message
