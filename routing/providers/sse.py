"""An incremental Server-Sent Events parser: bytes in, (event, data) pairs out.

Follows the WHATWG event-stream rules that matter to LLM providers: lines end in LF, CRLF or
CR (a CRLF may be split across two network reads), `data:` lines of one event are joined with
LF, lines starting with `:` are comments (keep-alive pings), one space after the colon is
dropped, and a blank line dispatches the event. `id:` and `retry:` are ignored: we never
reconnect a generation.
"""

from __future__ import annotations

_BOM = b"\xef\xbb\xbf"


class SSEParser:
    __slots__ = ("_buf", "_data", "_event", "_started")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event = ""
        self._started = False

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        """Parse what arrived; return the events it completed. The event name is "message"
        when the stream gave none."""
        buf = self._buf + chunk if self._buf else chunk
        if not self._started:
            if len(buf) < len(_BOM) and _BOM.startswith(buf):
                self._buf = buf  # too short to tell whether it is a byte-order mark
                return []
            self._started = True
            if buf.startswith(_BOM):
                buf = buf[len(_BOM) :]
        # A CR at the very end may be the first half of a CRLF: hold it back until the next
        # read tells, so the LF that follows isn't taken for an extra blank line.
        held_cr = buf.endswith(b"\r")
        if held_cr:
            buf = buf[:-1]
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        cut = buf.rfind(b"\n")
        if cut < 0:
            self._buf = buf + b"\r" if held_cr else buf
            return []
        rest = buf[cut + 1 :]
        self._buf = rest + b"\r" if held_cr else rest
        # No UTF-8 sequence spans a newline, so everything up to the last one decodes whole.
        return self._lines(buf[:cut].decode("utf-8", "replace").split("\n"))

    def finish(self) -> list[tuple[str, str]]:
        """The body ended: parse a last unterminated line and dispatch a pending event.
        (Stricter parsers drop it; a lenient flush keeps a final event from servers that
        forget the blank line, and a truncated one fails JSON parsing in the decoder.)"""
        rest = self._buf.rstrip(b"\r")
        self._buf = b""
        lines = rest.replace(b"\r\n", b"\n").replace(b"\r", b"\n").decode("utf-8", "replace")
        events = self._lines([*lines.split("\n"), ""]) if rest else self._lines([""])
        return events

    def _lines(self, lines: list[str]) -> list[tuple[str, str]]:
        events: list[tuple[str, str]] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append((self._event or "message", "\n".join(self._data)))
                    self._data = []
                self._event = ""
                continue
            if line[0] == ":":
                continue
            name, colon, value = line.partition(":")
            if colon and value[:1] == " ":
                value = value[1:]
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
        return events
