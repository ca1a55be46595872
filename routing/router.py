"""Choosing endpoints and calling them, with fallback, backoff, circuit breaking and hedging.

`plan()` orders the candidate endpoints for a request (strategy, the caller's provider
preferences, health). `Call` runs the attempts: one after another on timeout, 429, 5xx or a
broken connection, optionally racing a second endpoint when the first is slow (hedging). A
stream may fall back only until its first chunk is ready for the client.

A slow or silent provider costs a bounded wait (`first_token_seconds`, `idle_seconds`,
`answer_seconds`), sized from what the endpoint was measured to do, within the attempt timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from django.conf import settings

from routing.health import HealthBook, health_book
from routing.http import get_client
from routing.providers.base import (
    Adapter,
    ErrorKind,
    StreamDecoder,
    UpstreamError,
    UpstreamRequest,
    Usage,
)
from routing.providers.common import max_tokens_of
from routing.providers.registry import adapter_for
from routing.snapshot import EndpointSnap, ModelSnap
from routing.tokens import text_tokens

STRATEGIES = ("price", "latency", "throughput")


@dataclass(frozen=True, slots=True)
class Preferences:
    """OpenRouter-compatible `provider` preferences of one request."""

    order: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    allow_fallbacks: bool = True
    sort: str | None = None
    max_prompt_price: int | None = None  # nano-USD per 1M tokens
    max_completion_price: int | None = None
    preferred_max_latency_ms: float | None = None
    preferred_min_throughput: float | None = None


def _latency_ms(endpoint: EndpointSnap, health: HealthBook) -> float:
    measured = health.medians(endpoint.key)[0]
    return measured if measured is not None else float(endpoint.nominal_latency_ms)


def _throughput(endpoint: EndpointSnap, health: HealthBook) -> float:
    measured = health.medians(endpoint.key)[1]
    return measured if measured is not None else float(endpoint.nominal_throughput_tps)


def plan(
    models: list[ModelSnap],
    prefs: Preferences,
    *,
    strategy: str = "price",
    needed_context: int = 0,
    health: HealthBook = health_book,
) -> list[EndpointSnap]:
    """Every endpoint worth trying, best first. Unhealthy endpoints go last, not away: when
    everything else has failed they are still worth a probe."""
    sort = prefs.sort or strategy
    ordered: list[EndpointSnap] = []
    for model in models:
        endpoints = [
            e
            for e in model.endpoints
            if (not prefs.only or e.provider in prefs.only)
            and e.provider not in prefs.ignore
            and (prefs.max_prompt_price is None or e.input_price <= prefs.max_prompt_price)
            and (prefs.max_completion_price is None or e.output_price <= prefs.max_completion_price)
            and e.context_window >= needed_context
        ]

        def key(e: EndpointSnap) -> tuple:
            latency = _latency_ms(e, health)
            throughput = _throughput(e, health)
            slow = prefs.preferred_max_latency_ms is not None and (
                latency > prefs.preferred_max_latency_ms
            )
            sluggish = prefs.preferred_min_throughput is not None and (
                throughput < prefs.preferred_min_throughput
            )
            if sort == "latency":
                primary: tuple = (latency, e.blended_price)
            elif sort == "throughput":
                primary = (-throughput, e.blended_price)
            else:
                primary = (e.blended_price, latency)
            return (not health.available(e.key), slow or sluggish, *primary)

        endpoints.sort(key=key)
        if prefs.order:
            rank = {slug: i for i, slug in enumerate(prefs.order)}
            first = sorted(
                (e for e in endpoints if e.provider in rank), key=lambda e: rank[e.provider]
            )
            rest = [e for e in endpoints if e.provider not in rank]
            endpoints = first + (rest if prefs.allow_fallbacks else [])
        elif not prefs.allow_fallbacks:
            endpoints = endpoints[:1]
        ordered.extend(endpoints)
    return ordered


def first_token_seconds(
    endpoint: EndpointSnap, *, reasoning: bool = False, health: HealthBook = health_book
) -> float:
    """How long a stream may take to its first token: a multiple of the endpoint's p95, never
    under the floor (longer when the model may think first); the default while unmeasured."""
    floor = (
        settings.ROUTING_REASONING_FIRST_TOKEN_FLOOR_SECONDS
        if reasoning
        else settings.ROUTING_FIRST_TOKEN_FLOOR_SECONDS
    )
    p95_ms = health.timing(endpoint.key)[0]
    if p95_ms is None:
        limit = max(settings.ROUTING_FIRST_TOKEN_DEFAULT_SECONDS, floor)
    else:
        limit = max(floor, settings.ROUTING_FIRST_TOKEN_MULTIPLIER * p95_ms / 1000)
    return min(limit, settings.ROUTING_ATTEMPT_TIMEOUT)


def idle_seconds(*, reasoning: bool = False) -> float:
    """How long a stream that has started may go without sending anything."""
    idle = (
        settings.ROUTING_REASONING_STREAM_IDLE_SECONDS
        if reasoning
        else settings.ROUTING_STREAM_IDLE_SECONDS
    )
    return min(idle, settings.ROUTING_ATTEMPT_TIMEOUT)


def answer_seconds(
    endpoint: EndpointSnap,
    *,
    output_cap: int | None,
    reasoning: bool = False,
    health: HealthBook = health_book,
) -> float:
    """How long a non-streamed answer may take: its first token's limit, plus its whole output
    cap at the endpoint's measured output speed (slow end; a modest default while unmeasured)."""
    speed = health.timing(endpoint.key)[1] or settings.ROUTING_DEFAULT_TOKENS_PER_SECOND
    cap = output_cap or endpoint.max_output_tokens
    limit = first_token_seconds(endpoint, reasoning=reasoning, health=health) + cap / speed
    return min(limit, settings.ROUTING_ATTEMPT_TIMEOUT)


@dataclass(slots=True)
class Attempt:
    endpoint: EndpointSnap
    started_at: float
    outcome: str = "pending"  # "ok", an ErrorKind, or "cancelled"
    http_status: int | None = None
    message: str = ""
    duration_ms: float = 0.0
    ttft_ms: float | None = None
    hedged: bool = False
    # Reached the provider without an answer we can bill from (a timeout after sending, a
    # broken answer, a cancelled hedge): the provider may charge us, so we charge its prompt.
    billable: bool = False
    cost_nanousd: int = 0

    def as_dict(self) -> dict[str, Any]:
        # started_at is on the monotonic clock; the log and the trace want wall-clock time.
        wall_started = time.time() - (time.perf_counter() - self.started_at)
        return {
            "provider": self.endpoint.provider,
            "model": self.endpoint.model_id,
            "outcome": self.outcome,
            "status": self.http_status,
            "message": self.message,
            "started_at": round(wall_started, 6),
            "duration_ms": round(self.duration_ms, 1),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 1),
            "hedged": self.hedged,
            "cost": self.cost_nanousd,
        }


class ClientGone(Exception):
    """The client went away: no new attempt is started for it."""


class AllAttemptsFailed(Exception):
    def __init__(self, attempts: list[Attempt], last: UpstreamError | None) -> None:
        super().__init__("every provider failed")
        self.attempts = attempts
        self.last = last


@dataclass(slots=True)
class ChatResult:
    endpoint: EndpointSnap
    body: dict[str, Any]
    usage: Usage
    attempts: list[Attempt]


@dataclass(slots=True)
class StreamResult:
    """A stream whose first chunks are in hand; the rest is read by `rest()`."""

    endpoint: EndpointSnap
    first: list[dict[str, Any]]
    decoder: StreamDecoder
    response: httpx.Response
    iterator: AsyncIterator[bytes]
    attempts: list[Attempt]
    ttft_ms: float
    closed: bool = False
    # The longest silence allowed between reads once the stream has started (None: only the
    # transport's read timeout).
    idle_seconds: float | None = None
    # When the first chunk was in hand (perf_counter), for the endpoint's output speed.
    first_at: float = 0.0

    _watch: _IdleWatch | None = None

    async def rest(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The remaining chunks. Raises UpstreamError when the stream breaks off or stalls."""
        idle = self.idle_seconds
        watch = self._watch = _IdleWatch(idle) if idle else None
        try:
            while True:
                # Only the read is watched, never the client's side of a yield.
                if watch is not None:
                    watch.start()
                try:
                    data = await anext(self.iterator)
                except StopAsyncIteration:
                    break
                except asyncio.CancelledError:
                    if watch is not None and watch.expired():
                        raise UpstreamError(
                            ErrorKind.TIMEOUT, f"the provider sent nothing for {idle:g} s"
                        ) from None
                    raise
                finally:
                    if watch is not None:
                        watch.reading = None
                chunks = self.decoder.feed(data)
                if chunks:
                    yield chunks
            tail = self.decoder.finish()
            if tail:
                yield tail
        except httpx.TimeoutException:
            raise UpstreamError(ErrorKind.TIMEOUT, "the provider stopped sending") from None
        except httpx.TransportError as error:
            raise UpstreamError(ErrorKind.STREAM_CUT, f"the stream broke off: {error}") from None
        finally:
            if watch is not None:
                watch.close()
        if not self.decoder.done:
            raise UpstreamError(ErrorKind.STREAM_CUT, "the provider's stream ended early")

    async def drain(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The rest of the stream once the client went away, for the provider's usage. Read
        from the transport again: the byte iterator may have been cancelled mid-read, which
        ends it but leaves the connection's buffered reader where it was."""
        decoder = self.response._get_content_decoder()
        async for raw in self.response.stream:
            data = decoder.decode(raw)
            chunks = self.decoder.feed(data) if data else None
            if chunks:
                yield chunks
        tail = self.decoder.finish()
        if tail:
            yield tail

    async def aclose(self) -> None:
        if self._watch is not None:
            self._watch.close()
        if not self.closed:
            self.closed = True
            await self.response.aclose()


class _IdleWatch:
    """Cancels the read a stream is blocked in once it has waited `idle` seconds. One timer per
    stream, re-armed only when it comes due (a timer per read would cost more than the read's
    own bookkeeping on a fast stream)."""

    __slots__ = ("idle", "loop", "reading", "owner", "since", "handle", "fired")

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self.loop = asyncio.get_running_loop()
        self.reading: asyncio.Task | None = None  # the task blocked in a read, if any
        self.owner: asyncio.Task | None = None  # the task that read last
        self.since = self.loop.time()
        self.fired = False
        self.handle: asyncio.TimerHandle | None = self.loop.call_at(self.since + idle, self._check)

    def start(self) -> None:
        self.reading = self.owner = asyncio.current_task()
        self.since = self.loop.time()

    def _check(self) -> None:
        now = self.loop.time()
        task = self.reading
        if task is not None and now >= self.since + self.idle:
            self.handle = None
            self.fired = True
            task.cancel()
            return
        if self.owner is not None and self.owner.done():
            self.handle = None  # a stream left unread and unclosed: nothing to watch
            return
        due = self.since + self.idle if task is not None else now + self.idle
        self.handle = self.loop.call_at(due, self._check)

    def expired(self) -> bool:
        """Was the cancellation ours (and nobody else's)? Then it is undone, to be raised as
        a timeout instead."""
        if not self.fired:
            return False
        task = asyncio.current_task()
        return task is None or task.uncancel() == 0

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


def _timeout() -> httpx.Timeout:
    return httpx.Timeout(
        connect=settings.ROUTING_CONNECT_TIMEOUT,
        read=settings.ROUTING_ATTEMPT_TIMEOUT,
        write=settings.ROUTING_ATTEMPT_TIMEOUT,
        pool=settings.ROUTING_CONNECT_TIMEOUT,
    )


def _build(request: UpstreamRequest) -> httpx.Request:
    headers = {"content-type": "application/json", **request.headers}
    return get_client().build_request(
        request.method,
        request.url,
        headers=headers,
        content=orjson.dumps(request.json),
        timeout=_timeout(),
    )


async def _send(request: UpstreamRequest, adapter: Adapter) -> httpx.Response:
    try:
        response = await get_client().send(_build(request), stream=True)
    except (httpx.ConnectTimeout, httpx.PoolTimeout):
        # Never sent: nothing the provider could bill.
        raise UpstreamError(ErrorKind.CONNECTION, "could not connect in time") from None
    except httpx.TimeoutException:
        raise UpstreamError(
            ErrorKind.TIMEOUT, "the provider did not answer in time", billable=True
        ) from None
    except httpx.TransportError as error:
        raise UpstreamError(ErrorKind.CONNECTION, f"connection failed: {error}") from None
    if response.status_code >= 400:
        try:
            body = await response.aread()
        except httpx.HTTPError:
            body = b""
        finally:
            await response.aclose()
        raise adapter.error(response.status_code, response.headers, body)
    return response


async def call_chat_once(
    endpoint: EndpointSnap, body: dict[str, Any], *, reasoning: bool = False
) -> tuple[dict, Usage]:
    """One non-streamed call, bounded by `answer_seconds` for the body's output cap."""
    limit = answer_seconds(endpoint, output_cap=max_tokens_of(body), reasoning=reasoning)
    try:
        async with asyncio.timeout(limit):
            return await _call_chat(endpoint, body)
    except TimeoutError:
        raise UpstreamError(
            ErrorKind.TIMEOUT, f"no answer from the provider within {limit:g} s", billable=True
        ) from None


async def _call_chat(endpoint: EndpointSnap, body: dict[str, Any]) -> tuple[dict, Usage]:
    adapter = adapter_for(endpoint.wire)
    request = adapter.chat_request(endpoint.target, body, stream=False)
    response = await _send(request, adapter)
    try:
        raw = await response.aread()
    except httpx.TimeoutException:
        raise UpstreamError(
            ErrorKind.TIMEOUT, "the provider stopped answering", billable=True
        ) from None
    except httpx.TransportError as error:
        raise UpstreamError(
            ErrorKind.CONNECTION, f"the answer broke off: {error}", billable=True
        ) from None
    finally:
        await response.aclose()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError(
            ErrorKind.OVERLOADED, "the provider sent an unreadable answer", billable=True
        ) from None
    answer, usage = adapter.chat_response(endpoint.target, data)
    if request.native:
        answer["native"] = data
    return answer, usage


async def call_embeddings_once(endpoint: EndpointSnap, body: dict[str, Any]) -> tuple[dict, Usage]:
    adapter = adapter_for(endpoint.wire)
    response = await _send(adapter.embeddings_request(endpoint.target, body), adapter)
    try:
        raw = await response.aread()
    except httpx.HTTPError as error:
        raise UpstreamError(ErrorKind.CONNECTION, f"the answer broke off: {error}") from None
    finally:
        await response.aclose()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError(
            ErrorKind.OVERLOADED, "the provider sent an unreadable answer"
        ) from None
    return adapter.embeddings_response(endpoint.target, data)


async def open_stream_once(
    endpoint: EndpointSnap, body: dict[str, Any], *, reasoning: bool = False
) -> StreamResult:
    """Starts a stream and reads until the first chunk for the client is ready, within
    `first_token_seconds`; the rest may then pause at most `idle_seconds` between reads."""
    limit = first_token_seconds(endpoint, reasoning=reasoning)
    try:
        async with asyncio.timeout(limit):
            result = await _open_stream(endpoint, body)
    except TimeoutError:
        raise UpstreamError(
            ErrorKind.TIMEOUT, f"no output from the provider within {limit:g} s", billable=True
        ) from None
    result.idle_seconds = idle_seconds(reasoning=reasoning)
    return result


async def _open_stream(endpoint: EndpointSnap, body: dict[str, Any]) -> StreamResult:
    adapter = adapter_for(endpoint.wire)
    started = time.perf_counter()
    request = adapter.chat_request(endpoint.target, body, stream=True)
    response = await _send(request, adapter)
    decoder = adapter.stream_decoder(endpoint.target)
    decoder.native = request.native
    iterator = response.aiter_bytes()
    first: list[dict[str, Any]] = []
    try:
        # Until a chunk carries output: a role-only opening chunk is not a first token, and
        # sending it would rule out a fallback if the token never comes.
        while not _has_output(first):
            try:
                data = await anext(iterator)
            except StopAsyncIteration:
                first += decoder.finish()
                if not _has_output(first):
                    raise UpstreamError(
                        ErrorKind.STREAM_CUT,
                        "the provider's stream ended before any output",
                        billable=True,
                    ) from None
                break
            first += decoder.feed(data)
    except httpx.TimeoutException:
        await response.aclose()
        raise UpstreamError(
            ErrorKind.TIMEOUT, "no output from the provider in time", billable=True
        ) from None
    except httpx.TransportError as error:
        await response.aclose()
        raise UpstreamError(
            ErrorKind.CONNECTION, f"the stream broke off: {error}", billable=True
        ) from None
    except BaseException:
        await response.aclose()
        raise
    return StreamResult(
        endpoint=endpoint,
        first=first,
        decoder=decoder,
        response=response,
        iterator=iterator,
        attempts=[],
        ttft_ms=(time.perf_counter() - started) * 1000,
        first_at=time.perf_counter(),
    )


def _has_output(chunks: list[dict[str, Any]]) -> bool:
    """Does any chunk carry output (text, reasoning, a tool call, a finish) or the usage?"""
    for chunk in chunks:
        if chunk.get("usage"):
            return True
        for choice in chunk.get("choices") or ():
            if choice.get("finish_reason"):
                return True
            delta = choice.get("delta") or {}
            if (
                delta.get("content")
                or delta.get("tool_calls")
                or delta.get("reasoning")
                or delta.get("reasoning_content")
                or delta.get("refusal")
            ):
                return True
    return False


async def run(
    candidates: list[EndpointSnap],
    attempt: Callable[[EndpointSnap], Awaitable[Any]],
    *,
    hedge_after_ms: float | None = None,
    health: HealthBook = health_book,
    attempts: list[Attempt] | None = None,
) -> tuple[Any, EndpointSnap, list[Attempt]]:
    """Try candidates until one succeeds. Retryable failures move on to the next candidate
    (going round again with backoff while attempts remain); a failure that would happen
    anywhere (bad request, context length) ends the call at once. `attempts`, when given, is
    filled as they start (the caller still has them if the run is cancelled)."""
    if not candidates:
        raise AllAttemptsFailed([], None)
    # Every candidate once; with fewer candidates than allowed attempts, go round again.
    sequence = list(candidates)
    while len(sequence) < settings.ROUTING_MAX_ATTEMPTS:
        sequence.append(candidates[len(sequence) % len(candidates)])
    if attempts is None:
        attempts = []
    if hedge_after_ms is None:
        return await _run_one_at_a_time(sequence, len(candidates), attempt, health, attempts)
    running: dict[asyncio.Task, Attempt] = {}
    next_index = 0
    last_error: UpstreamError | None = None
    tried: set[str] = set()

    def start(hedged: bool = False) -> None:
        nonlocal next_index
        endpoint = sequence[next_index]
        next_index += 1
        health.claim_probe(endpoint.key)
        record = Attempt(endpoint=endpoint, started_at=time.perf_counter(), hedged=hedged)
        attempts.append(record)
        running[asyncio.ensure_future(attempt(endpoint))] = record

    async def cancel_all() -> None:
        for task, record in running.items():
            task.cancel()
            record.outcome = "cancelled"
            record.billable = True  # it was on its way: the provider may bill it
            record.duration_ms = (time.perf_counter() - record.started_at) * 1000
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        running.clear()

    try:
        while True:
            if not running:
                if next_index >= len(sequence):
                    raise AllAttemptsFailed(attempts, last_error)
                endpoint = sequence[next_index]
                if endpoint.key in tried:
                    # Going round again: back off, and honour a short Retry-After.
                    await _backoff(next_index, len(candidates), last_error)
                tried.add(endpoint.key)
                start()
            can_hedge = (
                hedge_after_ms is not None
                and len(running) == 1
                and next_index < len(candidates)
                and not any(r.hedged for r in running.values())
            )
            done, _ = await asyncio.wait(
                running,
                timeout=hedge_after_ms / 1000 if can_hedge else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:
                tried.add(sequence[next_index].key)
                start(hedged=True)
                continue
            for task in done:
                record = running.pop(task)
                record.duration_ms = (time.perf_counter() - record.started_at) * 1000
                error = task.exception()
                if error is None:
                    record.outcome = "ok"
                    await cancel_all()
                    return task.result(), record.endpoint, attempts
                if not isinstance(error, UpstreamError):
                    await cancel_all()
                    raise error
                _failed(record, error, health)
                last_error = error
                if not error.retryable:
                    await cancel_all()
                    error.attempts = attempts
                    raise error
    finally:
        # Client went away or we are done: nothing keeps running upstream.
        for task in list(running):
            task.cancel()
        for task in list(running):
            with contextlib.suppress(BaseException):
                await task


def _failed(record: Attempt, error: UpstreamError, health: HealthBook) -> None:
    record.outcome = str(error.kind)
    record.billable = error.billable
    record.http_status = error.status
    record.message = error.message[:300]
    if error.kind == ErrorKind.RATE_LIMITED:
        health.record_rate_limited(record.endpoint.key, error.retry_after)
    elif error.retryable:
        health.record_failure(record.endpoint.key)


async def _backoff(attempt_number: int, rounds_of: int, last: UpstreamError | None) -> None:
    rounds = attempt_number // rounds_of
    delay = settings.ROUTING_BACKOFF_SECONDS * (2 ** (rounds - 1))
    if last is not None and last.retry_after:
        delay = max(delay, min(last.retry_after, 2.0))
    await asyncio.sleep(delay)


async def _run_one_at_a_time(
    sequence: list[EndpointSnap],
    rounds_of: int,
    attempt: Callable[[EndpointSnap], Awaitable[Any]],
    health: HealthBook,
    attempts: list[Attempt],
) -> tuple[Any, EndpointSnap, list[Attempt]]:
    """The common case, without hedging: no task per attempt, the call awaited in place."""
    last_error: UpstreamError | None = None
    for number, endpoint in enumerate(sequence):
        if number >= rounds_of:
            await _backoff(number, rounds_of, last_error)  # going round again
        health.claim_probe(endpoint.key)
        record = Attempt(endpoint=endpoint, started_at=time.perf_counter())
        attempts.append(record)
        try:
            result = await attempt(endpoint)
        except UpstreamError as error:
            record.duration_ms = (time.perf_counter() - record.started_at) * 1000
            _failed(record, error, health)
            last_error = error
            if not error.retryable:
                error.attempts = attempts
                raise
            continue
        record.duration_ms = (time.perf_counter() - record.started_at) * 1000
        record.outcome = "ok"
        return result, endpoint, attempts
    raise AllAttemptsFailed(attempts, last_error)


@dataclass(slots=True)
class StreamTracker:
    """What a stream delivered, for billing a stream that ended without the provider's usage:
    answer text, tool-call arguments and reasoning, counted as tokens the way the prompt is
    (CJK about a token a character)."""

    delivered_tokens: int = 0
    reasoning_tokens: int = 0
    chunks: int = 0
    finish_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The delivered text itself, only for an organization that keeps bodies in its logs.
    keep_text: bool = False
    parts: list[str] = field(default_factory=list)

    def observe(self, chunk: dict[str, Any]) -> None:
        self.chunks += 1
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                self.delivered_tokens += text_tokens(content)
                if self.keep_text:
                    self.parts.append(content)
            reasoning = delta.get("reasoning") or delta.get("reasoning_content")
            if reasoning:
                tokens = text_tokens(reasoning)
                self.delivered_tokens += tokens
                self.reasoning_tokens += tokens
            for call in delta.get("tool_calls") or ():
                arguments = (call.get("function") or {}).get("arguments")
                if arguments:
                    self.delivered_tokens += text_tokens(arguments)
                    if self.keep_text:
                        self.parts.append(arguments)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    @property
    def text(self) -> str | None:
        return "".join(self.parts) if self.keep_text else None
