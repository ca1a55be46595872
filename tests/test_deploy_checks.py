"""Production settings pass Django's deployment checklist, and refuse to start without secrets."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application as asgi_application
from config.wsgi import application as wsgi_application

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_ALLOWED_HOSTS": "api.example.com",
    "EMAIL_HOST": "smtp.example.com",
    # Never connected to by `check` unless the persistence check is on (then it warns).
    "REDIS_URL": "redis://127.0.0.1:1/0",
}


# Every provider the catalog enables, configured (never called: `check` makes no request).
PROVIDER_CREDENTIALS = {
    "GOOGLE_AI_STUDIO_API_KEY": "test-google",
    "VERTEX_AI_ACCESS_TOKEN": "test-vertex",
    "VERTEX_PROJECT": "test-project",
    "OPENROUTER_API_KEY": "test-openrouter",
    "PRIVATE_VLLM_BASE_URL": "https://vllm.example.com/v1",
    "PRIVATE_VLLM_API_KEY": "test-vllm",
    "OPENAI_API_KEY": "test-openai",
    "ANTHROPIC_API_KEY": "test-anthropic",
}


def _secrets() -> dict[str, str]:
    return {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "LLMAPI_API_KEY_PEPPER": secrets.token_urlsafe(32),
        "LLMAPI_METRICS_TOKEN": secrets.token_urlsafe(32),
    }


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "LLMAPI_")) and k not in PROVIDER_CREDENTIALS
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_under_production_settings():
    # Secrets generated per run: production secrets never have a default or a fixture value.
    # The test machine's Redis keeps nothing on disk, which production's persistence check
    # rightly warns about (tests/billing/test_attacks_durability.py checks that warning).
    env = {
        **PRODUCTION_ENV,
        **_secrets(),
        **PROVIDER_CREDENTIALS,
        "LLMAPI_CHECK_REDIS_PERSISTENCE": "false",
    }
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_its_secrets():
    for missing in ("DJANGO_SECRET_KEY", "LLMAPI_API_KEY_PEPPER", "LLMAPI_METRICS_TOKEN"):
        env = {**PRODUCTION_ENV, **_secrets(), **PROVIDER_CREDENTIALS}
        del env[missing]
        result = _manage("check", env=env)
        assert result.returncode != 0
        assert missing in result.stderr


def test_production_refuses_to_start_with_a_provider_that_has_no_credentials():
    """Before: a provider without credentials was silently played by the simulator, in
    production too. Now each one is an error, naming its variable."""
    env = {**PRODUCTION_ENV, **_secrets(), **PROVIDER_CREDENTIALS}
    del env["ANTHROPIC_API_KEY"]
    del env["PRIVATE_VLLM_BASE_URL"]
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "routing.E001" in result.stderr
    assert "Provider 'anthropic'" in result.stderr and "ANTHROPIC_API_KEY" in result.stderr
    assert "Provider 'private-vllm'" in result.stderr
    assert "Provider 'openai'" not in result.stderr


def test_forcing_the_simulator_in_production_is_explicit_and_warned():
    """Benchmarks run production settings on the simulator on purpose: a warning, not an
    error, and nothing is billed (see test_attacks_pricing)."""
    env = {**PRODUCTION_ENV, **_secrets(), "LLMAPI_FORCE_SIMULATOR": "true"}
    result = _manage("check", env=env)
    assert result.returncode == 0, result.stderr
    assert "routing.W001" in result.stderr + result.stdout


def test_production_refuses_to_start_without_redis():
    """Before: production settings without REDIS_URL started, with rate limits, spend holds
    and the key cache kept per process (every limit multiplied by the number of processes)."""
    env = {**PRODUCTION_ENV, **_secrets(), **PROVIDER_CREDENTIALS}
    env["REDIS_URL"] = ""  # unset, whatever the machine's environment says
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "Set the REDIS_URL" in result.stderr


# The default (local) settings, with DEBUG and the development secret key, serve loopback only.

SETTING = "from django.conf import settings; print(settings.SERVE_LOOPBACK_ONLY)"


def _local_setting(**env: str) -> str:
    result = _manage(
        "shell", "-c", SETTING, env={"DJANGO_SETTINGS_MODULE": "config.settings.local", **env}
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_local_settings_with_debug_and_the_known_secret_serve_loopback_only():
    assert _local_setting() == "True"
    # Your own secret and no DEBUG: you decide where to serve.
    assert _local_setting(DJANGO_SECRET_KEY=secrets.token_urlsafe(50)) == "False"
    assert _local_setting(DJANGO_DEBUG="false") == "False"


@pytest.fixture
def loopback_only(settings):
    settings.SERVE_LOOPBACK_ONLY = True


async def _get(path: str, *, server: str, client: str = "127.0.0.1") -> httpx.Response:
    transport = httpx.ASGITransport(app=asgi_application, client=(client, 5555))
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{server}:8000") as http:
        return await http.get(path)


@pytest.mark.django_db
async def test_a_request_on_a_non_loopback_address_is_refused(loopback_only):
    # Served on 0.0.0.0 and reached through the machine's network address: 403, for pages
    # and the API alike, before anything else runs.
    for path in ("/healthz", "/accounts/login/", "/v1/models"):
        refused = await _get(path, server="192.0.2.10")
        assert refused.status_code == 403
        assert b"development settings" in refused.content
    assert (await _get("/healthz", server="192.0.2.10", client="192.0.2.99")).status_code == 403
    # From another machine, even through a loopback-bound proxy's address.
    assert (await _get("/healthz", server="127.0.0.1", client="192.0.2.99")).status_code == 403
    # On loopback (IPv4, IPv6, by name) it serves.
    assert (await _get("/healthz", server="127.0.0.1")).status_code == 200
    assert (await _get("/healthz", server="[::1]", client="::1")).status_code == 200
    assert (await _get("/healthz", server="localhost")).status_code == 200


@pytest.mark.django_db
async def test_a_websocket_on_a_non_loopback_address_is_refused(loopback_only):
    communicator = WebsocketCommunicator(
        asgi_application,
        "/ws/platform/live/",
        headers=[(b"origin", b"http://localhost"), (b"host", b"localhost")],
    )
    communicator.scope["server"] = ("192.0.2.10", 8000)
    assert await communicator.connect() == (False, 4403)


@pytest.mark.django_db
def test_the_wsgi_entry_point_refuses_other_machines_too(loopback_only):
    def call(remote_addr: str) -> str:
        statuses = []
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/healthz",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "8000",
            "REMOTE_ADDR": remote_addr,
            "wsgi.input": io.BytesIO(),
            "wsgi.url_scheme": "http",
        }
        b"".join(wsgi_application(environ, lambda status, headers: statuses.append(status)))
        return statuses[0]

    assert call("192.0.2.99").startswith("403")
    assert call("127.0.0.1").startswith("200")


def test_production_and_test_settings_serve_every_address(settings):
    assert settings.SERVE_LOOPBACK_ONLY is False
    env = {**PRODUCTION_ENV, **_secrets(), **PROVIDER_CREDENTIALS}
    result = _manage("shell", "-c", SETTING, env=env)
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr
