"""A load generator: N concurrent clients sending chat completions (streamed and not) with
httpx, in threads, until told to stop, and what each request came to:

- served: a 2xx answer, complete (a stream to its [DONE], without an error chunk);
- refused: a 503 in the OpenAI error shape ({"error": {"message", "type", "code", ...}});
- rejected: any 4xx (a rate limit, the credit): the platform said no, clearly;
- cut: a stream that started (200) and whose connection broke mid-body (its server died);
- failed: anything else: another 5xx, a 503 without the error shape, a connection error or
  a timeout, a stream that ended without [DONE] or with an error chunk.

Several web processes stand for pods behind a load balancer: a request that could not
connect at all (nothing was sent) goes to the next one, as a balancer would send it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
import orjson

NANO = Decimal(1_000_000_000)
HERO = "google/gemini-3.1-flash-lite"
KINDS = ("served", "refused", "rejected", "cut", "failed")


@dataclass(slots=True)
class Outcome:
    kind: str
    status: int | None
    latency: float
    streamed: bool
    generation_id: str | None = None
    cost_nanousd: int | None = None  # what the answer said it cost (served only)
    detail: str = ""
    at: float = field(default_factory=time.monotonic)  # when it ended


def openai_error_shape(body: object) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return (
        isinstance(error, dict)
        and isinstance(error.get("message"), str)
        and isinstance(error.get("type"), str)
        and "code" in error
        and "param" in error
    )


def _cost(usage: dict) -> int:
    return int(Decimal(str(usage["cost"])) * NANO)


@dataclass
class Load:
    urls: list[str]
    secret: str
    clients: int = 8
    streamed_share: float = 0.5  # every other request streams, by default
    max_tokens: int = 16
    prompt: str = "hi"
    timeout: float = 30.0
    pause: float = 0.0  # between a client's requests
    outcomes: list[Outcome] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._turn = itertools.count()

    # -- running -------------------------------------------------------------------------------

    def start(self) -> Load:
        for i in range(self.clients):
            thread = threading.Thread(target=self._client, args=(i,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, *, timeout: float | None = None) -> Load:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=(timeout or self.timeout) + 10)
        return self

    def run_for(self, seconds: float) -> Load:
        self.start()
        time.sleep(seconds)
        return self.stop()

    def _client(self, i: int) -> None:
        with httpx.Client(timeout=httpx.Timeout(self.timeout, connect=2.0)) as http:
            for n in itertools.count():
                if self._stop.is_set():
                    return
                streamed = (n * 7 + i) % 100 < self.streamed_share * 100
                outcome = self.one(http, streamed=streamed)
                with self._lock:
                    self.outcomes.append(outcome)
                if self.pause:
                    time.sleep(self.pause)

    def body(self, *, streamed: bool) -> dict:
        body = {
            "model": HERO,
            "messages": [{"role": "user", "content": self.prompt}],
            "max_tokens": self.max_tokens,
        }
        if streamed:
            body["stream"] = True
        return body

    def one(self, http: httpx.Client, *, streamed: bool) -> Outcome:
        first = next(self._turn)
        started = time.monotonic()
        last_error = ""
        for k in range(len(self.urls)):
            url = self.urls[(first + k) % len(self.urls)]
            try:
                if streamed:
                    return self._stream(http, url, started)
                return self._plain(http, url, started)
            except httpx.ConnectError as error:  # nothing sent: the balancer tries another
                last_error = f"connect: {error}"
                continue
        return Outcome("failed", None, time.monotonic() - started, streamed, detail=last_error)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def _plain(self, http: httpx.Client, url: str, started: float) -> Outcome:
        try:
            response = http.post(
                f"{url}/chat/completions", json=self.body(streamed=False), headers=self._headers()
            )
        except httpx.ConnectError:
            raise
        except httpx.HTTPError as error:
            # Sent, and the connection broke before an answer: its server died ("cut"), or
            # no answer came in time ("failed").
            kind = "failed" if isinstance(error, httpx.TimeoutException) else "cut"
            return Outcome(kind, None, time.monotonic() - started, False, detail=repr(error)[:200])
        latency = time.monotonic() - started
        return self._classify(response.status_code, response.content, latency, streamed=False)

    def _classify(self, status: int, content: bytes, latency: float, *, streamed: bool) -> Outcome:
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            body = None
        if 200 <= status < 300 and isinstance(body, dict) and "usage" in body:
            return Outcome(
                "served", status, latency, streamed, body.get("id"), _cost(body["usage"])
            )
        if status == 503 and openai_error_shape(body):
            return Outcome("refused", status, latency, streamed, detail=body["error"]["code"])
        if 400 <= status < 500:
            code = body["error"].get("code") if openai_error_shape(body) else content[:100]
            return Outcome("rejected", status, latency, streamed, detail=str(code))
        detail = content[:200].decode("ascii", "replace")
        return Outcome("failed", status, latency, streamed, detail=detail)

    def _stream(self, http: httpx.Client, url: str, started: float) -> Outcome:
        generation = None
        cost = None
        errored = ""
        done = False
        try:
            with http.stream(
                "POST",
                f"{url}/chat/completions",
                json=self.body(streamed=True),
                headers=self._headers(),
            ) as response:
                if response.status_code != 200:
                    content = response.read()
                    return self._classify(
                        response.status_code,
                        content,
                        time.monotonic() - started,
                        streamed=True,
                    )
                for line in response.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line.removeprefix("data: ")
                    if data == "[DONE]":
                        done = True
                        continue
                    chunk = orjson.loads(data)
                    generation = generation or chunk.get("id")
                    if chunk.get("usage"):
                        cost = _cost(chunk["usage"])
                    if chunk.get("error"):
                        errored = str(chunk["error"].get("code"))
        except httpx.ConnectError:
            raise
        except httpx.HTTPError as error:
            latency = time.monotonic() - started
            if isinstance(error, httpx.TimeoutException):
                return Outcome("failed", None, latency, True, generation, detail=repr(error)[:200])
            # The connection broke (its server died), before or after the first chunk.
            return Outcome("cut", None, latency, True, generation, detail=repr(error)[:200])
        latency = time.monotonic() - started
        if done and not errored and cost is not None:
            return Outcome("served", 200, latency, True, generation, cost)
        return Outcome(
            "failed",
            200,
            latency,
            True,
            generation,
            cost,
            detail=f"stream ended {'with error ' + errored if errored else 'without [DONE]'}",
        )

    # -- figures -------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self._lock:
            seen = Counter(o.kind for o in self.outcomes)
        return {kind: seen.get(kind, 0) for kind in KINDS}

    def served(self) -> dict[str, int]:
        """generation id -> the cost its answer reported."""
        with self._lock:
            return {
                o.generation_id: o.cost_nanousd
                for o in self.outcomes
                if o.kind == "served" and o.generation_id
            }

    def served_after(self, moment: float) -> int:
        with self._lock:
            return sum(1 for o in self.outcomes if o.kind == "served" and o.at > moment)

    def cut(self) -> set[str]:
        with self._lock:
            return {o.generation_id for o in self.outcomes if o.kind == "cut" and o.generation_id}

    def failures(self, limit: int = 5) -> list[str]:
        with self._lock:
            bad = [o for o in self.outcomes if o.kind == "failed"]
        details = Counter(f"{o.status}: {o.detail[:120]}" for o in bad)
        return [f"{n}x {text}" for text, n in details.most_common(limit)]

    def p99(self) -> float:
        with self._lock:
            latencies = sorted(o.latency for o in self.outcomes)
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
