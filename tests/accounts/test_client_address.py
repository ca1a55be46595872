"""Behind a load balancer, rate limits key on the client's address: two people behind one proxy
are limited separately when the proxy is trusted (ALLAUTH_TRUSTED_PROXY_COUNT), and without a
trusted proxy X-Forwarded-For is ignored (anyone can write it)."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings as django_settings
from django.db import connection
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


# Through the real web process, as platform/Procfile runs it, with the test as the load balancer
# (it connects from 127.0.0.1 and appends the client's address to X-Forwarded-For).

LOGIN_IP_LIMIT = 30  # allauth's "login" rate: 30/m/ip, counted on every POST to the page


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _procfile_web_command() -> str:
    procfile = Path(django_settings.BASE_DIR, "platform", "Procfile").read_text()
    [line] = [line for line in procfile.splitlines() if line.startswith("web:")]
    # Loopback here: the test is the only load balancer.
    return line.removeprefix("web:").strip().replace("--host 0.0.0.0", "--host 127.0.0.1")


class WebProcess:
    def __init__(self, **env: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LLMAPI_"))}
        for name in ("FORWARDED_ALLOW_IPS", "ALLAUTH_TRUSTED_PROXY_COUNT"):
            base.pop(name, None)
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", "exec " + _procfile_web_command()],
            cwd=django_settings.BASE_DIR,
            env={
                **base,
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}",
                "PORT": str(self.port),
                "WEB_CONCURRENCY": "1",
                "DJANGO_SETTINGS_MODULE": "config.settings.local",
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                "DJANGO_DEBUG": "false",
                "DATABASE_URL": _database_url(),
                "REDIS_URL": "",  # this process's own cache holds its rate-limit windows
                **env,
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode(errors="replace"))
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the web process did not start")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()


def _logins_until_limited(server: WebProcess, client_ip: str, attempts: int) -> int:
    """Login posts from one client behind the proxy (empty ones: no password to hash, the
    limit counts them all the same); how many went through before the limit."""
    headers = {"X-Forwarded-For": client_ip}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as http:
        page = http.get("/accounts/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1)
        for n in range(attempts):
            response = http.post("/accounts/login/", data={"csrfmiddlewaretoken": token.decode()})
            if response.status_code == 429:
                return n
            assert response.status_code == 200, response.status_code
    return attempts


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"ALLAUTH_TRUSTED_PROXY_COUNT": "1"}, id="allauth-counts-the-proxy"),
        pytest.param({"FORWARDED_ALLOW_IPS": "127.0.0.1"}, id="uvicorn-trusts-the-proxy"),
    ],
)
def test_behind_the_load_balancer_each_client_has_its_own_limit(env):
    # Whichever layer is told about the proxy, the per-IP limits key on the client.
    server = WebProcess(**{"FORWARDED_ALLOW_IPS": "192.0.2.1", **env})
    try:
        assert _logins_until_limited(server, "203.0.113.5", 40) == LOGIN_IP_LIMIT
        # Someone else behind the same load balancer still gets to try.
        assert _logins_until_limited(server, "203.0.113.6", 1) == 1
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_without_a_trusted_proxy_the_web_process_ignores_the_header():
    server = WebProcess(FORWARDED_ALLOW_IPS="192.0.2.1")  # not the address we come from
    try:
        assert _logins_until_limited(server, "203.0.113.5", 40) == LOGIN_IP_LIMIT
        # A new X-Forwarded-For is no way out: it's the same peer.
        assert _logins_until_limited(server, "203.0.113.6", 1) == 0
    finally:
        server.stop()
