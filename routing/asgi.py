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
