"""The contract every provider adapter follows.

Internally a request is the client's OpenAI Chat Completions (or Embeddings) body, already
validated. An adapter turns it into its provider's HTTP request, and turns the provider's
answer (a JSON body, or a stream of bytes) back into OpenAI-shaped dicts plus a `Usage`.
The gateway adds `id`, `model`, `created`, `provider` and `usage.cost` afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one generation. cached_tokens is the part of prompt_tokens read from
    the provider's cache; cache_write_tokens the part written to it (Anthropic's
    `cache_control`, billed above the input price), of which cache_write_1h_tokens went to the
    1-hour cache (billed higher still); reasoning_tokens the part of completion_tokens spent
    thinking."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> dict[str, Any]:
        prompt_details: dict[str, int] = {"cached_tokens": self.cached_tokens}
        if self.cache_write_tokens:  # OpenRouter's name for it
            prompt_details["cache_write_tokens"] = self.cache_write_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": prompt_details,
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


class ErrorKind(StrEnum):
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"  # 5xx, 503, Anthropic's 529
    CONNECTION = "connection"  # refused, reset, DNS
    STREAM_CUT = "stream_cut"  # the stream ended before its end marker
    CONTEXT_LENGTH = "context_length_exceeded"
    CONTENT_FILTER = "content_filtered"
    BAD_REQUEST = "bad_request"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    # Ours, not a provider's: the request's hold can't pay for another attempt.
    HOLD_SPENT = "hold_spent"


# Failures worth trying another endpoint for. The others would fail the same way anywhere.
RETRYABLE = frozenset(
    {
        ErrorKind.TIMEOUT,
        ErrorKind.RATE_LIMITED,
        ErrorKind.OVERLOADED,
        ErrorKind.CONNECTION,
        ErrorKind.STREAM_CUT,
        ErrorKind.AUTH,  # our credential for that provider is wrong; another may work
        ErrorKind.NOT_FOUND,  # that provider lost the model
    }
)


class UpstreamError(Exception):
    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        billable: bool = False,
        from_provider: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        # The message is the provider's own text (an error body or event): logged, never
        # shown to a caller (routing.errors.upstream_message).
        self.from_provider = from_provider
        self.status = status
        # The request reached the provider, which may bill it, but no usage came back.
        self.billable = billable
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    def __repr__(self) -> str:
        return f"UpstreamError({self.kind!s}, status={self.status}, {self.message!r})"


@dataclass(frozen=True, slots=True)
class Target:
    """What an adapter needs to know of an endpoint to call it."""

    provider: str  # provider slug, e.g. "google-ai-studio"
    wire: str  # "openai" | "anthropic" | "gemini"
    base_url: str  # no trailing slash; see each adapter for what it appends
    api_key: str
    upstream_model: str
    # How the credential travels: "bearer" (Authorization: Bearer), "x-api-key" (Anthropic),
    # "x-goog-api-key" (Gemini AI Studio). Vertex AI is "bearer" with an access token.
    auth: str = "bearer"
    extra_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    json: dict[str, Any]
    # The client's own request in this wire, sent as it was: the provider's answer goes back
    # as it was too (the chat answer carries it under "native", stream chunks their events
    # under "native_events").
    native: bool = False


class StreamDecoder:
    """Feed raw bytes of a streamed answer; get OpenAI `chat.completion.chunk` dicts back
    (each with at least `choices`, without id/model/created). After the stream ends, `finish()`
    flushes what is left, and `usage` holds the final usage, counted once even where the
    provider repeats it cumulatively. `done` is true once the provider's end marker was seen,
    so a stream that stops without it can be told apart (a cut)."""

    usage: Usage | None = None
    done: bool = False
    native: bool = False  # attach the provider's own events to the chunks (UpstreamRequest)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        raise NotImplementedError

    def finish(self) -> list[dict[str, Any]]:
        return []


class Adapter:
    wire: ClassVar[str]
    # What the wire can do beyond a plain answer (the router skips endpoints that can't):
    # log probabilities of the output tokens, and how many choices one call returns.
    logprobs: ClassVar[bool] = False
    max_choices: ClassVar[int] = 1

    def output_cap(self, body: Mapping[str, Any], *, requested: int, endpoint_max: int) -> int:
        """The output cap this adapter sends upstream for `body` when `requested` output
        tokens are allowed: what a hold must cover. Adapters that add tokens of their own (a
        thinking budget) say so here; the request they build never asks for more."""
        return max(min(requested, endpoint_max), 1)

    def chat_request(
        self, target: Target, body: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        raise NotImplementedError

    def chat_response(self, target: Target, data: dict[str, Any]) -> tuple[dict[str, Any], Usage]:
        """A non-streamed answer → an OpenAI `chat.completion` dict (choices, and whatever
        else the provider gave that OpenAI has a field for) and its usage."""
        raise NotImplementedError

    def stream_decoder(self, target: Target) -> StreamDecoder:
        raise NotImplementedError

    def embeddings_request(self, target: Target, body: dict[str, Any]) -> UpstreamRequest:
        raise UpstreamError(ErrorKind.BAD_REQUEST, f"{self.wire} endpoints don't do embeddings")

    def embeddings_response(
        self, target: Target, data: dict[str, Any]
    ) -> tuple[dict[str, Any], Usage]:
        raise NotImplementedError

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        """An HTTP error answer → one normalized UpstreamError (kind, message, retry_after)."""
        raise NotImplementedError
