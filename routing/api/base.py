"""DRF plumbing for the /v1 API, kept off the thread pool: the gateway is async end to end."""

from __future__ import annotations

import inspect
import re
import uuid

import orjson
from adrf.views import APIView
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer

from accounts.selectors import AuthenticatedKey, KeyRejected, api_key_authenticate_async
from config.logging import request_id, trace_parent
from routing.errors import GatewayError

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")


class OrjsonParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        if not raw:
            raise ParseError("The request body is empty; send a JSON object.")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise ParseError(f"The request body is not valid JSON: {error}") from None


class OrjsonRenderer(BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return b"" if data is None else orjson.dumps(data)


class EventStreamRenderer(BaseRenderer):
    """Declared so `Accept: text/event-stream` negotiates instead of answering 406."""

    media_type = "text/event-stream"
    format = "sse"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return orjson.dumps(data)


class GatewayApiView(APIView):
    """adrf's APIView, minus its per-request hop to a thread for `initial()`: with no
    authenticators, permissions or throttles configured here, `initial()` does no I/O."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []
    parser_classes = [OrjsonParser]
    renderer_classes = [OrjsonRenderer, EventStreamRenderer]

    async def async_dispatch(self, request, *args, **kwargs):
        # Every log line of this request carries its id (config.logging), and so does the
        # answer; a caller's own X-Request-Id is kept when it is a sane token.
        given = request.META.get("HTTP_X_REQUEST_ID", "")
        rid = given if _REQUEST_ID.fullmatch(given) else f"req_{uuid.uuid4().hex}"
        request_id.set(rid)
        trace_parent.set(request.META.get("HTTP_TRACEPARENT"))
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            self.initial(request, *args, **kwargs)
            method = request.method.lower()
            handler = getattr(self, method, None) if method in self.http_method_names else None
            if handler is None:
                handler = self.http_method_not_allowed
            response = handler(request, *args, **kwargs)
            if inspect.isawaitable(response):  # our handlers; DRF's own (OPTIONS) are sync
                response = await response
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        self.response["x-request-id"] = rid
        return self.response


MISSING_KEY = (
    "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY' "
    "(or 'x-api-key: YOUR_KEY')."
)
BAD_KEY = "Incorrect API key provided."


def bearer_token(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def unauthorized(message: str, code: str) -> GatewayError:
    return GatewayError(401, message, code=code, headers={"www-authenticate": 'Bearer realm="api"'})


def api_key_of(authorization: str, x_api_key: str) -> str | None:
    """The key a request carries: `Authorization: Bearer KEY` (OpenAI's SDKs) or `x-api-key:
    KEY` (Anthropic's), the former first."""
    return bearer_token(authorization) or (x_api_key.strip() or None)


async def authenticate(request) -> AuthenticatedKey:
    token = api_key_of(
        request.META.get("HTTP_AUTHORIZATION", ""), request.META.get("HTTP_X_API_KEY", "")
    )
    if token is None:
        raise unauthorized(MISSING_KEY, "missing_api_key")
    try:
        key = await api_key_authenticate_async(raw_key=token)
    except KeyRejected as rejected:
        raise unauthorized(rejected.reason, rejected.code) from None
    origin = request.META.get("HTTP_ORIGIN")
    if origin and not key.allows_origin(origin.lower()) and not _same_origin(request, origin):
        raise GatewayError(
            403,
            f"This key does not accept requests from web pages at {origin[:200]}. Add the "
            "origin to the key's browser origins, or to the organization's (Settings).",
            code="origin_not_allowed",
        )
    return key


def _same_origin(request, origin: str) -> bool:
    try:
        return origin.lower() == f"{request.scheme}://{request.get_host()}".lower()
    except Exception:  # DisallowedHost: not ours
        return False


def body_limit(path: str) -> int:
    """The most bytes a request body to `path` may have (longest matching prefix)."""
    best, limit = -1, settings.REQUEST_BODY_MAX_BYTES
    for prefix, bytes_ in settings.REQUEST_BODY_LIMITS.items():
        if path.startswith(prefix) and len(prefix) > best:
            best, limit = len(prefix), bytes_
    return limit


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"The request body is over the {limit // (1024 * 1024)} MiB limit for this endpoint.",
        code="request_too_large",
    )


def read_json(request):
    """The parsed body, with size and type checked (errors in the OpenAI shape)."""
    length = request.META.get("CONTENT_LENGTH")
    limit = body_limit(request.path)
    if length and length.isdigit() and int(length) > limit:
        raise too_large(limit)
    content_type = request.content_type or ""
    if content_type and not content_type.startswith("application/json"):
        raise GatewayError(
            415, "Send the body as JSON (Content-Type: application/json).", code="unsupported_media"
        )
    return request.data
