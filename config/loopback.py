"""The default (local) settings serve loopback only.

With DEBUG on and the development secret key (both public: anyone can sign sessions and read
tracebacks), a server bound to 0.0.0.0 would hand the dashboard to the whole network. Local
settings turn SERVE_LOOPBACK_ONLY on; then a request that reaches the server on an address
other than loopback, or comes from one, answers 403. Production and test settings leave it off.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings

MESSAGE = (
    b"Refused: these are development settings (DEBUG with the development secret key), which "
    b"serve loopback only. Set DJANGO_SETTINGS_MODULE=config.settings.production, or your own "
    b"DJANGO_SECRET_KEY and DJANGO_DEBUG=false, to serve anyone else.\n"
)


def is_loopback(host: str | None) -> bool:
    if host is None or host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        # Not an address: a Unix socket's path (local by nature) or a name we can't vouch for.
        return host.startswith("/")
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _scope_is_loopback(scope) -> bool:
    server, client = scope.get("server"), scope.get("client")
    return is_loopback(server[0] if server else None) and is_loopback(client[0] if client else None)


class LoopbackOnlyASGI:
    """Wraps the ASGI application; a settings read per connection when off."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if (
            scope["type"] in ("http", "websocket")
            and settings.SERVE_LOOPBACK_ONLY
            and not _scope_is_loopback(scope)
        ):
            if scope["type"] == "websocket":
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 4403})
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send({"type": "http.response.body", "body": MESSAGE})
            return
        await self.app(scope, receive, send)


class LoopbackOnlyWSGI:
    """The same for WSGI servers (runserver), which only know the client's address."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        if settings.SERVE_LOOPBACK_ONLY and not is_loopback(environ.get("REMOTE_ADDR")):
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")])
            return [MESSAGE]
        return self.app(environ, start_response)
