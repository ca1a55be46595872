"""A lean ASGI handler for the /v1 API.

Django's own handler runs every middleware's sync `process_request`/`process_response` and the
request_started signal through `sync_to_async`: about a dozen thread hops per request, which
profiling showed to be most of the gateway's CPU. The API needs none of that middleware (no
sessions, cookies, CSRF, messages or pages), so /v1 requests skip it; URL resolution, views,
DRF and exception handling are Django's as usual. Code on this path that touches the database
does so through `config.db.run_db` (or at least on asgiref's one shared thread, see __call__),
which does the connection housekeeping the signals would.
"""

from __future__ import annotations

import asyncio

from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import set_script_prefix

API_PREFIX = "/v1/"
MESSAGES_PREFIX = "/v1/messages"


class GatewayASGIHandler(ASGIHandler):
    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"the API handler serves HTTP, not {scope['type']}")
        # No per-request ThreadSensitiveContext: sync code (the rare cache-miss queries) runs
        # on asgiref's one shared thread, whose database connection lives on, instead of on a
        # new thread per request whose connection would never go back to the pool.
        await self.handle(scope, receive, send)

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        get_response = self._get_response_async if is_async else self._get_response
        self._middleware_chain = convert_exception_to_response(get_response)

    def create_request(self, scope, body_file):
        request, error_response = super().create_request(scope, body_file)
        if request is not None and not request.META.get("CONTENT_LENGTH"):
            # A chunked body has no Content-Length, and DRF reads none without one: state the
            # size of what was received (the body limit already bounded it).
            body_file.seek(0, 2)
            size = body_file.tell()
            body_file.seek(0)
            if size:
                request.META["CONTENT_LENGTH"] = str(size)
        return request, error_response

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with body_file:
            set_script_prefix(get_script_prefix(scope))
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                await self.send_response(error_response, send)
                return

            class RequestProcessed(Exception):
                pass

            response = None
            try:
                try:
                    async with asyncio.TaskGroup() as tg:
                        # A client that hangs up cancels the view (and so the upstream call).
                        tg.create_task(self.listen_for_disconnect(receive))
                        response = await self.run_get_response(request)
                        response.headers.setdefault("X-Content-Type-Options", "nosniff")
                        await self.send_response(response, send)
                        raise RequestProcessed
                except* (RequestProcessed, RequestAborted):
                    pass
            except BaseExceptionGroup as group:
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise
            if response is not None:
                response.close()


def split_api(api_app, site_app):
    """Route /v1/ to the lean handler and everything else to Django's full stack."""

    async def app(scope, receive, send):
        if scope["path"].startswith(API_PREFIX):
            return await api_app(scope, receive, send)
        return await site_app(scope, receive, send)

    return app


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def _refuse(send, error, path: str = "") -> None:
    """Answer a GatewayError before the app runs, and close the connection: its unread body is
    never read (uvicorn drains a kept-alive connection's leftover body). In the OpenAI shape,
    or Anthropic's under /v1/messages."""
    import orjson

    if path.startswith(MESSAGES_PREFIX):
        from routing.wires.anthropic import error_body

        body = orjson.dumps(error_body(error.status_code, error.message))
    else:
        body = orjson.dumps(
            {
                "error": {
                    "message": error.message,
                    "type": "authentication_error"
                    if error.status_code == 401
                    else "invalid_request_error",
                    "param": error.param,
                    "code": error.error_code,
                }
            }
        )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"x-content-type-options", b"nosniff"),
    ]
    headers += [(k.encode(), v.encode()) for k, v in error.extra_headers.items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def limit_body(app):
    """Bound every HTTP request body before anything reads it: a declared Content-Length over
    the path's limit, or a chunked body once it crosses it, answers 413; an API request with a
    body but no well-formed key answers 401 before a byte of the body is read. Costs a header
    scan and a byte count per request."""
    from accounts.selectors import api_key_well_formed
    from routing.api.base import (
        BAD_KEY,
        MISSING_KEY,
        api_key_of,
        body_limit,
        too_large,
        unauthorized,
    )

    async def guarded(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        path = scope["path"]
        limit = body_limit(path)
        length = None
        chunked = False
        authorization = x_api_key = ""
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"x-api-key":
                x_api_key = value.decode("latin-1")
        if length is not None and length > limit:
            return await _refuse(send, too_large(limit), path)
        if path.startswith(API_PREFIX) and (chunked or length) and scope["method"] in _BODY_METHODS:
            token = api_key_of(authorization, x_api_key)
            if token is None:
                return await _refuse(send, unauthorized(MISSING_KEY, "missing_api_key"), path)
            if not api_key_well_formed(token):
                return await _refuse(send, unauthorized(BAD_KEY, "invalid_api_key"), path)

        received = 0
        refused = False

        async def counted_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    await _refuse(send, too_large(limit), path)
                    # The app sees a client that left: Django stops reading and answers nothing.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:
                await send(message)

        return await app(scope, counted_receive, guarded_send)

    return guarded


# What a browser page may send and read on /v1 (the SDKs' own headers included).
_CORS_EXPOSE = (
    b"x-request-id, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, "
    b"x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, "
    b"x-ratelimit-reset-tokens, x-llmapi-max-tokens-lowered"
)
_CORS_METHODS = b"GET, POST, DELETE, OPTIONS"
_CORS_DEFAULT_HEADERS = b"authorization, x-api-key, content-type, anthropic-version"


def cors(app):
    """CORS for /v1: a preflight is answered here (it carries no key, so it is allowed for
    any origin), and every answer to a request with an Origin names that origin. Whether the
    origin may use a key is decided with the key (routing.api.base.authenticate: 403
    origin_not_allowed unless the key's or its organization's browser origins list it). No
    cookies are ever accepted on /v1, so no credentials are allowed."""

    async def wrapped(scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            return await app(scope, receive, send)
        origin = requested = None
        method = False
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                method = True
            elif name == b"access-control-request-headers":
                requested = value
        if origin is None:
            return await app(scope, receive, send)
        allow = [
            (b"access-control-allow-origin", origin),
            (b"vary", b"Origin"),
        ]
        if scope["method"] == "OPTIONS" and method:
            headers = allow + [
                (b"access-control-allow-methods", _CORS_METHODS),
                (b"access-control-allow-headers", requested or _CORS_DEFAULT_HEADERS),
                (b"access-control-max-age", b"600"),
                (b"content-length", b"0"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def cors_send(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"vary"]
                headers += allow + [(b"access-control-expose-headers", _CORS_EXPOSE)]
                message = {**message, "headers": headers}
            await send(message)

        return await app(scope, receive, cors_send)

    return wrapped
