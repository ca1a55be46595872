"""Per simulated provider: its profile (latency, throughput, faults) and its counters.

Everything lives in the one event loop of the simulator process, so no locks. Profiles start
from the catalog's `simulated` block and change at run time through the control API.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson

from .generation import CACHE_MIN_TOKENS, DEFAULT_OUTPUT_TOKENS

CATALOG_PATH = Path(__file__).resolve().parent.parent / "catalog" / "catalog.json"
ERROR_KINDS = ("429", "500", "503", "stall", "reset", "cut", "stall_mid")
WILDCARD = "*"  # in make_app(profiles=...): applies to every provider, known or not
MAX_PROMPT_CACHE = 100_000  # remembered prompts; forgotten all at once beyond that


class ProfileError(ValueError):
    pass


@dataclass(slots=True)
class Profile:
    latency_ms: float = 0.0  # before the first byte (and before a non-streamed answer)
    tokens_per_second: float = 0.0  # 0 = as fast as possible
    error_rate: float = 0.0  # 0..1, deterministic: see Provider.next_fault
    error_kind: str = "500"
    retry_after: float = 1.0  # seconds, sent with 429s
    cut_after_tokens: int = 3  # how far a "cut" or "stall_mid" stream gets
    output_tokens: int = DEFAULT_OUTPUT_TOKENS  # the answer's natural length, before max tokens
    # Said after the message of every 429/500/503 it answers, e.g. a made-up account id: what
    # a real provider's error can leak, for tests that it never reaches our callers.
    error_detail: str = ""

    def updated(self, changes: Mapping[str, Any]) -> Profile:
        known = {f.name for f in fields(Profile)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ProfileError(f"unknown profile field(s): {', '.join(unknown)}")
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            clean[name] = _validate(name, value)
        return replace(self, **clean)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _validate(name: str, value: Any) -> Any:
    if name == "error_detail":
        if not isinstance(value, str) or len(value) > 500:
            raise ProfileError("error_detail must be a string of at most 500 characters")
        return value
    if name == "error_kind":
        value = str(value)
        if value not in ERROR_KINDS:
            raise ProfileError(f"error_kind must be one of {', '.join(ERROR_KINDS)}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ProfileError(f"{name} must be a number")
    try:
        number = float(value)
    except ValueError:
        raise ProfileError(f"{name} must be a number") from None
    if not math.isfinite(number) or number < 0:
        raise ProfileError(f"{name} must be a finite number >= 0")
    if name == "error_rate" and number > 1:
        raise ProfileError("error_rate must be between 0 and 1")
    if name in ("cut_after_tokens", "output_tokens"):
        if not number.is_integer():
            raise ProfileError(f"{name} must be an integer")
        return int(number)
    return number


@dataclass(slots=True)
class Stats:
    requests: int = 0  # every call to a generation endpoint (chat, messages, embeddings, ...)
    streamed: int = 0
    ok: int = 0  # answered in full (a "cut" stream is not ok)
    errors: dict[str, int] = field(default_factory=dict)  # by kind: 429, stall, auth, ...
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Provider:
    __slots__ = (
        "slug",
        "wire",
        "defaults",
        "profile",
        "stats",
        "replies",
        "last_request",
        "_rate",
        "_fault_seq",
    )

    def __init__(self, slug: str, wire: str | None, defaults: Profile) -> None:
        self.slug = slug
        self.wire = wire
        self.defaults = defaults
        self.stats = Stats()
        # Scripted answers: the next chat requests answer these texts, in order, instead of
        # the generated text (a test's way to get an exact or a deliberately invalid answer).
        self.replies: deque[str] = deque()
        self.last_request: Any = None  # the last chat body received, as sent
        self.set_profile(defaults)

    def set_profile(self, profile: Profile) -> None:
        self.profile = profile
        # Exact arithmetic: with floats, floor(100 * 0.29) is 28 and the pattern drifts.
        self._rate = Fraction(str(profile.error_rate)).limit_denominator(1_000_000)
        self._fault_seq = 0

    def update(self, changes: Mapping[str, Any]) -> None:
        profile = self.profile.updated(changes)
        if "error_rate" in changes or "error_kind" in changes:
            self.set_profile(profile)  # a new fault pattern starts counting from its 1st request
        else:
            self.profile = profile

    def next_fault(self) -> str | None:
        """The n-th request since the fault was set fails iff floor(n*rate) > floor((n-1)*rate):
        rate 1 fails always, 0.5 every second request, 0.25 every fourth (the 4th, 8th, ...)."""
        self._fault_seq += 1
        if not self._rate:
            return None
        n = self._fault_seq
        if math.floor(n * self._rate) > math.floor((n - 1) * self._rate):
            return self.profile.error_kind
        return None

    def reset(self) -> None:
        self.stats = Stats()
        self.replies.clear()
        self.last_request = None
        self.set_profile(self.defaults)

    def as_dict(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "wire": self.wire,
            **self.profile.as_dict(),
            "scripted_replies": len(self.replies),
            "stats": self.stats.as_dict(),
        }


def catalog_profiles(path: Path = CATALOG_PATH) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """slug → (wire, profile fields) from the catalog's providers and their `simulated` block."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    out: dict[str, tuple[str | None, dict[str, Any]]] = {}
    known = {f.name for f in fields(Profile)}
    for provider in data.get("providers", []):
        simulated = provider.get("simulated") or {}
        out[provider["slug"]] = (
            provider.get("wire"),
            {k: v for k, v in simulated.items() if k in known},
        )
    return out


def catalog_models(path: Path = CATALOG_PATH) -> dict[str, list[str]]:
    """slug → upstream model names served there, for GET /v1/models."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    out: dict[str, list[str]] = {}
    for endpoint in data.get("endpoints", []):
        names = out.setdefault(endpoint["provider"], [])
        if endpoint["upstream_model"] not in names:
            names.append(endpoint["upstream_model"])
    return out


class Registry:
    """All providers of one simulator process, plus the prompts it has seen (for caching)."""

    def __init__(self, profiles: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        overrides = dict(profiles or {})
        wildcard = dict(overrides.pop(WILDCARD, {}))
        base = self._base = Profile().updated(wildcard)
        self._known: dict[str, tuple[str | None, Profile]] = {}
        for slug, (wire, simulated) in catalog_profiles().items():
            # The wildcard wins over the catalog (e.g. "everything at 0 ms" for tests).
            changes = {k: v for k, v in simulated.items() if k not in wildcard}
            self._known[slug] = (wire, base.updated(changes))
        for slug, changes in overrides.items():
            wire, profile = self._known.get(slug, (None, base))
            self._known[slug] = (wire, profile.updated(changes))
        self.models = catalog_models()
        self.providers: dict[str, Provider] = {}
        self.seen_prompts: set[int] = set()
        self.reset()

    def get(self, slug: str) -> Provider:
        provider = self.providers.get(slug)
        if provider is None:  # any slug works: tests and benchmarks make up their own
            provider = self.providers[slug] = Provider(slug, None, self._base)
        return provider

    def reset(self) -> None:
        self.providers = {
            slug: Provider(slug, wire, profile) for slug, (wire, profile) in self._known.items()
        }
        self.seen_prompts.clear()

    def explicit_cache(
        self, slug: str, key: int, segments: tuple[tuple[int, str], ...]
    ) -> tuple[int, int, int]:
        """(read, written 5 min, written 1 h) for a prompt whose prefix carries cache_control
        breakpoints, as Anthropic bills it: a prefix seen before is read from the cache, else
        each breakpoint's segment is written with its TTL. Too short a prefix is not cached."""
        total = sum(tokens for tokens, _ in segments)
        if total < CACHE_MIN_TOKENS:
            return 0, 0, 0
        salted = hash((slug, "explicit", key))
        if salted in self.seen_prompts:
            return total, 0, 0
        if len(self.seen_prompts) >= MAX_PROMPT_CACHE:
            self.seen_prompts.clear()
        self.seen_prompts.add(salted)
        written_1h = sum(tokens for tokens, ttl in segments if ttl == "1h")
        return 0, total - written_1h, written_1h

    def cached_tokens(self, slug: str, keys: tuple[int, ...], prompt_tokens: int) -> int:
        """Half the prompt counts as cached when this provider already saw the prompt (or the
        conversation up to its last message) and it is long enough to be cached at all."""
        if not keys:
            return 0
        salted = [hash((slug, key)) for key in keys]  # in-process only, so hash() is fine
        hit = any(key in self.seen_prompts for key in salted)
        if len(self.seen_prompts) >= MAX_PROMPT_CACHE:
            self.seen_prompts.clear()
        self.seen_prompts.add(salted[0])
        if hit and prompt_tokens >= CACHE_MIN_TOKENS:
            return prompt_tokens // 2
        return 0
