"""Which tool a simulated model calls, and what it says once a tool has answered.

No language is understood: a tool is picked by word overlap between the user's latest words
and each tool's name (split snake/camel case), description, parameter names, parameter
descriptions and enum values, a word of the name counting most. The best tool is called when
its score reaches THRESHOLD; otherwise the model answers in text. Right after tool results the
model answers in text that reports them (so agent loops end), unless the words sent with or
after the results name a tool. Wire-independent and deterministic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from .prompt import STOPWORDS, content_words, split_name

NAME_WEIGHT = 3  # a word of the tool's name
PARAMETER_WEIGHT = 2  # a parameter's name, an enum value
TEXT_WEIGHT = 1  # a word of a description
MENTION = 10  # the tool's exact name is written in the prompt
THRESHOLD = 3  # one word of the name, or a parameter and a description word
SUMMARY_WORDS = 48


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    schema: Any


@dataclass(slots=True)
class Turn:
    """The end of a conversation, as each wire reads it."""

    prompt: str = ""  # the user's latest words (those sent with or after tool results)
    results: list[tuple[str, str]] = field(default_factory=list)  # (tool name, its result)
    instructions: str = ""  # system prompt and the latest user words (what JSON to write)


def choose(tools: list[Tool], turn: Turn, *, forced: bool) -> Tool | None:
    """The tool to call, or None to answer in text. `forced`: a tool must be called (OpenAI
    "required", Anthropic "any", Gemini "ANY"); the first one when none fits."""
    if not tools:
        return None
    if turn.results:
        return asked_for(tools, turn.prompt)
    found = best(tools, turn.prompt)
    if found is None and forced:
        return tools[0]
    return found


def best(tools: list[Tool], prompt: str) -> Tool | None:
    words = set(content_words(prompt))
    lowered = prompt.lower()
    chosen, top = None, THRESHOLD - 1
    for tool in tools:
        value = score(tool, words, lowered)
        if value > top:  # ties: the first declared
            chosen, top = tool, value
    return chosen


def score(tool: Tool, words: set[str], lowered_prompt: str) -> int:
    weights = _weights(tool)
    total = sum(weights.get(word, 0) for word in words)
    if _named(tool.name, lowered_prompt):
        total += MENTION
    return total


def asked_for(tools: list[Tool], prompt: str) -> Tool | None:
    """A tool the prompt names outright: 'get_weather', or its words in order ('get weather')."""
    lowered = prompt.lower()
    for tool in tools:
        if _named(tool.name, lowered):
            return tool
        phrase = " ".join(w for w in split_name(tool.name) if w not in STOPWORDS)
        if " " in phrase and re.search(rf"\b{re.escape(phrase)}", " ".join(content_words(prompt))):
            return tool
    return None


def _named(name: str, lowered_prompt: str) -> bool:
    if not name:
        return False
    return re.search(rf"(?<![\w-]){re.escape(name.lower())}(?![\w-])", lowered_prompt) is not None


def _weights(tool: Tool) -> dict[str, int]:
    weights: dict[str, int] = {}

    def add(words: list[str], weight: int) -> None:
        for word in words:
            if word not in STOPWORDS and weights.get(word, 0) < weight:
                weights[word] = weight

    add(content_words(tool.description), TEXT_WEIGHT)
    _parameters(tool.schema, add, 0)
    add(split_name(tool.name), NAME_WEIGHT)
    return weights


def _parameters(schema: Any, add: Any, depth: int) -> None:
    if not isinstance(schema, dict) or depth > 2:
        return
    props = schema.get("properties")
    for name, spec in props.items() if isinstance(props, dict) else ():
        add(split_name(name), PARAMETER_WEIGHT)
        if isinstance(spec, dict):
            if isinstance(spec.get("description"), str):
                add(content_words(spec["description"]), TEXT_WEIGHT)
            for value in spec.get("enum") or ():
                if isinstance(value, str):
                    add(content_words(value), PARAMETER_WEIGHT)
            _parameters(spec, add, depth + 1)
            _parameters(spec.get("items"), add, depth + 1)


# --- after a tool's result ---


def summary(results: list[tuple[str, str]]) -> str:
    """Text that reports tool results: 'According to get_weather, temp is 21.'"""
    sentences = []
    for name, content in results[:4]:
        sentences.append(f"According to {name or 'the tool'}, {_gist(content)}.")
    words = " ".join(sentences).split()
    if len(words) > SUMMARY_WORDS:
        words = [*words[:SUMMARY_WORDS], "..."]
    return " ".join(words)


def _gist(content: str) -> str:
    content = content.strip()
    if not content:
        return "there is nothing to report"
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.rstrip(".")
    if isinstance(value, dict) and value:
        parts = [f"{key} is {_short(item)}" for key, item in list(value.items())[:6]]
        return ", ".join(parts)
    if isinstance(value, list) and value:
        return "the results are " + ", ".join(_short(item) for item in value[:6])
    return f"the result is {_short(value)}"


def _short(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    if isinstance(value, int | float):
        return str(value)
    text = orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."
