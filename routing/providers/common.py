"""Pieces the three adapters share: credentials, JSON, retry-after, data URLs, message text,
and the SSE-driven stream decoder they all build on."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

from routing.providers.base import ErrorKind, StreamDecoder, Target, UpstreamError
from routing.providers.sse import SSEParser

loads = orjson.loads


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def auth_headers(target: Target) -> dict[str, str]:
    """content-type, the credential the way target.auth says it travels, extra headers."""
    headers = {"content-type": "application/json"}
    if target.api_key:  # a local vLLM or Ollama may take none
        if target.auth == "x-api-key":
            headers["x-api-key"] = target.api_key
        elif target.auth == "x-goog-api-key":
            headers["x-goog-api-key"] = target.api_key
        else:
            headers["authorization"] = f"Bearer {target.api_key}"
    headers.update(target.extra_headers)
    return headers


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that works on plain dicts as well as httpx.Headers."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    value = header(headers, "retry-after-ms")
    if value is not None:
        try:
            return max(float(value) / 1000, 0.0)
        except ValueError:
            pass
    value = header(headers, "retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def parse_json_body(body: bytes) -> Any:
    try:
        return loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def body_excerpt(body: bytes, limit: int = 300) -> str:
    return body[:limit].decode("utf-8", "replace").strip()


def parse_data_url(url: str) -> tuple[str, str]:
    """`data:<mime>[;base64],<payload>` → (mime type, base64 payload)."""
    meta, comma, payload = url[5:].partition(",")
    if not comma:
        raise UpstreamError(ErrorKind.BAD_REQUEST, "malformed data URL")
    mime, *params = meta.split(";")
    if "base64" not in params:  # percent-encoded; providers want base64
        payload = base64.b64encode(unquote_to_bytes(payload)).decode()
    return (mime or "application/octet-stream"), payload


def image_url_of(part: Mapping[str, Any]) -> str:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str) or not url:
        raise UpstreamError(ErrorKind.BAD_REQUEST, "image_url part without a url")
    return url


def content_text(content: Any) -> str:
    """A message's content (a string or a list of parts) → its text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text") or ""
        for part in content
        if isinstance(part, Mapping) and part.get("type") == "text"
    )


def stop_list(stop: Any) -> list[str]:
    if not stop:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def max_tokens_of(body: Mapping[str, Any]) -> int | None:
    value = body.get("max_completion_tokens")
    if value is None:
        value = body.get("max_tokens")
    return value


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """A tool call's `arguments` JSON string → the object Anthropic and Gemini want."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = loads(arguments)
    except orjson.JSONDecodeError:
        raise UpstreamError(
            ErrorKind.BAD_REQUEST, "tool call arguments are not valid JSON"
        ) from None
    if not isinstance(value, dict):
        raise UpstreamError(ErrorKind.BAD_REQUEST, "tool call arguments must be a JSON object")
    return value


def function_tools(tools: Any) -> list[Mapping[str, Any]]:
    """The `function` objects of an OpenAI tools list (other tool types don't translate)."""
    functions = []
    for tool in tools or ():
        if tool.get("type", "function") != "function" or not isinstance(
            tool.get("function"), Mapping
        ):
            raise UpstreamError(ErrorKind.BAD_REQUEST, "only function tools are supported")
        functions.append(tool["function"])
    return functions


def chunk(delta: dict[str, Any], finish_reason: str | None = None, index: int = 0) -> dict:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason}],
    }


class SSEStreamDecoder(StreamDecoder):
    """Parses SSE and hands each event to `_event`. An UpstreamError raised for an in-stream
    error event surfaces from feed(): at once if nothing else was decoded from that read,
    else the chunks decoded before it are returned first and the next feed() or finish()
    raises it, so no delivered text is lost."""

    def __init__(self) -> None:
        self._sse = SSEParser()
        self._error: UpstreamError | None = None
        self._roles_sent: set[int] = set()
        self.usage = None
        self.done = False

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        if self._error is not None:
            raise self._error
        return self._run(self._sse.feed(data), final=False)

    def finish(self) -> list[dict[str, Any]]:
        if self._error is not None:
            raise self._error
        return self._run(self._sse.finish(), final=True)

    def _run(self, events: list[tuple[str, str]], *, final: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for event, data in events:
            try:
                self._event(event, data, out, final)
            except UpstreamError as exc:
                if not out:
                    raise
                self._error = exc
                break
        return out

    def _event(self, event: str, data: str, out: list[dict[str, Any]], final: bool) -> None:
        raise NotImplementedError

    def _json(self, data: str, final: bool) -> Any:
        try:
            return loads(data)
        except orjson.JSONDecodeError:
            if final:  # the body stopped mid-event: a cut, which `done` already tells
                return None
            raise UpstreamError(
                ErrorKind.OVERLOADED, f"malformed stream event: {data[:200]!r}"
            ) from None

    def _chunk(
        self, delta: dict[str, Any], finish_reason: str | None = None, index: int = 0
    ) -> dict[str, Any]:
        """An OpenAI chunk; the first one of each choice carries role "assistant"."""
        if index not in self._roles_sent:
            self._roles_sent.add(index)
            delta = {"role": "assistant", **delta}
        return chunk(delta, finish_reason, index)
