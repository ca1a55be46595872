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
