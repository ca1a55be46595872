"""The channel layer down (issue 12, point 1): live pushes give up within about 2 s and never
hold up the request-log writer, a batch runner or a request.

The layer is channels_redis (production's) pointed at a server that accepts connections and
never answers: the worst case, where every command waits for its socket timeout (30 s).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from observability import live
from observability.models import RequestLog
from tests.observability.factories import request_log_for
from tests.routing.batches.test_batches_api import HERO

pytestmark = pytest.mark.django_db(transaction=True)


class SilentServer:
    """Accepts TCP connections and never answers."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.clients: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.clients.append(client)

    def close(self) -> None:
        self.listener.close()
        for client in self.clients:
            client.close()


@pytest.fixture
def layer_down(settings) -> Iterator[SilentServer]:
    silent = SilentServer()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": f"redis://127.0.0.1:{silent.port}/0", "socket_timeout": 30}]
            },
        }
    }
    # Every send tries the layer (no skipping after a failure), so each one is measured.
    settings.OBSERVABILITY_LIVE_DOWN_SECONDS = 0
    yield silent
    silent.close()


def test_a_live_push_gives_up_within_about_two_seconds(layer_down, alice):
    """Before: each push waited for the socket timeout (30 s), holding up the log flush."""
    logs = [request_log_for(alice.org)]
    for _ in range(2):
        started = time.monotonic()
        live.publish(logs=logs)  # never raises
        assert time.monotonic() - started < 3.0


def test_requests_are_served_and_logged_while_the_layer_is_down(openai_client, layer_down):
    for _ in range(5):
        started = time.monotonic()
        reply = openai_client.chat.completions.create(
            model=HERO, messages=[{"role": "user", "content": "hi"}], max_tokens=8
        )
        assert time.monotonic() - started < 2.0
        assert reply.choices[0].message.content
    # The writer isn't held up by the pushes it can't make: the logs are written.
    deadline = time.monotonic() + 20
    while RequestLog.objects.count() < 5:
        assert time.monotonic() < deadline, RequestLog.objects.count()
        time.sleep(0.1)
