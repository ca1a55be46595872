"""Behind a load balancer, rate limits key on the client's address: two people behind one proxy
are limited separately when the proxy is trusted (ALLAUTH_TRUSTED_PROXY_COUNT), and without a
trusted proxy X-Forwarded-For is ignored (anyone can write it)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

PROXY = "10.0.0.7"


@pytest.fixture
def login_limit(settings):
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "login": "3/m/ip"}


def _behind_proxy(forwarded_for: str) -> Client:
    return Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded_for)


def _try_login(client: Client) -> int:
    return client.post(
        reverse("account_login"), {"login": "nobody@example.com", "password": "x"}
    ).status_code


def test_two_clients_behind_a_trusted_proxy_are_limited_separately(db, settings, login_limit):
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    first, second = _behind_proxy("203.0.113.5"), _behind_proxy("203.0.113.6")
    assert [_try_login(first) for _ in range(3)] == [200, 200, 200]
    assert _try_login(first) == 429
    # The other person behind the same proxy is not held back by the first one's attempts.
    assert _try_login(second) == 200
    # The proxy appends the address it saw: what the client wrote before it is not trusted.
    spoofing = _behind_proxy("198.51.100.9, 203.0.113.5")
    assert _try_login(spoofing) == 429


def test_without_a_trusted_proxy_the_header_is_ignored(db, settings, login_limit):
    assert settings.ALLAUTH_TRUSTED_PROXY_COUNT == 0  # the default
    clients = [_behind_proxy(f"203.0.113.{n}") for n in range(5)]
    # Every request comes from the proxy's address, whatever the header says: a client can't
    # escape the limit by writing a new X-Forwarded-For each time.
    assert [_try_login(client) for client in clients[:3]] == [200, 200, 200]
    assert _try_login(clients[3]) == 429
    assert _try_login(clients[4]) == 429
