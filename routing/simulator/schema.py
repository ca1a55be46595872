"""JSON that satisfies a JSON Schema, with values taken from the prompt where they fit.

The simulator understands no language. It takes the candidate values found in the prompt
(prompt.Hints) and puts each where a property's name and schema say it fits: "Paris" into
`city`, the 3 of "3 days" into `days`, "fahrenheit" into an enum that lists it. Everything
else is a valid, plain value. The same (schema, prompt, seed) always gives the same value.
Also Gemini's OpenAPI-style schemas (upper-case types, `nullable`) and Pydantic's (`$defs`,
`anyOf` with null, `default`, discriminated unions).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .prompt import STOPWORDS, Hints, split_name, stem

MAX_DEPTH = 16  # recursive schemas ($ref to an ancestor) stop here
DEEP = 6  # past this depth only what is required is filled, and arrays keep their minimum

# A property's kind, from the words of its name.
_PLACE = frozenset(
    """city location place town country destination origin region state address where venue
    street airport departure arrival from to source dest locality area province capital""".split()
)
_FROM = frozenset("from origin departure source start".split())
_TO = frozenset("to destination arrival dest target end".split())
_PERSON = frozenset(
    """name person author user username customer recipient contact owner who assignee
    attendee guest passenger patient employee member sender first last full""".split()
)
_QUERY = frozenset("query q search keyword keywords term terms topic".split())
_SENTENCE = frozenset(
    """text prompt question message content input request instruction instructions task body
    description summary note notes comment reason explanation details detail""".split()
)
_TITLE = frozenset("title subject headline label caption".split())
_SINGLE_WORDS = frozenset(
    "tag keyword label topic category word term interest skill ingredient genre".split()
)
_IDENT = frozenset("id uuid identifier key code sku slug ref reference".split())
_NUMBER_SYNONYMS = {
    "age": frozenset({"year", "old"}),
    "price": frozenset({"dollar", "usd", "eur", "euro", "gbp", "pound"}),
    "amount": frozenset({"dollar", "usd", "eur", "euro", "gbp", "pound"}),
    "cost": frozenset({"dollar", "usd", "eur", "euro"}),
    "count": frozenset({"item", "result", "time"}),
    "limit": frozenset({"item", "result"}),
    "passenger": frozenset({"adult", "people", "person", "traveler", "traveller", "guest"}),
    "guest": frozenset({"adult", "people", "person"}),
    "people": frozenset({"person", "guest", "adult"}),
    "temperature": frozenset({"degree", "c", "f"}),
    "duration": frozenset({"minute", "hour", "day", "week"}),
}
_DEFAULTS = {
    "city": "Paris",
    "town": "Paris",
    "location": "Paris",
    "place": "Paris",
    "destination": "Paris",
    "origin": "London",
    "country": "France",
    "region": "Europe",
    "address": "1 Example Street, Paris",
    "name": "Ada Lovelace",
    "first": "Ada",
    "last": "Lovelace",
    "email": "ada@example.com",
    "phone": "+1 555 0100",
    "language": "en",
    "lang": "en",
    "locale": "en-US",
    "currency": "USD",
    "timezone": "UTC",
    "color": "blue",
    "colour": "blue",
    "status": "active",
    "unit": "metric",
    "url": "https://example.com",
    "website": "https://example.com",
    "link": "https://example.com",
}
_STRING_FORMATS = {
    "date-time": "2026-01-01T09:00:00Z",
    "date": "2026-01-01",
    "time": "09:00:00Z",
    "email": "ada@example.com",
    "idn-email": "ada@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "iri": "https://example.com",
    "uri-reference": "https://example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "hostname": "example.com",
    "duration": "P1D",
}
_FILLER = (
    "a short clear answer based on the request with the details that matter most here"
).split()


@dataclass(slots=True)
class _Fill:
    hints: Hints
    root: Any
    used_names: set[str] = field(default_factory=set)
    used_numbers: set[int] = field(default_factory=set)  # indexes into hints.numbers


def fill(schema: Any, hints: Hints | None = None) -> Any:
    """A value valid against `schema`, using `hints` where they fit."""
    state = _Fill(hints or Hints(), schema)
    return _value(state, schema, (), 0, 0)


def _value(state: _Fill, schema: Any, name: tuple[str, ...], depth: int, variant: int) -> Any:
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return _text(state, {}, name, variant) if depth <= MAX_DEPTH else None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = _resolve(ref, state.root)
        if len(schema) > 1:  # siblings of $ref (a description, a default) apply too
            target = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _value(state, target, name, depth + 1, variant)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return _choose_enum(state, schema, enum, variant)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            chosen = _pick_option(state, options)
            merged = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
            if isinstance(chosen, dict) and "$ref" not in chosen:
                chosen = {**merged, **chosen}
            return _value(state, chosen, name, depth + 1, variant)
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and all_of:
        return _value(state, _merge_all_of(schema, all_of, state.root), name, depth + 1, variant)

    kind = _type_of(schema)
    if kind == "null":
        return None
    if kind == "object":
        return _object(state, schema, name, depth)
    if kind == "array":
        return _array(state, schema, name, depth)
    if kind in ("integer", "number"):
        return _number(state, schema, name, integer=kind == "integer", variant=variant)
    if kind == "boolean":
        default = schema.get("default")
        value = default if isinstance(default, bool) else True
        return value if variant % 2 == 0 else not value
    if "default" in schema and kind is None:
        return schema["default"]
    return _text(state, schema, name, variant)


def _object(state: _Fill, schema: dict[str, Any], name: tuple[str, ...], depth: int) -> Any:
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = schema.get("required")
    if isinstance(required, list) and required:
        keys = [k for k in required if isinstance(k, str)]
        words = set(state.hints.words)
        for key in props:
            if key in keys:
                continue
            if _is_tag(_deref(props[key], state.root)):  # a union's discriminator: always
                keys.append(key)
            elif depth <= DEEP and (  # some others: those the prompt speaks of, and a few more
                set(split_name(key)) & words
                or _enum_mentioned(state, _deref(props[key], state.root))
                or _coin(state.hints.seed, key)
            ):
                keys.append(key)
    else:
        keys = list(props)
    minimum = _int(schema.get("minProperties"), 0) or 0
    for key in props:
        if len(keys) >= minimum:
            break
        if key not in keys:
            keys.append(key)
    out = {key: _value(state, props.get(key, {}), (key, *name), depth + 1, 0) for key in keys}
    extra = schema.get("additionalProperties", {})
    if len(out) < minimum and extra is not False:  # a map: invent its keys
        words = [w for w in state.hints.words if w not in out]
        for i in range(minimum - len(out)):
            key = words[i] if i < len(words) else f"key_{i + 1}"
            out[key] = _value(state, extra if isinstance(extra, dict) else {}, (key,), depth + 1, i)
    return out


def _array(state: _Fill, schema: dict[str, Any], name: tuple[str, ...], depth: int) -> list[Any]:
    prefix = schema.get("prefixItems")
    items = schema.get("items", {})
    if isinstance(items, list):  # draft 4-7's tuple form
        prefix, items = items, schema.get("additionalItems", {})
    out = []
    if isinstance(prefix, list) and prefix:
        out = [_value(state, item, name, depth + 1, 0) for item in prefix]
    low = _int(schema.get("minItems"), 0) or 0
    high = _int(schema.get("maxItems"), None)
    if out:
        count = max(low, len(out))
    elif depth > DEEP:
        count = low
    else:
        scalar = _type_of(_deref(items, state.root)) not in ("object", "array")
        count = max(low, 2 if scalar else 1)
    if high is not None:
        count = min(count, high)
    unique = schema.get("uniqueItems") is True
    tries = 0
    while len(out) < count and tries < count + 8:
        item = _value(state, items, name, depth + 1, len(out) + tries)
        if unique and item in out and isinstance(item, str):
            item = f"{item} {len(out) + 1}"
        if unique and item in out:
            tries += 1
            continue
        out.append(item)
    return out


def _choose_enum(state: _Fill, schema: dict[str, Any], enum: list[Any], variant: int) -> Any:
    if variant == 0:
        text = state.hints.text.lower()
        if text:
            for option in enum:
                if isinstance(option, str) and option and _mentions(text, option.lower()):
                    return option
        if schema.get("default") in enum:
            return schema["default"]
    return enum[variant % len(enum)]


def _mentions(text: str, phrase: str) -> bool:
    at = text.find(phrase)
    while at >= 0:
        end = at + len(phrase)
        if (at == 0 or not text[at - 1].isalnum()) and (
            end == len(text) or not text[end].isalnum()
        ):
            return True
        at = text.find(phrase, at + 1)
    return False


def _pick_option(state: _Fill, options: list[Any]) -> Any:
    """An option of anyOf/oneOf: not null when there is another; an object over a scalar when
    the prompt has nothing for scalars (Pydantic's unions are mostly models)."""
    real = [o for o in options if _type_of(_deref(o, state.root)) != "null"]
    return real[0] if real else options[0]


def _merge_all_of(schema: dict[str, Any], parts: list[Any], root: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in parts:
        part = _deref(part, root)
        if not isinstance(part, dict):
            continue
        for k, v in part.items():
            if k == "properties" and isinstance(v, dict):
                merged["properties"] = {**merged.get("properties", {}), **v}
            elif k == "required" and isinstance(v, list):
                merged["required"] = [*merged.get("required", []), *v]
            else:
                merged.setdefault(k, v)
    return merged


def _deref(schema: Any, root: Any) -> Any:
    for _ in range(8):
        if isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
            schema = _resolve(schema["$ref"], root)
        else:
            break
    return schema


def _resolve(ref: str, root: Any) -> Any:
    if not ref.startswith("#"):
        return {}
    node = root
    for part in ref.lstrip("#/").split("/"):
        if not part:
            continue
        if not isinstance(node, dict):
            return {}
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {})
    return node


def _type_of(schema: Any) -> str | None:
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if isinstance(k, str) and k.lower() != "null"), "null")
    if isinstance(kind, str):
        return kind.lower()
    if "properties" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return None


def _int(value: Any, default: int | None) -> int | None:
    if isinstance(value, str) and value.isdigit():  # Gemini's schema proto sends int64 as strings
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _enum_mentioned(state: _Fill, schema: Any) -> bool:
    enum = schema.get("enum") if isinstance(schema, dict) else None
    text = state.hints.text.lower()
    return isinstance(enum, list) and any(
        isinstance(option, str) and option and _mentions(text, option.lower()) for option in enum
    )


def _is_tag(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    enum = schema.get("enum")
    return "const" in schema or (isinstance(enum, list) and len(enum) == 1)


def _coin(seed: int, key: str) -> bool:
    return (seed ^ sum(map(ord, key)) * 2654435761) & 4 == 0


# --- numbers ---


def _number(
    state: _Fill, schema: dict[str, Any], name: tuple[str, ...], *, integer: bool, variant: int
) -> int | float:
    words = set(split_name(name[0])) if name else set()
    synonyms = set().union(*(_NUMBER_SYNONYMS.get(w, ()) for w in words)) if words else set()
    numbers = state.hints.numbers
    fits = [
        i
        for i, (value, _, _) in enumerate(numbers)
        if i not in state.used_numbers and _fits(value, schema, integer)
    ]
    # A number next to the property's word ("3 days", "age 36", "36 years old") first.
    chosen = next(
        (i for i in fits if {numbers[i][1], numbers[i][2]} & (words | synonyms)),
        None,
    )
    if chosen is None and words and not words & {"lat", "latitude", "lon", "lng", "longitude"}:
        chosen = fits[0] if fits else None
    if chosen is not None and variant == 0:
        state.used_numbers.add(chosen)
        value = numbers[chosen][0]
        return int(value) if integer else value
    default = schema.get("default")
    if isinstance(default, int | float) and not isinstance(default, bool) and variant == 0:
        if _fits(default, schema, integer):
            return default
    return _bounded(schema, 1 + variant, integer=integer)


def _fits(value: float, schema: dict[str, Any], integer: bool) -> bool:
    if integer and not float(value).is_integer():
        return False
    low, high = schema.get("minimum"), schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(low, int | float) and value < low:
        return False
    if isinstance(high, int | float) and value > high:
        return False
    if isinstance(ex_low, int | float) and not isinstance(ex_low, bool) and value <= ex_low:
        return False
    if isinstance(ex_high, int | float) and not isinstance(ex_high, bool) and value >= ex_high:
        return False
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and step > 0:
        return math.isclose(value / step, round(value / step))
    return True


def _bounded(schema: dict[str, Any], value: float, *, integer: bool) -> int | float:
    low, high = schema.get("minimum"), schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(low, int | float) and value < low:
        value = low
    if isinstance(ex_low, int | float) and not isinstance(ex_low, bool) and value <= ex_low:
        value = math.floor(ex_low) + 1 if integer else ex_low + 1
    if isinstance(high, int | float) and value > high:
        value = high
    if isinstance(ex_high, int | float) and not isinstance(ex_high, bool) and value >= ex_high:
        value = math.ceil(ex_high) - 1 if integer else ex_high - 0.5
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and step > 0 and not _fits(value, {"multipleOf": step}, False):
        value = math.ceil(value / step) * step
        if isinstance(high, int | float) and value > high:
            value = math.floor(high / step) * step
    if integer:
        return int(value)
    return int(value) if float(value).is_integer() else value


# --- strings ---


def _text(state: _Fill, schema: dict[str, Any], name: tuple[str, ...], variant: int) -> str:
    value = _guess(state, schema, name, variant)
    if value is None:
        default = schema.get("default")
        if isinstance(default, str) and variant == 0:
            value = default
        else:
            value = _fallback(state, schema, name, variant)
    return _fit_length(value, schema, state.hints.seed)


def _guess(state: _Fill, schema: dict[str, Any], name: tuple[str, ...], variant: int) -> str | None:
    hints = state.hints
    fmt = schema.get("format")
    if fmt in ("date-time",):
        return hints.datetimes[0] if hints.datetimes else _from_date(hints)
    if fmt == "date":
        return hints.dates[0] if hints.dates else None
    if fmt in ("email", "idn-email"):
        return hints.emails[0] if hints.emails else None
    if fmt in ("uri", "url", "iri", "uri-reference"):
        return hints.urls[0] if hints.urls else None
    if fmt == "uuid":
        return _uuid(hints.seed + variant + sum(map(ord, name[0] if name else "")))
    if isinstance(fmt, str) and fmt in _STRING_FORMATS:
        return None
    if not name:
        return hints.quoted[0] if hints.quoted else None
    words = set(split_name(name[0]))
    if words & {"email", "mail"} and hints.emails:
        return hints.emails[0]
    if words & {"url", "uri", "link", "website", "site", "homepage"} and hints.urls:
        return hints.urls[0]
    if words & {"date", "day", "when", "deadline", "birthday", "dob"} and hints.dates:
        return hints.dates[0]
    if words & _IDENT and not words & _PERSON:
        return None
    if words & _PLACE:
        return _place(state, words)
    if words & _PERSON:
        person = _next_name(state, [n for n in hints.proper if n not in hints.places])
        person = person or _next_name(state, hints.proper)
        if person and words & {"first"}:
            return person.split()[0]
        if person and words & {"last"} and " " in person:
            return person.split()[-1]
        return person
    if words & _QUERY:
        if hints.quoted:
            return hints.quoted[0]
        return " ".join(hints.terms[:6]) or None
    if words & _TITLE:
        if hints.quoted:
            return hints.quoted[0]
        return " ".join(hints.terms[:5]).capitalize() or None
    if words & _SENTENCE:
        return hints.text[:200] or None
    if hints.quoted and variant == 0 and words & {"phrase", "string", "word", "term"}:
        return hints.quoted[0]
    return None


def _place(state: _Fill, words: set[str]) -> str | None:
    hints = state.hints
    for side, cue, other in ((_FROM, "from", "to"), (_TO, "to", "from")):
        if words & side:
            found = hints.after.get(cue)
            if found and found not in state.used_names:
                state.used_names.add(found)
                return found
            # An origin is not where the prompt goes "to", nor a destination where it's "from".
            if (taken := hints.after.get(other)) is not None:
                state.used_names.add(taken)
                found = _next_name(state, hints.places) or _next_name(state, hints.proper)
                state.used_names.discard(taken)
                return found
    return (
        _next_name(state, hints.places)
        or _next_name(state, hints.proper)
        or _next_name(state, hints.weak_places)
    )


def _next_name(state: _Fill, names: list[str]) -> str | None:
    for name in names:
        if name not in state.used_names:
            state.used_names.add(name)
            return name
    return None


def _fallback(state: _Fill, schema: dict[str, Any], name: tuple[str, ...], variant: int) -> str:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _STRING_FORMATS:
        return _STRING_FORMATS[fmt]
    seed = state.hints.seed
    words = split_name(name[0]) if name else []
    suffix = f" {variant + 1}" if variant else ""
    if set(words) & _IDENT:
        return f"{'_'.join(words) or 'id'}_{(seed >> 8) & 0xFFFFFF:06x}{variant or ''}"
    for word in reversed(words):
        if word in _DEFAULTS:
            return _DEFAULTS[word] + suffix
    terms = state.hints.terms
    if terms and set(words) & _SINGLE_WORDS:
        return terms[variant % len(terms)]
    if terms:
        start = (seed + variant) % len(terms)
        return " ".join((terms[start:] + terms[:start])[:3])
    start = (seed + variant) % len(_FILLER)
    return " ".join((_FILLER[start:] + _FILLER[:start])[:4])


def _from_date(hints: Hints) -> str | None:
    return f"{hints.dates[0]}T09:00:00Z" if hints.dates else None


def _uuid(seed: int) -> str:
    raw = hashlib.blake2b(seed.to_bytes(16, "little", signed=True), digest_size=16).hexdigest()
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-8{raw[17:20]}-{raw[20:32]}"


def _fit_length(text: str, schema: dict[str, Any], seed: int) -> str:
    low = _int(schema.get("minLength"), None)
    if low is not None and len(text) < low:
        pad = " ".join(_FILLER[seed % 4 :] + _FILLER)
        text = (text + " " + pad) if text else pad
        while len(text) < low:
            text += " " + pad
    high = _int(schema.get("maxLength"), None)
    if high is not None and len(text) > high:
        text = text[:high].rstrip() or text[:high]
        if low is not None and len(text) < low:
            text = text.ljust(low, "x")
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and not _matches(pattern, text):
        text = _pattern_guess(pattern) or text
    return text


def _matches(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return True


def _pattern_guess(pattern: str) -> str | None:
    """A value for the most common simple patterns (digits, letters, hex), or None."""
    for candidate in ("0", "00000", "A", "AAA", "a", "abc", "2026-01-01", "ABC-123", "+15550100"):
        if _matches(pattern, candidate) and re.fullmatch(pattern, candidate):
            return candidate
    return None


# --- JSON without a schema (json_object): follow what the prompt asks for ---

_KEYS = re.compile(
    r"\b(?:keys?|fields?|properties|attributes|entries)\b\s*(?:named|called|of|like|:)?\s*"
    r"((?:[`\"']?[A-Za-z_][\w-]*[`\"']?(?:\s*\([^)\n]{0,40}\))?)"
    r"(?:\s*(?:,|;|\band\b|&|\bor\b)\s*(?:\band\b\s*)?"
    r"[`\"']?[A-Za-z_][\w-]*[`\"']?(?:\s*\([^)\n]{0,40}\))?)*)",
    re.IGNORECASE,
)
_KEY = re.compile(r"[`\"']?([A-Za-z_][\w-]*)[`\"']?(?:\s*\(([^)\n]{0,40})\))?")
_NOT_KEYS = STOPWORDS | frozenset("following named called like these those".split())
_COUNTS = frozenset("age count number year quantity total size length rank page pages".split())
_AMOUNTS = frozenset(
    """price amount score rating temperature temp lat lon lng latitude longitude percent
    percentage cost weight height width distance confidence probability""".split()
)
_FLAGS = frozenset("enabled active valid available done completed success verified".split())
_NOT_PLURAL = frozenset("address status news series analysis class business process".split())


def answer_object(instructions: str, prompt: str, seed: int) -> Any:
    """A JSON object for json_object mode: the schema or example the instructions hold, else
    the keys they name, else a small answer object; values from the prompt where they fit
    (the JSON and the key lists written in it are instructions, not facts)."""
    facts = _KEYS.sub(" ", strip_json(prompt))
    hints = Hints.of(facts, seed)
    found = _json_in(instructions)
    schema = next((value for value in reversed(found) if _looks_like_schema(value)), None)
    if schema is not None:
        return fill(schema, hints)
    example = next((value for value in reversed(found) if isinstance(value, dict) and value), None)
    if example is not None:
        return fill(_schema_of(example), hints)
    keys = named_keys(instructions)
    if keys:
        schema = {
            "type": "object",
            "properties": {key: _schema_for_key(key, kind) for key, kind in keys},
            "required": [key for key, _ in keys],
        }
        return fill(schema, hints)
    words = hints.terms[:8] or _FILLER[:8]
    return {"answer": " ".join(words).capitalize() + "."}


def named_keys(text: str) -> list[tuple[str, str]]:
    """The keys an instruction names: 'with keys name and age' → [('name', ''), ('age', '')]."""
    out: dict[str, str] = {}
    for match in _KEYS.finditer(text[:4000]):
        for key, kind in _KEY.findall(match.group(1)):
            if key.lower() in _NOT_KEYS:
                if not out:
                    break
                continue
            out.setdefault(key, kind.strip().lower())
        if out:
            break
    return list(out.items())


def _schema_for_key(key: str, kind: str) -> dict[str, Any]:
    for word, schema in (
        ("int", {"type": "integer"}),
        ("number", {"type": "number"}),
        ("float", {"type": "number"}),
        ("bool", {"type": "boolean"}),
        ("list", {"type": "array", "items": {"type": "string"}}),
        ("array", {"type": "array", "items": {"type": "string"}}),
        ("str", {"type": "string"}),
        ("text", {"type": "string"}),
    ):
        if word in kind:
            return schema
    words = split_name(key)
    raw = key.lower()
    if raw.startswith(("is_", "has_", "can_", "should_")) or set(words) & _FLAGS:
        return {"type": "boolean"}
    if set(words) & _COUNTS:
        return {"type": "integer", "minimum": 0}
    if set(words) & _AMOUNTS:
        return {"type": "number"}
    if set(words) & {"date", "birthday", "dob"} or raw.endswith(("_at", "_date")):
        return {"type": "string", "format": "date"}
    if raw.endswith("s") and len(raw) > 3 and raw not in _NOT_PLURAL and not raw.endswith("ss"):
        return {"type": "array", "items": {"type": "string"}, "title": stem(raw)}
    return {"type": "string"}


def _schema_of(example: Any) -> dict[str, Any]:
    """A schema that an example value is an instance of, its values kept as defaults."""
    if isinstance(example, dict):
        return {
            "type": "object",
            "properties": {k: _schema_of(v) for k, v in example.items()},
            "required": list(example),
        }
    if isinstance(example, list):
        return {
            "type": "array",
            "items": _schema_of(example[0]) if example else {"type": "string"},
            "minItems": min(len(example), 1),
        }
    if isinstance(example, bool):
        return {"type": "boolean", "default": example}
    if isinstance(example, int):
        return {"type": "integer", "default": example}
    if isinstance(example, float):
        return {"type": "number", "default": example}
    if example is None:
        return {"type": "null"}
    text = str(example)
    placeholder = not text or text.lower() in ("string", "str", "...", "text", "value")
    return {"type": "string"} if placeholder else {"type": "string", "default": text}


def _looks_like_schema(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    if "$schema" in value or "$defs" in value or "definitions" in value:
        return True
    props = value.get("properties")
    return isinstance(props, dict) and all(isinstance(p, dict) for p in props.values())


def is_open_object(schema: Any) -> bool:
    """Any object will do: no properties, no required keys, nothing else that constrains."""
    if schema is None:
        return True
    if not isinstance(schema, dict) or _type_of(schema) not in (None, "object"):
        return False
    constraining = ("properties", "required", "$ref", "anyOf", "oneOf", "allOf", "enum", "const")
    if any(schema.get(key) for key in constraining):
        return False
    return schema.get("additionalProperties") is not False


def strip_json(text: str) -> str:
    """The text without the JSON objects written in it (they are instructions, not facts)."""
    spans = _json_spans(text)
    for start, end, _ in reversed(spans):
        text = text[:start] + " " + text[end:]
    return text


def _json_in(text: str) -> list[Any]:
    """The JSON objects written in a text (an example, a schema), outermost ones, in order."""
    return [value for _, _, value in _json_spans(text)]


def _json_spans(text: str) -> list[tuple[int, int, Any]]:
    decoder = json.JSONDecoder()
    found: list[tuple[int, int, Any]] = []
    at = text.find("{")
    attempts = 0
    while at >= 0 and attempts < 64 and len(found) < 8:
        attempts += 1
        try:
            value, end = decoder.raw_decode(text, at)
        except ValueError:
            at = text.find("{", at + 1)
            continue
        found.append((at, end, value))
        at = text.find("{", end)
    return found
