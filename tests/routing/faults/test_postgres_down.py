"""PostgreSQL restarted or unreachable under the /v1 path (issue 12, point 2).

A server process of the gateway (uvicorn, with its psycopg connection pool, as deployed) runs
on the test's database. Its connections are killed with pg_terminate_backend (what a
PostgreSQL restart or failover does to them): the next requests are served, not answered 500.
Then the way to the database is cut by a TCP proxy of the test's own in front of the shared
server (which is never stopped): keys the process knows keep being served from the caches,
while a key it never saw gets a 503 in the OpenAI shape, within a bounded wait; once the
database is back, what was served meanwhile reaches the ledger and the request logs.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid

import httpx
import pytest
from django.core.cache import cache
from django.db import connection

import billing.holds
from accounts import services as account_services
from accounts.api_key_auth import KeyCache
from billing.holds import RedisHoldStore
from billing.models import LedgerEntry
from billing.tasks import flush_usage
from observability.models import RequestLog
from observability.services import request_logs_flush
from tests.billing.test_multiprocess_gateway import (
    HERO,
    Servers,
    _free_port,
    _redis_url,
)
from tests.billing.test_multiprocess_gateway import ready as ready  # a fixture

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": HERO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


class DatabaseProxy:
    """A TCP proxy on a free loopback port in front of PostgreSQL. `cut()` drops every
    connection through it and refuses new ones (the database is unreachable); `restore()`
    lets them through again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = _free_port()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            if self._listener is not listener:
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would leave the
            # socket listening until that accept returned.
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self.start()

    @property
    def url(self) -> str:
        db = connection.settings_dict
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        return f"postgres://{auth}@127.0.0.1:{self.port}/{db['NAME']}"


@pytest.fixture
def proxy():
    db = connection.settings_dict
    server = DatabaseProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    server.start()
    yield server
    server.cut()


def _servers(sim, tmp_path, **extra_env) -> Servers:
    return Servers(
        count=1,
        stderr=(tmp_path / "server.log").open("wb"),
        simulator_url=sim.url,
        prefix=f"pgfaults:{uuid.uuid4().hex[:10]}",
        extra_env=extra_env,
    )


def _key(alice, name: str, *, cold: bool = False) -> str:
    key, secret = account_services.api_key_create(
        organization=alice.org, created_by=alice.user, name=name
    )
    if cold:
        # Creating a key writes it to the shared cache; a cold key is one no cache has
        # (created elsewhere long ago, its cache entry expired): only the database knows it.
        cache.delete(KeyCache.cache_key(key.hashed_key))
    return secret


def _chat(http: httpx.Client, url: str, secret: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = http.post(
        f"{url}/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {secret}"}
    )
    return response, time.monotonic() - started


def test_connections_postgres_killed_are_replaced_before_a_request_sees_them(ready, sim, tmp_path):
    alice = ready
    servers = _servers(sim, tmp_path)
    try:
        url = servers.url(0)
        secrets = [_key(alice, f"key{i}", cold=True) for i in range(3)]
        with httpx.Client(timeout=30) as http:
            response, _ = _chat(http, url, secrets[0])
            assert response.status_code == 200, response.text
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                assert cursor.fetchone()[0] >= 1  # the server's pooled connection(s)
            # Keys never seen by the server: each request needs the database.
            for secret in secrets[1:]:
                info = http.get(f"{url}/key", headers={"Authorization": f"Bearer {secret}"})
                assert info.status_code == 200, info.text
                response, _ = _chat(http, url, secret)
                assert response.status_code == 200, response.text
    finally:
        servers.stop()


def test_postgres_unreachable_warm_keys_serve_cold_keys_get_503_and_nothing_is_lost(
    ready, sim, tmp_path, proxy, settings
):
    alice = ready
    servers = _servers(sim, tmp_path, DATABASE_URL=proxy.url)
    try:
        url = servers.url(0)
        warm = _key(alice, "warm")
        cold = _key(alice, "cold", cold=True)
        served: list[str] = []
        with httpx.Client(timeout=30) as http:
            for _ in range(2):
                response, _ = _chat(http, url, warm)
                assert response.status_code == 200, response.text
                served.append(response.json()["id"])

            proxy.cut()
            for _ in range(5):
                response, _ = _chat(http, url, warm)
                assert response.status_code == 200, response.text
                served.append(response.json()["id"])

            response, took = _chat(http, url, cold)
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert set(error) >= {"message", "type", "param", "code"}
            assert error["code"] == "service_unavailable"
            assert response.headers["retry-after"] == "1"
            print(f"\nPostgreSQL unreachable: a cold key's 503 took {took * 1000:.0f} ms")
            assert took < 8.0  # the pool's wait (5 s), not a hang

            # The warm key is still served after the cold key's wait.
            response, _ = _chat(http, url, warm)
            assert response.status_code == 200, response.text
            served.append(response.json()["id"])

            proxy.restore()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                response, _ = _chat(http, url, cold)
                if response.status_code == 200:
                    break
                assert response.status_code == 503, response.text
                time.sleep(0.5)
            assert response.status_code == 200, response.text
            served.append(response.json()["id"])

        # What the deployment's Celery workers do, here: write what is queued for the ledger
        # and the request logs. Everything served during the outage is there.
        settings.REDIS_URL = _redis_url()
        settings.BILLING_REDIS_PREFIX = servers.prefix
        billing.holds._store = RedisHoldStore(_redis_url(), prefix=servers.prefix)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            flush_usage()
            request_logs_flush()
            billed = LedgerEntry.objects.filter(reference__in=served).count()
            logged = RequestLog.objects.filter(generation_id__in=served).count()
            if (billed, logged) == (len(served), len(served)):
                break
            time.sleep(0.5)
        assert (billed, logged) == (len(served), len(served))
    finally:
        servers.stop()
        billing.holds._store = None
