"""The ASGI entry point: HTTP through Django (the /v1 API through a lean handler without the
site's middleware), WebSockets through Channels."""

from __future__ import annotations

import logging
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from asgiref.sync import sync_to_async  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from billing.checks import redis_persistence_check  # noqa: E402
from billing.services import usage_outbox_flush  # noqa: E402
from config.loopback import LoopbackOnlyASGI  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402
from observability.writer import log_buffer  # noqa: E402
from routing.asgi import GatewayASGIHandler, cors, limit_body, split_api  # noqa: E402
from routing.http import close_client  # noqa: E402

logger = logging.getLogger("config.asgi")


async def lifespan(scope, receive, send):
    """Startup and shutdown of the server process: close pooled upstream connections."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # Said once per process, where the operator looks (a warning, not a refusal).
            for problem in await sync_to_async(redis_persistence_check)():
                logger.warning("%s %s", problem.msg, problem.hint or "")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            # Write what this process still buffers (settled usage to the ledger, request logs
            # to their queue), then close upstream pools.
            await sync_to_async(usage_outbox_flush, thread_sensitive=False)()
            await sync_to_async(log_buffer.shutdown, thread_sensitive=False)()
            await close_client()
            await send({"type": "lifespan.shutdown.complete"})
            return


# Local settings serve loopback only (config.loopback); elsewhere it passes everything through.
application = LoopbackOnlyASGI(
    ProtocolTypeRouter(
        {
            "http": cors(limit_body(split_api(GatewayASGIHandler(), django_asgi_app))),
            "lifespan": lifespan,
            "websocket": AllowedHostsOriginValidator(
                AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
            ),
        }
    )
)
