"""A page on another origin calls the API from Debian's Chromium: refused until the
organization allows the origin, then answered (CORS, issue 13 point 6)."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from accounts import services as account_services
from tests.routing.test_cors import BODY


class _Page(http.server.BaseHTTPRequestHandler):
    html = b""

    def do_GET(self):  # noqa: N802 - the handler's name
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.html)

    def log_message(self, *args):
        pass


@pytest.fixture
def other_site():
    """A web page on an origin of its own (another port)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


SCRIPT = """async ([url, key]) => {
  try {
    const r = await fetch(url + "/chat/completions", {
      method: "POST",
      headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json"},
      body: JSON.stringify(%s),
    });
    const body = await r.json();
    return {status: r.status, code: body.error ? body.error.code : null,
            text: body.choices ? body.choices[0].message.content : null};
  } catch (e) { return {failed: String(e)}; }
}"""


def test_a_page_in_a_browser_calls_the_api_from_an_allowed_origin(gateway, alice, other_site, page):
    base_url, secret = gateway
    page.goto(other_site)
    script = SCRIPT % json.dumps(BODY)
    refused = page.evaluate(script, [base_url, secret])
    assert refused == {"status": 403, "code": "origin_not_allowed", "text": None}
    account_services.organization_set_allowed_origins(
        organization=alice.org, actor=alice.user, origins=[other_site]
    )
    answered = page.evaluate(script, [base_url, secret])
    assert answered["status"] == 200 and answered["text"]
