"""What the three adapters share: the incremental SSE parser, credentials, retry-after,
data URLs, and the registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from routing.providers.anthropic import AnthropicAdapter
from routing.providers.base import ErrorKind, Target, UpstreamError
from routing.providers.common import auth_headers, parse_data_url, retry_after
from routing.providers.gemini import GeminiAdapter
from routing.providers.openai_compat import OpenAIAdapter
from routing.providers.registry import adapter_for
from routing.providers.sse import SSEParser


def parse_in_pieces(body: bytes, size: int) -> list[tuple[str, str]]:
    parser = SSEParser()
    events = []
    for start in range(0, len(body), size):
        events += parser.feed(body[start : start + size])
    return events + parser.finish()


STREAM = (
    b": keep-alive comment\n\n"
    b'event: message_start\ndata: {"a": 1}\n\n'
    b"data: first line\ndata: second line\n\n"
    b"data:no space\n\n"
    b"data:  two spaces keep one\n\n"
    b"id: 7\nretry: 1000\nevent: ping\ndata: {}\n\n"
    b"data: caf\xc3\xa9 \xe2\x82\xac\n\n"
    b"event: orphan\n\n"  # no data: nothing dispatched, and the name doesn't leak on
    b"data: [DONE]\n\n"
)
EXPECTED = [
    ("message_start", '{"a": 1}'),
    ("message", "first line\nsecond line"),
    ("message", "no space"),
    ("message", " two spaces keep one"),
    ("ping", "{}"),
    ("message", "café €"),
    ("message", "[DONE]"),
]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
def test_sse_parser_gives_the_same_events_however_the_bytes_are_split(newline, size):
    assert parse_in_pieces(STREAM.replace(b"\n", newline), size) == EXPECTED


def test_sse_parser_holds_back_a_cr_that_may_start_a_crlf():
    parser = SSEParser()
    assert parser.feed(b"data: one\r") == []
    # The LF completes the CRLF: one line end, not two, so no event yet...
    assert parser.feed(b"\n") == []
    # ...until the blank line.
    assert parser.feed(b"\r\n") == [("message", "one")]


def test_sse_parser_skips_a_byte_order_mark_split_across_reads():
    parser = SSEParser()
    assert parser.feed(b"\xef\xbb") == []
    assert parser.feed(b"\xbfdata: x\n\n") == [("message", "x")]


def test_sse_parser_flushes_a_final_event_without_blank_line():
    parser = SSEParser()
    assert parser.feed(b"data: a\n\ndata: b") == [("message", "a")]
    assert parser.finish() == [("message", "b")]
    assert parser.finish() == []


def test_auth_headers_follow_the_target_auth_kind():
    def target(auth: str, key: str = "k") -> Target:
        return Target("p", "openai", "https://x", key, "m", auth=auth, extra_headers={"x-a": "1"})

    assert auth_headers(target("bearer")) == {
        "content-type": "application/json",
        "authorization": "Bearer k",
        "x-a": "1",
    }
    assert auth_headers(target("x-api-key"))["x-api-key"] == "k"
    assert auth_headers(target("x-goog-api-key"))["x-goog-api-key"] == "k"
    # A local Ollama or vLLM without a key: no empty credential header.
    assert auth_headers(target("bearer", key="")) == {
        "content-type": "application/json",
        "x-a": "1",
    }


def test_retry_after_reads_seconds_milliseconds_and_http_dates():
    assert retry_after({"retry-after": "12"}) == 12.0
    assert retry_after({"Retry-After": "1.5"}) == 1.5
    assert retry_after(httpx.Headers({"Retry-After-Ms": "250"})) == 0.25
    in_30s = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after({"retry-after": in_30s}) <= 30
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


def test_data_urls_give_mime_type_and_base64():
    assert parse_data_url("data:image/png;base64,iVBORw0KGgo=") == ("image/png", "iVBORw0KGgo=")
    assert parse_data_url("data:text/plain,hi%20there") == ("text/plain", "aGkgdGhlcmU=")
    with pytest.raises(UpstreamError) as err:
        parse_data_url("data:image/png;base64")
    assert err.value.kind is ErrorKind.BAD_REQUEST


def test_registry_returns_one_shared_adapter_per_wire_format():
    assert isinstance(adapter_for("openai"), OpenAIAdapter)
    assert isinstance(adapter_for("anthropic"), AnthropicAdapter)
    assert isinstance(adapter_for("gemini"), GeminiAdapter)
    assert adapter_for("gemini") is adapter_for("gemini")
    with pytest.raises(LookupError):
        adapter_for("carrier-pigeon")
