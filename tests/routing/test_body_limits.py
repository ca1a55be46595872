"""Request bodies are bounded before they are read: a declared length over the limit answers 413
at once, a chunked body as soon as it crosses the limit, and an API request without a
well-formed key answers 401 before its body is read. Driven over raw sockets against the real
server, which is the only way to see how much of a body the server took."""

from __future__ import annotations

import json
import select
import socket
import time
from urllib.parse import urlsplit

import httpx

MiB = 1024 * 1024
CHUNK = 64 * 1024


def _connect(base_url: str) -> socket.socket:
    url = urlsplit(base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    # Small buffers: what the server did not read stays with the sender, so bytes sent is close
    # to bytes the server took.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    return sock


def _head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict]:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        part = sock.recv(65536)
        if not part:
            break
        rest += part
    return status, json.loads(rest[:length]) if length else {}


def _send_chunked(sock: socket.socket, total: int) -> tuple[int, float]:
    """Send up to `total` bytes as chunks until the server answers or hangs up; returns how
    many bytes went out and how long it took."""
    chunk = f"{CHUNK:x}\r\n".encode() + b" " * CHUNK + b"\r\n"
    sent = 0
    pending = chunk
    started = time.monotonic()
    sock.setblocking(False)
    try:
        while sent < total and time.monotonic() - started < 60:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                break  # the server answered (or closed): it stopped reading
            if writable:
                try:
                    n = sock.send(pending)
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += n
                pending = pending[n:] or chunk
    finally:
        sock.setblocking(True)
    return sent, time.monotonic() - started


def test_a_huge_chunked_body_without_a_key_is_refused_before_it_is_read(gateway):
    base_url, _ = gateway
    with _connect(base_url) as sock:
        sock.sendall(
            _head(
                "/v1/chat/completions",
                {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            )
        )
        sent, elapsed = _send_chunked(sock, 100 * MiB)
        status, body = _read_response(sock)
    assert status == 401
    assert body["error"]["code"] == "missing_api_key"
    assert body["error"]["type"] == "authentication_error"
    # Only what the sockets' buffers hold went out, not the 100 MiB (read to the end before).
    assert sent < 8 * MiB, sent
    assert elapsed < 5


def test_a_malformed_key_is_refused_before_the_body_is_read(gateway):
    base_url, _ = gateway
    with _connect(base_url) as sock:
        sock.sendall(
            _head(
                "/v1/chat/completions",
                {
                    "Authorization": "Bearer llmapi_not-a-real-key",
                    "Content-Type": "application/json",
                    "Transfer-Encoding": "chunked",
                },
            )
        )
        sent, _ = _send_chunked(sock, 100 * MiB)
        status, body = _read_response(sock)
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"
    assert sent < 8 * MiB, sent


def test_a_chunked_body_with_a_key_is_cut_off_at_the_limit(gateway, settings):
    base_url, secret = gateway
    with _connect(base_url) as sock:
        sock.sendall(
            _head(
                "/v1/chat/completions",
                {
                    "Authorization": f"Bearer {secret}",
                    "Content-Type": "application/json",
                    "Transfer-Encoding": "chunked",
                },
            )
        )
        sent, elapsed = _send_chunked(sock, 100 * MiB)
        status, body = _read_response(sock)
    assert status == 413
    assert body["error"]["code"] == "request_too_large"
    assert body["error"]["type"] == "invalid_request_error"
    limit = settings.REQUEST_BODY_MAX_BYTES
    assert limit <= sent < limit + 8 * MiB, sent
    assert elapsed < 20


def test_a_declared_length_over_the_limit_is_refused_at_once(gateway):
    base_url, secret = gateway
    with _connect(base_url) as sock:
        started = time.monotonic()
        sock.sendall(
            _head(
                "/v1/chat/completions",
                {
                    "Authorization": f"Bearer {secret}",
                    "Content-Type": "application/json",
                    "Content-Length": str(100 * MiB),
                },
            )
        )
        status, body = _read_response(sock, timeout=5)  # not a byte of the body sent
        elapsed = time.monotonic() - started
    assert status == 413
    assert body["error"]["code"] == "request_too_large"
    assert elapsed < 2


def test_site_pages_have_the_same_limit(gateway):
    base_url, _ = gateway
    with _connect(base_url) as sock:
        sock.sendall(_head("/accounts/login/", {"Content-Length": str(100 * MiB)}))
        status, body = _read_response(sock, timeout=5)
    assert status == 413
    assert body["error"]["code"] == "request_too_large"


def test_files_have_a_larger_limit(gateway):
    """A 25 MiB upload is over the general limit but within /v1/files': the server waits for
    the body instead of refusing it."""
    base_url, secret = gateway
    with _connect(base_url) as sock:
        sock.sendall(
            _head(
                "/v1/files",
                {
                    "Authorization": f"Bearer {secret}",
                    "Content-Type": "multipart/form-data; boundary=x",
                    "Content-Length": str(25 * MiB),
                },
            )
        )
        readable, _, _ = select.select([sock], [], [], 1.0)
    assert not readable


def test_a_chunked_body_within_the_limit_is_served(gateway):
    base_url, secret = gateway
    payload = json.dumps(
        {
            "model": "google/gemini-3.1-flash-lite",
            "messages": [{"role": "user", "content": "Hello " + "x" * 200_000}],
            "max_tokens": 16,
        }
    ).encode()

    def chunks():  # an iterator: httpx sends it with Transfer-Encoding: chunked
        for start in range(0, len(payload), 10_000):
            yield payload[start : start + 10_000]

    response = httpx.post(
        f"{base_url}/chat/completions",
        content=chunks(),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"
