"""Deterministic answers: text, token counts, JSON built from a schema, embedding vectors.

Everything here is a pure function of the request, so the same request always gets the same
answer. It is also cheap: benchmarks run the simulator flat out to measure the gateway, so the
per-request work is a hash, a slice of a precomputed word sequence and a few small dicts.
"""

from __future__ import annotations

import array
import hashlib
import itertools
import math
import random
import secrets
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from .schema import Hints, answer_object, fill, is_open_object
from .tools import summary

VOCABULARY = (
    "the quick brown fox jumps over a lazy dog while gateway routes every request to cheapest "
    "healthy provider and streams tokens back with usage cost latency throughput model answer "
    "simple clear useful reliable fast small large context window cache prompt reply question "
    "idea plan result data value number system user agent tool call function schema object "
    "field list item text image vision reason think step first then next finally because "
    "so that this is an example of deterministic output from simulated language model which "
    "helps tests benchmarks newcomers run everything locally without keys or network access "
    "light river mountain cloud signal bridge garden window paper stone silver orange green "
    "blue quiet bright steady early late open close begin end around through across under"
).split()

# A long fixed word sequence: an answer is a slice of it starting where the request's hash
# says. Cheaper than seeding a PRNG per request, and just as deterministic.
_POOL_SIZE = 8192
_rng = random.Random(20260101)  # noqa: S311 - not security sensitive, only needs to be fixed
_POOL = _rng.choices(VOCABULARY, k=_POOL_SIZE)
_POOL_SPACED = [" " + word for word in _POOL]
_POOL_FIRST = [word.capitalize() for word in _POOL]
del _rng

DEFAULT_OUTPUT_TOKENS = 16
TOKENS_PER_MESSAGE = 4
TOKENS_PER_IMAGE = 85
JSON_CHARS_PER_TOKEN = 4  # JSON (structured output, tool arguments) is tokenized by characters
CACHE_MIN_TOKENS = 32
REASONING_MAX = 256
EFFORT_TOKENS = {
    "none": 0,
    "minimal": 4,
    "low": 16,
    "medium": 64,
    "high": 256,
    "xhigh": 256,
}


_RUN = secrets.token_hex(4)  # ids differ between runs; a counter keeps them unique within one
_COUNTER = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}{_RUN}{next(_COUNTER):012x}"


def digest(*parts: bytes) -> int:
    """A stable 64-bit hash (Python's hash() is salted per process)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part)
        h.update(b"\x00")
    return int.from_bytes(h.digest(), "little")


def dumps_canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def count_words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def words(seed: int, n: int, *, offset: int = 0) -> list[str]:
    """n tokens of text (one word each; every word after the first carries its leading space)."""
    if n <= 0:
        return []
    start = (seed + offset) % _POOL_SIZE
    out = [_POOL_FIRST[start]]
    remaining = n - 1
    i = start + 1
    while remaining > 0:  # one slice normally; a loop only for answers longer than the pool
        i %= _POOL_SIZE
        take = min(remaining, _POOL_SIZE - i)
        out.extend(_POOL_SPACED[i : i + take])
        remaining -= take
        i += take
    return out


def json_pieces(text: str) -> list[str]:
    step = JSON_CHARS_PER_TOKEN
    return [text[i : i + step] for i in range(0, len(text), step)] or [""]


def reasoning_for_effort(effort: Any) -> int:
    if isinstance(effort, str):
        return EFFORT_TOKENS.get(effort.lower(), EFFORT_TOKENS["medium"])
    return 0


def reasoning_for_budget(budget: Any) -> int:
    if isinstance(budget, bool) or not isinstance(budget, int):
        return 0
    if budget < 0:  # Gemini's -1: "dynamic thinking"
        return EFFORT_TOKENS["medium"]
    return min(budget, REASONING_MAX)


# --- One generation, wire-independent ---


class BadRequest(ValueError):
    """The request is malformed; each wire answers 400 in its own error shape."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int  # all of the prompt, cached part included
    cached_tokens: int  # part of prompt_tokens read from the cache
    completion_tokens: int  # visible answer + reasoning
    reasoning_tokens: int  # part of completion_tokens spent thinking
    cache_write_tokens: int = 0  # part of prompt_tokens written to the cache (cache_control)
    cache_write_1h_tokens: int = 0  # the part of those written with a 1-hour TTL

    @property
    def output_tokens(self) -> int:  # the visible part
        return self.completion_tokens - self.reasoning_tokens


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: Any
    arguments_json: str


@dataclass(slots=True)
class ChatRequest:
    """What a wire module extracts from a chat request; the rest of the simulator is shared."""

    model: str
    seed: int  # hash of (model, system, messages): drives the text
    prompt_tokens: int
    cache_keys: tuple[int, ...]  # the whole prompt, then its prefix without the last message
    stream: bool = False
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    reasoning: int = 0
    tool: ToolCall | None = None
    json_schema: Any = None  # a schema, or True for "any JSON object"
    include_usage: bool = False  # OpenAI stream_options.include_usage
    include_thoughts: bool = False  # Gemini thinkingConfig.includeThoughts
    alt_sse: bool = True  # Gemini streamGenerateContent: SSE, or else a streamed JSON array
    # Explicit prompt caching (Anthropic cache_control): the prompt's prefix up to the last
    # breakpoint as (tokens, ttl) segments, one per breakpoint, and a key for that prefix.
    cache_segments: tuple[tuple[int, str], ...] = ()
    cache_prefix_key: int | None = None
    # Read only when tools or JSON are asked for (the plain text path never builds them):
    prompt: str = ""  # the user's latest words: where JSON values and tool arguments come from
    instructions: str = ""  # system prompt and the latest user words: what JSON to write
    results: list[tuple[str, str]] = field(default_factory=list)  # tool results to report


@dataclass(slots=True)
class Output:
    pieces: list[str]  # the visible answer, one token each
    finish: str  # "stop" | "length" | "tool" | "stop_sequence"
    reasoning_tokens: int = 0
    stop_sequence: str | None = None
    tool: ToolCall | None = None
    seed: int = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces) + self.reasoning_tokens

    def thinking_pieces(self) -> list[str]:
        return words(self.seed, self.reasoning_tokens, offset=4099)


def generate(request: ChatRequest, *, output_tokens: int = DEFAULT_OUTPUT_TOKENS) -> Output:
    """The answer to `request`. `output_tokens` is how long the model "wants" to talk; max
    tokens cut it short (finish "length"). Reasoning tokens count against max tokens, as they
    do at OpenAI, Anthropic and Google."""
    reasoning = request.reasoning
    room: int | None = None
    if request.max_tokens is not None:
        reasoning = min(reasoning, request.max_tokens)
        room = request.max_tokens - reasoning

    if request.tool is not None:
        # Tool arguments are never truncated: a half call is useless to every test.
        pieces = json_pieces(request.tool.arguments_json)
        return Output(pieces, "tool", reasoning, tool=request.tool, seed=request.seed)

    if request.json_schema is not None:
        value = json_answer(request.json_schema, request.prompt, request.instructions, request.seed)
        pieces = json_pieces(orjson.dumps(value).decode())
    elif request.results:
        pieces = text_pieces(summary(request.results))
    else:
        pieces = words(request.seed, output_tokens)

    finish = "stop"
    if room is not None and len(pieces) > room:
        pieces = pieces[:room]
        finish = "length"
    stop_sequence = None
    if request.stop and pieces:
        pieces, stop_sequence = _apply_stop(pieces, request.stop)
        if stop_sequence is not None:
            finish = "stop_sequence"
    return Output(pieces, finish, reasoning, stop_sequence=stop_sequence, seed=request.seed)


def _apply_stop(pieces: list[str], stops: list[str]) -> tuple[list[str], str | None]:
    text = "".join(pieces)
    best: tuple[int, str] | None = None
    for stop in stops:
        if stop and (at := text.find(stop)) >= 0 and (best is None or at < best[0]):
            best = (at, stop)
    if best is None:
        return pieces, None
    cut, kept, length = best[0], [], 0
    for piece in pieces:
        if length >= cut:
            break
        kept.append(piece[: cut - length])
        length += len(piece)
    return kept, best[1]


def text_pieces(text: str) -> list[str]:
    """Text as tokens, one word each (every word after the first with its leading space)."""
    parts = text.split()
    return [parts[0], *(" " + word for word in parts[1:])] if parts else []


def json_answer(schema: Any, prompt: str, instructions: str, seed: int) -> Any:
    """A JSON answer: valid against `schema` (a dict), or for json_object mode (anything else)
    what the instructions ask for, with values from the prompt where they fit."""
    if isinstance(schema, dict) and not is_open_object(schema):
        return fill(schema, Hints.of(prompt, seed))
    return answer_object(instructions or prompt, prompt, seed)


def tool_call(
    seed: int,
    name: str,
    schema: Any,
    *,
    id_prefix: str,
    prompt: str = "",
    instructions: str = "",
    named: bool = False,
) -> ToolCall:
    """A call of tool `name` with arguments valid against its `schema`. A tool forced by name
    whose input is any object is a JSON answer in disguise (how JSON mode is emulated on
    Anthropic): it gets what the instructions ask for."""
    if named and is_open_object(schema):
        arguments = json_answer(None, prompt, instructions, seed)
    else:
        arguments = fill(schema if isinstance(schema, dict) else {}, Hints.of(prompt, seed))
    if not isinstance(arguments, dict):
        arguments = {}
    return ToolCall(
        id=f"{id_prefix}{seed & 0xFFFFFFFFFFFF:012x}",
        name=name,
        arguments=arguments,
        arguments_json=orjson.dumps(arguments).decode(),
    )


# --- Embeddings: unit vectors, float32 exact so "float" and "base64" agree bit for bit ---

_VECTOR_POOL = 32
DEFAULT_DIMENSIONS = 1536
MAX_DIMENSIONS = 8192


@lru_cache(maxsize=16)
def _vector_pool(dims: int) -> tuple[tuple[list[float], bytes], ...]:
    rng = random.Random(dims)  # noqa: S311 - fixed, not secret
    pool = []
    for _ in range(_VECTOR_POOL):
        raw = [rng.gauss(0.0, 1.0) for _ in range(dims)]
        norm = math.sqrt(math.fsum(x * x for x in raw)) or 1.0
        packed = array.array("f", [x / norm for x in raw])
        if sys.byteorder == "big":
            packed.byteswap()  # OpenAI's base64 is little-endian float32
            values = array.array("f", packed)
            values.byteswap()
            pool.append((values.tolist(), packed.tobytes()))
        else:
            pool.append((packed.tolist(), packed.tobytes()))
    return tuple(pool)


def warm_up() -> None:
    """Build the default embedding pool now, so the first embeddings call doesn't pay for it."""
    _vector_pool(DEFAULT_DIMENSIONS)


def embedding(seed: int, dims: int) -> tuple[list[float], bytes]:
    """A unit vector for `seed` as floats and as little-endian float32 bytes. A rotation of one
    of a few precomputed unit vectors: still unit length, distinct per input, and O(1)."""
    values, packed = _vector_pool(dims)[seed % _VECTOR_POOL]
    shift = (seed >> 8) % dims
    return values[shift:] + values[:shift], packed[shift * 4 :] + packed[: shift * 4]
