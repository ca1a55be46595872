"""Token estimates for admission (context checks, rate limits, holds) before any provider is
called. Providers count exactly afterwards; this only has to be cheap and never low by much:
what is held is estimated from it, so an estimate far below the real count is credit spent
that nobody held.

- Text: ~4 characters a token for ASCII, but a CJK character is about one token and other
  non-ASCII text sits between, so extra UTF-8 bytes count 1.5 characters each.
- Images: as many tokens as the most a provider bills for one image after its own resizing.
- Audio and files (PDFs): from their size, since a file's pages or an audio clip's seconds are
  what providers bill and both grow with the bytes. An estimate can't exceed a model's context
  window, and `PromptEstimate.for_window` caps it there: a provider bills no more input than that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The most one image costs: OpenAI's patch models bill up to 1,536 patches x 1.62; Anthropic
# and Gemini resize to ~1,600 and 258 per tile. Held at the highest.
IMAGE_TOKENS = 2_500
# What the context check counts for an image (the old typical figure): a big image that bills
# more is still accepted, the hold covers it.
IMAGE_TOKENS_TYPICAL = 85 * 4
PER_MESSAGE = 4
# A file (PDF) of unknown size (a file id or URL): a few dozen pages.
FILE_TOKENS_UNKNOWN = 50_000
# Bytes of a file per token: a dense text page of a PDF is ~3 KB and bills ~1.5-3k tokens
# (text plus the page's image at Anthropic), so 1 token per byte errs high on purpose.
FILE_BYTES_PER_TOKEN = 1
# Audio: 16 kHz 16-bit WAV is 32 KB a second; providers bill 10-32 tokens a second.
AUDIO_BYTES_PER_TOKEN = 256
AUDIO_TOKENS_MIN = 1_000


def text_tokens(text: str) -> int:
    """An upper-leaning token count of a text (CJK about one token a character)."""
    if not text:
        return 0
    chars = len(text)
    if text.isascii():
        return -(-chars // 4)
    extra = len(text.encode("utf-8", "surrogatepass")) - chars
    return -(-(2 * chars + 3 * extra) // 8)


def _data_bytes(value: Any) -> int | None:
    """Decoded size of a base64 payload or data: URL, None when there is none (a URL, an id)."""
    if not isinstance(value, str) or not value:
        return None
    if value.startswith("data:"):
        _, _, value = value.partition(",")
    elif value.startswith(("http://", "https://", "file-")):
        return None
    return len(value) * 3 // 4


@dataclass(frozen=True, slots=True)
class PromptEstimate:
    """`tokens`: what a prompt can bill, sized from the bytes of its media (holds and rate
    limits use it); `typical`: what the context check counts (media at their usual size)."""

    tokens: int
    typical: int

    def for_window(self, context_window: int) -> int:
        return min(self.tokens, max(context_window, self.typical))


class _Counter:
    __slots__ = ("media", "text", "typical_media")

    def __init__(self) -> None:
        self.text = 0
        self.media = 0
        self.typical_media = 0

    def content(self, content: Any) -> None:
        if content is None:
            return
        if isinstance(content, str):
            self.text += text_tokens(content)
            return
        if not isinstance(content, list):
            return
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind in ("text", "input_text"):
                self.text += text_tokens(part.get("text") or "")
            elif kind in ("image_url", "input_image", "image"):
                self.media += IMAGE_TOKENS
                self.typical_media += IMAGE_TOKENS_TYPICAL
            elif kind == "input_audio":
                audio = part.get("input_audio") or {}
                size = _data_bytes(audio.get("data")) if isinstance(audio, dict) else None
                tokens = max(AUDIO_TOKENS_MIN, (size or 0) // AUDIO_BYTES_PER_TOKEN)
                self.media += tokens
                self.typical_media += AUDIO_TOKENS_MIN
            elif kind in ("file", "input_file", "document"):
                file = part.get("file") if isinstance(part.get("file"), dict) else part
                size = _data_bytes(file.get("file_data") or file.get("data"))
                self.media += (
                    FILE_TOKENS_UNKNOWN if size is None else -(-size // FILE_BYTES_PER_TOKEN)
                )
                self.typical_media += AUDIO_TOKENS_MIN


def estimate_prompt(body: dict[str, Any]) -> PromptEstimate:
    counter = _Counter()
    messages = body.get("messages") or ()
    for message in messages:
        counter.content(message.get("content"))
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            counter.text += text_tokens(function.get("name") or "")
            counter.text += text_tokens(function.get("arguments") or "")
    for tool in body.get("tools") or ():
        counter.text += text_tokens(str(tool))
    response_format = body.get("response_format")
    if response_format:
        counter.text += text_tokens(str(response_format))
    base = counter.text + PER_MESSAGE * len(messages)
    return PromptEstimate(tokens=base + counter.media, typical=base + counter.typical_media)


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """What a prompt can bill (media by their size)."""
    return estimate_prompt(body).tokens


def estimate_embedding_tokens(inputs: list) -> int:
    total = 0
    for item in inputs:
        if isinstance(item, str):
            total += text_tokens(item)
        elif isinstance(item, list):
            total += len(item)  # already token ids
    return total
