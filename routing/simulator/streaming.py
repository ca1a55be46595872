"""Timing: latency before the first byte, then tokens at the profile's tokens per second.

A wire module turns an answer into `Frames` (the exact bytes of every event); this module only
decides when each goes out. Frames that come due together go out in one write, so a high
token rate costs a few writes, not one per token.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from .faults import stay_silent
from .state import Profile

MIN_TICK = 0.002  # below this between tokens, batch them into one write instead of sleeping


@dataclass(slots=True)
class Frames:
    head: bytes = b""  # before any token (e.g. message_start); sent at the first byte
    body: list[bytes] = field(default_factory=list)  # token-bearing frames
    costs: list[int] = field(default_factory=list)  # tokens in each body frame
    tail: bytes = b""  # the end markers: what a "cut" stream never sends
    hidden: int = 0  # tokens generated before the first body frame but never shown (reasoning)

    def add(self, frame: bytes, cost: int = 0) -> None:
        """Frames without tokens go to the head until the first token frame; after it they
        ride with the token frame before them, and the ones after the last token frame become
        the tail (end markers)."""
        if not cost:
            if self.body:
                self.tail += frame
            else:
                self.head += frame
            return
        if self.tail:
            self.body[-1] += self.tail
            self.tail = b""
        self.body.append(frame)
        self.costs.append(cost)

    def end(self, frame: bytes) -> None:
        """An end marker: always in the tail, even when the answer has no token at all."""
        self.tail += frame

    def extend(self, frames: list[bytes]) -> None:
        """Token frames of one token each (the common case, added in bulk)."""
        if not frames:
            return
        if self.tail:
            self.body[-1] += self.tail
            self.tail = b""
        self.body.extend(frames)
        self.costs.extend([1] * len(frames))


async def wait_latency(profile: Profile, tokens: int = 0) -> None:
    """Latency, plus the time to generate `tokens` (a non-streamed answer waits for all)."""
    delay = profile.latency_ms / 1000.0
    if tokens and profile.tokens_per_second > 0:
        delay += tokens / profile.tokens_per_second
    if delay > 0:
        await asyncio.sleep(delay)


async def send(
    request: web.Request,
    response: web.StreamResponse,
    frames: Frames,
    profile: Profile,
    *,
    cut_after: int | None = None,
    stall_after: int | None = None,
) -> bool:
    """Stream `frames` on `response` (not yet prepared) after the profile's latency. With
    `cut_after`, stop after that many tokens and end the body without the end markers; with
    `stall_after`, stop there too but keep the connection open, silent, until the client
    gives up. Returns False when the client went away (or a stalled stream never finished)."""
    body, costs = frames.body, frames.costs
    if stall_after is not None:
        cut_after = stall_after
    complete = cut_after is None
    if cut_after is not None:
        total, keep = 0, 0
        for cost in costs:
            if total + cost > cut_after:
                break
            total += cost
            keep += 1
        body, costs = body[:keep], costs[:keep]

    await wait_latency(profile)
    try:
        await response.prepare(request)
        tps = profile.tokens_per_second
        if tps <= 0:  # as fast as possible: the whole stream in one write
            await response.write(frames.head + b"".join(body) + (frames.tail if complete else b""))
        else:
            await _paced(response, frames.head, body, costs, frames.hidden, tps)
            if complete and frames.tail:
                await response.write(frames.tail)
        if stall_after is not None:
            await stay_silent(request)
            return False
        await response.write_eof()
    except ConnectionError:  # the client went away (aiohttp raises a ConnectionResetError)
        return False
    return True


async def _paced(
    response: web.StreamResponse,
    head: bytes,
    body: list[bytes],
    costs: list[int],
    hidden: int,
    tps: float,
) -> None:
    loop = asyncio.get_running_loop()
    if head:
        await response.write(head)
    start = loop.time()
    due_tokens = hidden  # tokens generated once the frame at `i` is out
    i, n = 0, len(body)
    while i < n:
        # Every frame whose last token is due by now (or within one tick) goes in this write.
        elapsed_tokens = (loop.time() - start + MIN_TICK / 2) * tps
        j, end = i, due_tokens
        while j < n and end + costs[j] <= elapsed_tokens:
            end += costs[j]
            j += 1
        if j == i:
            next_due = start + (due_tokens + costs[i]) / tps
            await asyncio.sleep(max(next_due - loop.time(), MIN_TICK))
            continue
        await response.write(body[i] if j == i + 1 else b"".join(body[i:j]))
        i, due_tokens = j, end


def json_response(
    body: bytes, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # Headers built by hand: web.json_response would serialize with the slower stdlib json.
    all_headers = {"Content-Type": "application/json"}
    if headers:
        all_headers.update(headers)
    return web.Response(body=body, status=status, headers=all_headers)


def retry_after_value(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
