"""The live pages reconnect by themselves (issue 12, point 1): when the server closes their
WebSocket (here: the web process restarts, as in a deploy), the overview says "Reconnecting",
the batches page shows its small reconnecting badge, and both come back with backoff once the
server is up again; the overview then moves with new requests as before."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from django.conf import settings
from playwright.sync_api import expect

from tests.billing.test_multiprocess_gateway import _database_url
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class WebProcess:
    """The ASGI app under uvicorn in a process of its own, on a port it keeps across restarts."""

    def __init__(self, *, simulator_url: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DJANGO_DEBUG": "false",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            # The test's sessions (signed with its key) are good in this process too.
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,
            "DATABASE_URL": _database_url(),
            "LLMAPI_API_KEY_PEPPER": settings.API_KEY_PEPPER,
            "LLMAPI_SIMULATOR_URL": simulator_url,
            "LLMAPI_FORCE_SIMULATOR": "true",
            # No worker here: the web process writes its request logs and pushes them itself.
            "LLMAPI_OBS_WRITE_IN_PROCESS": "true",
        }
        if settings.REDIS_URL:
            self.env["REDIS_URL"] = settings.REDIS_URL
        else:
            self.env.pop("REDIS_URL", None)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--timeout-graceful-shutdown",
                "5",
            ],  # fmt: skip
            cwd=settings.BASE_DIR,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, "the web process exited"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the web process did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def web(gateway, sim):
    server = WebProcess(simulator_url=sim.url)
    server.start()
    yield server
    server.stop()


def test_live_pages_reconnect_after_the_server_closes_their_socket(page, web, gateway, alice):
    base_url, secret = gateway
    # Signed in through the test's own server (its password hasher); the session cookie and
    # its row are good on the web process too (cookies don't depend on the port).
    page.goto(f"{base_url.removesuffix('/v1')}/accounts/login/")
    page.locator("input[name=login]").fill(alice.user.email)
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name=re.compile("sign in|log in", re.I)).click()
    page.wait_for_url(re.compile(r"/o/[0-9a-f-]{36}/$"))
    overview_url = web.url + re.sub(r"^https?://[^/]+", "", page.url)
    page.goto(overview_url)
    status = page.get_by_test_id("live-status")
    expect(status).to_have_attribute("data-state", "live")
    page.evaluate("window.__sameDocument = true")

    batches = page.context.new_page()
    batches.goto(f"{overview_url}batches/")
    badge = batches.get_by_test_id("live-reconnecting")
    expect(badge).to_be_hidden()

    web.stop()  # closes every socket
    expect(status).to_have_attribute("data-state", "reconnecting")
    expect(badge).to_be_visible()

    web.start()
    expect(status).to_have_attribute("data-state", "live", timeout=30_000)
    expect(badge).to_be_hidden(timeout=30_000)

    # The new socket carries the organization's updates, on the same page.
    response = httpx.post(
        f"{web.url}/v1/chat/completions",
        json={
            "model": "google/gemini-3.1-flash-lite",
            "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 8,
        },
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert response.status_code == 200
    expect(page.get_by_test_id("fig-requests")).to_have_text("1", timeout=10_000)
    assert page.evaluate("window.__sameDocument") is True
