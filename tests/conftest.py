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


@dataclass
class Tenant:
    user: User
    org: Organization
    membership: Membership


@pytest.fixture(autouse=True)
def _fresh_caches():
    # The cache outlives a test's database transaction; stale keys would leak between tests.
    cache.clear()
    key_cache.clear_local()
    yield
    key_cache.clear_local()
    last_used.discard()


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
