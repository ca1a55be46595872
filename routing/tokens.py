"""Token estimates for admission (context checks, rate limits, holds) before any provider is
called. Providers count exactly afterwards; this only has to be cheap and not too low."""

from __future__ import annotations

from typing import Any

IMAGE_TOKENS = 85 * 4  # a detailed image tile costs a few hundred tokens at most providers
PER_MESSAGE = 4


def _text_len(content: Any) -> tuple[int, int]:
    """(characters of text, number of images) in a message's content."""
    if content is None:
        return 0, 0
    if isinstance(content, str):
        return len(content), 0
    chars = images = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text":
                chars += len(part.get("text") or "")
            elif kind in ("image_url", "input_image", "image"):
                images += 1
            elif kind == "input_audio":
                chars += 4000
    return chars, images


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    chars = images = 0
    messages = body.get("messages") or ()
    for message in messages:
        c, i = _text_len(message.get("content"))
        chars += c
        images += i
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            chars += len(function.get("name") or "") + len(function.get("arguments") or "")
    for tool in body.get("tools") or ():
        chars += len(str(tool))
    response_format = body.get("response_format")
    if response_format:
        chars += len(str(response_format))
    # ~4 characters per token in English; round up so we never estimate low by much.
    return -(-chars // 4) + PER_MESSAGE * len(messages) + IMAGE_TOKENS * images


def estimate_embedding_tokens(inputs: list) -> int:
    total = 0
    for item in inputs:
        if isinstance(item, str):
            total += -(-len(item) // 4)
        elif isinstance(item, list):
            total += len(item)  # already token ids
    return total
