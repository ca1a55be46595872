"""Image URLs bound for a self-hosted endpoint are fetched by us, safely, and inlined: internal
addresses, redirects, oversized or non-image answers are refused with a 400, and a good image
reaches the provider as a data: URL (what the simulator received proves it)."""

from __future__ import annotations

import base64
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from routing.imagefetch import ImageRefused, fetch_image

HERO = "google/gemini-3.1-flash-lite"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
SELF_HOSTED = "private-vllm"


class _Images(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the standard library's name)
        self.server.hits.append(self.path)
        if self.path == "/cat.png":
            self._answer(200, "image/png", PNG)
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/cat.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/big.png":
            self._answer(200, "image/png", b"\x89PNG" + b"0" * 50_000)
        elif self.path == "/big-undeclared.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"\x89PNG" + b"0" * 50_000)
        elif self.path == "/page":
            self._answer(200, "text/html", b"<html>hi</html>")
        elif self.path == "/slow.png":
            time.sleep(3)
            self._answer(200, "image/png", PNG)
        else:
            self._answer(404, "text/plain", b"no")

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def images():
    """A real image server on loopback: `.url(path)`, `.hits`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    server.hits = []
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = lambda path: f"http://127.0.0.1:{server.server_address[1]}{path}"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def loopback_allowed(settings):
    settings.ROUTING_IMAGE_FETCH_ALLOW_LOOPBACK = True
    settings.ROUTING_IMAGE_FETCH_MAX_BYTES = 10_000
    settings.ROUTING_IMAGE_FETCH_TIMEOUT = 1.0


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5/a.png",
        "http://192.168.1.1/a.png",
        "http://172.16.3.4/a.png",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        "http://[fe80::1]/a.png",
        "http://[fc00::1]/a.png",
        "http://[::ffff:10.0.0.1]/a.png",
        "http://224.0.0.1/a.png",  # multicast
        "http://240.0.0.1/a.png",  # reserved
        "http://0.0.0.0/a.png",
        "http://100.64.0.1/a.png",  # carrier-grade NAT
    ],
)
async def test_internal_addresses_are_refused(url, loopback_allowed):
    with pytest.raises(ImageRefused, match="not a public internet address"):
        await fetch_image(url)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]"])
async def test_loopback_is_refused_by_default(host, images, settings):
    assert settings.ROUTING_IMAGE_FETCH_ALLOW_LOOPBACK is False
    port = images.server_address[1]
    with pytest.raises(ImageRefused, match="not a public internet address"):
        await fetch_image(f"http://{host}:{port}/cat.png")
    assert images.hits == []


async def test_a_good_image_is_inlined(images, loopback_allowed):
    data_url = await fetch_image(images.url("/cat.png"))
    assert data_url == "data:image/png;base64," + base64.b64encode(PNG).decode()


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/redirect", "redirects"),
        ("/big.png", "over"),
        ("/big-undeclared.png", "over"),
        ("/page", "content type"),
        ("/missing.png", "HTTP 404"),
        ("/slow.png", "too long"),
    ],
)
async def test_unsafe_answers_are_refused(path, reason, images, loopback_allowed):
    started = time.monotonic()
    with pytest.raises(ImageRefused, match=reason):
        await fetch_image(images.url(path))
    assert time.monotonic() - started < 2.5
    assert images.hits == [path]  # the redirect's target was never fetched


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://example.com/", "http://user:pw@example.com/a.png"]
)
async def test_other_schemes_and_credentials_are_refused(url):
    with pytest.raises(ImageRefused):
        await fetch_image(url)


def _chat(gateway, url: str):
    base_url, secret = gateway
    return httpx.post(
        f"{base_url}/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={
            "model": HERO,
            "max_tokens": 16,
            "provider": {"only": [SELF_HOSTED]},
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
                    ],
                }
            ],
        },
        timeout=30,
    )


def test_a_self_hosted_endpoint_receives_the_image_inlined(gateway, sim, images, loopback_allowed):
    response = _chat(gateway, images.url("/cat.png"))
    assert response.status_code == 200, response.text
    assert response.json()["provider"] == SELF_HOSTED
    sent = sim.last_request(SELF_HOSTED)
    part = sent["messages"][0]["content"][1]
    assert part["image_url"] == {
        "url": "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "detail": "low",
    }
    assert images.hits == ["/cat.png"]


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/iam/", "http://10.1.2.3/x.png", "/redirect"]
)
def test_a_self_hosted_endpoint_never_sees_an_unsafe_url(
    gateway, sim, images, loopback_allowed, url
):
    if url.startswith("/"):
        url = images.url(url)
    response = _chat(gateway, url)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "image_url_refused"
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages"
    assert sim.stats(SELF_HOSTED)["requests"] == 0


def test_loopback_stays_refused_through_the_gateway(gateway, sim, images):
    response = _chat(gateway, images.url("/cat.png"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "image_url_refused"
    assert images.hits == []
    assert sim.stats(SELF_HOSTED)["requests"] == 0
