"""Errors in the OpenAI shape: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import Http404
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

logger = logging.getLogger(__name__)

# A part the API depends on (PostgreSQL, Redis) is down or too slow: what escaped every
# fallback answers 503 with Retry-After, never a bare 500.
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OperationalError, InterfaceError)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    409: "invalid_request_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    406: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
}


def error_body(message: str, *, status_code: int, code: str | None = None, param=None) -> dict:
    return {
        "error": {
            "message": message,
            "type": _TYPES.get(status_code, "api_error"),
            "param": param,
            "code": code,
        }
    }


def _first_message(detail) -> tuple[str, str | None]:
    """DRF's nested validation detail → one readable message and the field it's about."""
    if isinstance(detail, dict):
        field, value = next(iter(detail.items()))
        message, _ = _first_message(value)
        param = None if field == "non_field_errors" else field
        return (f"{field}: {message}" if param else message), param
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail), None


def openai_exception_handler(exc, context):
    if isinstance(exc, _UNAVAILABLE):
        logger.warning("answered 503, a dependency is unavailable: %r", exc)
        set_rollback()
        return Response(
            error_body(
                "The service is temporarily unavailable; please retry shortly.",
                status_code=503,
                code="service_unavailable",
            ),
            status=503,
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if hasattr(exc, "error_code"):  # routing.errors.GatewayError: already says everything
        body = error_body(
            exc.message, status_code=exc.status_code, code=exc.error_code, param=exc.param
        )
        if exc.error_type:
            body["error"]["type"] = exc.error_type
        if exc.metadata is not None:
            body["error"]["metadata"] = exc.metadata
        response.data = body
        for name, value in exc.extra_headers.items():
            response[name] = value
        return response
    code = getattr(exc, "default_code", None)
    if isinstance(exc, exceptions.APIException) and hasattr(exc, "get_codes"):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else code
    message, param = _first_message(
        response.data
        if isinstance(exc, exceptions.ValidationError)
        else getattr(exc, "detail", str(exc))
    )
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    response.data = error_body(message, status_code=response.status_code, code=code, param=param)
    return response


def _wants_api_error(request) -> bool:
    return request.path.startswith("/v1/")


def handler404(request, exception=None):
    """Unknown /v1 paths answer in the OpenAI shape; pages get the site's 404 page."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if _wants_api_error(request):
        return JsonResponse(
            error_body(
                f"Unknown request URL: {request.method} {request.path}.",
                status_code=404,
                code="unknown_url",
            ),
            status=404,
        )
    return page_not_found(request, exception)


def handler500(request):
    from django.http import JsonResponse
    from django.views.defaults import server_error

    if _wants_api_error(request):
        return JsonResponse(
            error_body("The server had an error processing your request.", status_code=500),
            status=500,
        )
    return server_error(request)
