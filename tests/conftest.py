"""Shared fixtures. alice owns "Acme", bob is a developer in Acme, charlie owns "Globex" and
must never see anything of Acme's."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from asgiref.sync import SyncToAsync
from django.core.cache import cache
from django.db import connections

from accounts import services
from accounts.api_key_auth import key_cache, last_used
from accounts.models import Membership, Organization, Role, User
from tests.factories import UserFactory

PASSWORD = "correct horse battery"

pytest_plugins = ["tests.routing.gateway_fixtures"]


@dataclass
class Tenant:
    user: User
    org: Organization
    membership: Membership


def _reset_billing_state() -> None:
    import billing.holds

    billing.holds.org_snapshots.clear_local()
    billing.holds._store = None


def _reset_cooldowns() -> None:
    # A test that made Redis or the database fail must not leave the next one in a cooldown.
    from config import cooldown, db

    for each in list(cooldown._redis.values()):
        each.reset()
    db.unreachable.reset()
    # Nor in the live layer's: pushes skipped after a channel layer that was down.
    import config.live

    config.live._layer_down_until = 0.0


@pytest.fixture(autouse=True)
def _fresh_caches():
    # The cache outlives a test's database transaction; stale keys would leak between tests.
    cache.clear()
    key_cache.clear_local()
    _reset_billing_state()
    _reset_cooldowns()
    yield
    key_cache.clear_local()
    last_used.discard()
    # What the test's hold store still queues belongs to a test that is over: dropped here,
    # it isn't written at exit into a database that is gone by then.
    _reset_billing_state()
    # The tasks (shared_task) follow the current Celery app: a test that left another app
    # current would send every later test's tasks to its broker, gone by then.
    from celery import current_app

    assert current_app.main == "llmapi", f"the test left Celery app {current_app.main!r} current"


@pytest.fixture(scope="session", autouse=True)
def _end_stray_connections(django_db_setup, django_db_blocker):
    """Connections opened in worker threads (async ORM, ASGI request threads, the live
    server) can outlive their thread; PostgreSQL won't drop a test database they hold."""
    yield
    with django_db_blocker.unblock():
        connection = connections["default"]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture(autouse=True)
def _close_async_orm_connection():
    # The async ORM (and Channels' sync views) query from sync_to_async's one worker thread,
    # which keeps its connection open; PostgreSQL won't drop a test database while it is.
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture
def alice(db) -> Tenant:
    user = UserFactory(email="alice@example.com")
    org = services.organization_create(user=user, name="Acme")
    return Tenant(
        user=user, org=org, membership=Membership.objects.get(user=user, organization=org)
    )


@pytest.fixture
def bob(alice) -> Tenant:
    user = UserFactory(email="bob@example.com")
    membership = Membership.objects.create(organization=alice.org, user=user, role=Role.DEVELOPER)
    return Tenant(user=user, org=alice.org, membership=membership)


@pytest.fixture
def charlie(db) -> Tenant:
    user = UserFactory(email="charlie@example.com")
    org = services.organization_create(user=user, name="Globex")
    return Tenant(
        user=user, org=org, membership=Membership.objects.get(user=user, organization=org)
    )


@pytest.fixture
def login(client):
    def _login(user: User):
        client.force_login(user)
        return client

    return _login


@pytest.fixture
def admin_login(client):
    """Logs a staff member into the admin as production requires: allauth's login page, then
    a TOTP code (the admin refuses staff without a second factor)."""

    def _login(user: User):
        from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
        from django.urls import reverse

        from tests.accounts.test_mfa_and_rate_limits import totp

        secret = generate_totp_secret()
        TOTP.activate(user, secret)
        client.post(reverse("account_login"), {"login": user.email, "password": PASSWORD})
        done = client.post(reverse("mfa_authenticate"), {"code": totp(secret)})
        assert done.status_code == 302, done.status_code
        return client

    return _login


class _ServerThread:
    """The real ASGI application under uvicorn, in a thread, on a free port."""

    def __init__(self) -> None:
        import socket
        import threading

        import uvicorn

        from config.asgi import application

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(
            application, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the ASGI test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def asgi_server(django_db_setup, django_db_blocker):
    """Our gateway served as in production (uvicorn, ASGI), for real HTTP clients such as the
    official openai SDK. Tests using it need committed data: use `transactional_db`."""
    server = _ServerThread()
    server.start()
    yield server
    server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """The request-log writer's thread must not write while a test's tables are emptied (its
    insert and the TRUNCATE deadlock on PostgreSQL); what it still holds then belongs to a
    test that is over."""
    from observability.writer import log_buffer
    from routing.response_store import response_writer

    # Nor a stored response (/v1/responses) still being written behind its answer.
    response_writer.drain()
    with log_buffer.paused():
        try:
            return (yield)
        finally:
            log_buffer.discard()
