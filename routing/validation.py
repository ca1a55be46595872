"""Checks on an incoming OpenAI-style body, each failing with a clear 400 naming the field.

Hand-written rather than a serializer: it runs on every request, and a chat body can be large.
Unknown fields pass through (clients send provider-specific extras), except that adapters for
other wire formats drop what they don't understand.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from routing.errors import bad_request
from routing.router import STRATEGIES, Preferences

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
REASONING_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high"})
NANO_PER_USD = Decimal(1_000_000_000)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    body: dict[str, Any]
    model_names: tuple[str, ...]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    prefs: Preferences
    strategy: str | None
    hedge_after_ms: float | None
    has_images: bool
    has_tools: bool
    wants_json: bool
    n: int = 1  # choices asked for
    logprobs: bool = False  # log probabilities of the output tokens asked for


MAX_CHOICES = 8  # n: each choice is held and billed; more is a batch's job


def _int(body: dict, name: str, *, minimum: int = 1, maximum: int = 2**31 - 1) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise bad_request(f"'{name}' must be an integer from {minimum} to {maximum}.", param=name)
    return value


def _finite(value: Any) -> bool:
    """A JSON number that is a real number (not a bool, NaN or an infinity)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _number(body: dict, name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not _finite(value) or not low <= value <= high:
        raise bad_request(f"'{name}' must be a number between {low:g} and {high:g}.", param=name)


def _slugs(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"'{name}' must be a list of provider slugs.", param=name)
    return tuple(v.strip().lower() for v in value)


# A bound above any real price (USD per 1M tokens): larger means "no limit".
_PRICE_CEILING = Decimal(1_000_000)


def _price(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise bad_request(f"'{name}' must be a price in USD per 1M tokens.", param=name)
    try:
        usd = Decimal(str(value).strip())
    except InvalidOperation:
        raise bad_request(f"'{name}' must be a price in USD per 1M tokens.", param=name) from None
    if not usd.is_finite():
        raise bad_request(f"'{name}' must be a finite price in USD per 1M tokens.", param=name)
    if usd < 0:
        raise bad_request(f"'{name}' can't be negative.", param=name)
    return int(min(usd, _PRICE_CEILING) * NANO_PER_USD)


def parse_preferences(raw: Any) -> tuple[Preferences, str | None]:
    if raw is None:
        return Preferences(), None
    if not isinstance(raw, dict):
        raise bad_request("'provider' must be an object of routing preferences.", param="provider")
    sort = raw.get("sort")
    if isinstance(sort, dict):  # OpenRouter also accepts {"by": "price", ...}
        sort = sort.get("by")
    if sort is not None and not (isinstance(sort, str) and sort in STRATEGIES):
        raise bad_request(
            f"'provider.sort' must be one of {', '.join(STRATEGIES)}.", param="provider.sort"
        )
    allow = raw.get("allow_fallbacks", True)
    if not isinstance(allow, bool):
        raise bad_request(
            "'provider.allow_fallbacks' must be true or false.", param="provider.allow_fallbacks"
        )
    max_price = raw.get("max_price") or {}
    if not isinstance(max_price, dict):
        raise bad_request("'provider.max_price' must be an object.", param="provider.max_price")
    latency = raw.get("preferred_max_latency")
    if isinstance(latency, dict):  # percentile form: use the p50 bound
        latency = latency.get("p50")
    throughput = raw.get("preferred_min_throughput")
    if isinstance(throughput, dict):
        throughput = throughput.get("p50")
    for value, name in (
        (latency, "preferred_max_latency"),
        (throughput, "preferred_min_throughput"),
    ):
        if value is not None and (not _finite(value) or value < 0):
            raise bad_request(
                f"'provider.{name}' must be a positive number.", param=f"provider.{name}"
            )
    prefs = Preferences(
        order=_slugs(raw.get("order"), "provider.order"),
        only=_slugs(raw.get("only"), "provider.only"),
        ignore=_slugs(raw.get("ignore"), "provider.ignore"),
        allow_fallbacks=allow,
        sort=sort,
        max_prompt_price=_price(max_price.get("prompt"), "provider.max_price.prompt"),
        max_completion_price=_price(max_price.get("completion"), "provider.max_price.completion"),
        # OpenRouter states latency in seconds.
        preferred_max_latency_ms=latency * 1000 if latency is not None else None,
        preferred_min_throughput=throughput,
    )
    return prefs, sort


IMAGE_DETAILS = frozenset({"auto", "low", "high"})
# Tool and function names as OpenAI takes them (and Anthropic and Gemini can carry).
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _require(ok: bool, param: str, message: str) -> None:
    if not ok:
        raise bad_request(f"'{param}' {message}", param=param)


def _optional_str(parent: dict, name: str, where: str) -> None:
    value = parent.get(name)
    _require(value is None or isinstance(value, str), f"{where}.{name}", "must be a string.")


def _check_image_url(part: dict, where: str) -> None:
    image = part.get("image_url")
    _require(
        isinstance(image, dict),
        f"{where}.image_url",
        'must be an object: {"url": "https://..." or "data:image/...", "detail": "auto"}.',
    )
    url = image.get("url")
    _require(
        isinstance(url, str) and url.startswith(("http://", "https://", "data:image/")),
        f"{where}.image_url.url",
        "must be an http(s) URL or an image data URL.",
    )
    detail = image.get("detail")
    _require(
        detail is None or (isinstance(detail, str) and detail in IMAGE_DETAILS),
        f"{where}.image_url.detail",
        "must be auto, low or high.",
    )


def _check_part(part: Any, where: str) -> bool:
    """One content part; True when it is an image."""
    _require(
        isinstance(part, dict) and isinstance(part.get("type"), str) and part["type"],
        where,
        "must be an object with a 'type'.",
    )
    kind = part["type"]
    if kind == "text":
        _require(isinstance(part.get("text"), str), f"{where}.text", "must be a string.")
    elif kind == "image_url":
        _check_image_url(part, where)
        return True
    elif kind == "input_audio":
        audio = part.get("input_audio")
        _require(
            isinstance(audio, dict)
            and isinstance(audio.get("data"), str)
            and isinstance(audio.get("format"), str)
            and audio["format"].isalnum(),
            f"{where}.input_audio",
            'must be {"data": base64 audio, "format": "wav" or "mp3"}.',
        )
    elif kind == "file":
        file = part.get("file")
        _require(isinstance(file, dict), f"{where}.file", "must be an object.")
        for name in ("file_data", "file_id", "filename"):
            _optional_str(file, name, f"{where}.file")
        _require(
            isinstance(file.get("file_data"), str) or isinstance(file.get("file_id"), str),
            f"{where}.file",
            "must hold 'file_data' (a data URL) or a 'file_id'.",
        )
    elif kind == "refusal":
        _require(isinstance(part.get("refusal"), str), f"{where}.refusal", "must be a string.")
    return False


def _check_function_call(call: Any, where: str) -> None:
    """An assistant's tool call (or legacy function_call): a name and JSON arguments text."""
    _require(isinstance(call, dict), where, "must be an object.")
    function = call.get("function") if "function" in call or "type" in call else call
    _require(
        isinstance(function, dict),
        f"{where}.function",
        'must be {"name": ..., "arguments": "<JSON text>"}.',
    )
    name = function.get("name")
    _require(
        isinstance(name, str) and bool(name),
        f"{where}.function.name" if function is not call else f"{where}.name",
        "must be a function name.",
    )
    arguments = function.get("arguments")
    _require(
        arguments is None or isinstance(arguments, str),
        f"{where}.function.arguments" if function is not call else f"{where}.arguments",
        "must be a string of JSON.",
    )


def _check_tool_calls(calls: Any, where: str) -> None:
    _require(isinstance(calls, list), f"{where}.tool_calls", "must be a list of tool calls.")
    for k, call in enumerate(calls):
        at = f"{where}.tool_calls[{k}]"
        _require(isinstance(call, dict), at, "must be an object.")
        _require(
            isinstance(call.get("id"), str) and bool(call["id"]), f"{at}.id", "must be a string."
        )
        _require(call.get("type", "function") == "function", f"{at}.type", "must be 'function'.")
        _check_function_call(call, at)


def _check_messages(messages: Any) -> tuple[bool, bool]:
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list.", param="messages")
    has_images = has_tool_messages = False
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"'{where}' must be an object.", param=where)
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise bad_request(
                f"'{where}.role' must be one of system, developer, user, assistant, tool.",
                param=f"{where}.role",
            )
        content = message.get("content")
        if content is None:
            if role != "assistant":
                raise bad_request(f"'{where}.content' is required.", param=f"{where}.content")
        elif isinstance(content, list):
            for j, part in enumerate(content):
                has_images = _check_part(part, f"{where}.content[{j}]") or has_images
        elif not isinstance(content, str):
            raise bad_request(
                f"'{where}.content' must be a string or a list of parts.", param=f"{where}.content"
            )
        _optional_str(message, "name", where)
        if message.get("tool_calls") is not None:
            _require(role == "assistant", f"{where}.tool_calls", "belong to assistant messages.")
            _check_tool_calls(message["tool_calls"], where)
        if message.get("function_call") is not None:
            _check_function_call(message["function_call"], f"{where}.function_call")
        if role == "tool":
            has_tool_messages = True
            if not isinstance(message.get("tool_call_id"), str):
                raise bad_request(
                    f"'{where}.tool_call_id' is required for tool messages.",
                    param=f"{where}.tool_call_id",
                )
    return has_images, has_tool_messages


def _check_tools(body: dict) -> bool:
    tools = body.get("tools")
    if tools is not None:
        _require(isinstance(tools, list), "tools", "must be a list.")
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            _require(
                isinstance(tool, dict)
                and tool.get("type", "function") == "function"
                and isinstance(function, dict),
                f"tools[{i}]",
                'must be {"type": "function", "function": {"name": ...}}.',
            )
            name = function.get("name")
            _require(
                isinstance(name, str) and bool(_NAME.fullmatch(name)),
                f"tools[{i}].function.name",
                "must be 1 to 64 letters, digits, '_', '-', '.' or ':'.",
            )
            _optional_str(function, "description", f"tools[{i}].function")
            parameters = function.get("parameters")
            _require(
                parameters is None or isinstance(parameters, dict),
                f"tools[{i}].function.parameters",
                "must be a JSON Schema object.",
            )
            strict = function.get("strict")
            _require(
                strict is None or isinstance(strict, bool),
                f"tools[{i}].function.strict",
                "must be true or false.",
            )
    choice = body.get("tool_choice")
    if choice is not None and not (
        (isinstance(choice, str) and choice in ("none", "auto", "required"))
        or (
            isinstance(choice, dict)
            and choice.get("type", "function") == "function"
            and isinstance(choice.get("function"), dict)
            and isinstance(choice["function"].get("name"), str)
            and bool(choice["function"]["name"])
        )
    ):
        raise bad_request(
            "'tool_choice' must be none, auto, required or a named function.", param="tool_choice"
        )
    parallel = body.get("parallel_tool_calls")
    _require(
        parallel is None or isinstance(parallel, bool),
        "parallel_tool_calls",
        "must be true or false.",
    )
    return bool(tools)


def _check_response_format(body: dict) -> bool:
    response_format = body.get("response_format")
    if response_format is None:
        return False
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if not isinstance(kind, str) or kind not in ("text", "json_object", "json_schema"):
        raise bad_request(
            "'response_format.type' must be text, json_object or json_schema.",
            param="response_format",
        )
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if (
            not isinstance(spec, dict)
            or not isinstance(spec.get("name", ""), str)
            or not isinstance(spec.get("schema", {}), dict)
            or not isinstance(spec.get("strict", False), bool | None)
        ):
            raise bad_request(
                "'response_format.json_schema' must hold a 'name' and a 'schema' object.",
                param="response_format.json_schema",
            )
    return kind != "text"


# Standard processing: what every catalog price is. OpenAI's "auto" is our project's setting,
# which is the default tier.
STANDARD_SERVICE_TIERS = frozenset({"auto", "default"})


def _check_priced_extras(body: dict) -> None:
    """Fields that make the provider charge something our prices don't cover (a dearer tier,
    audio tokens, web search calls, rejected prediction tokens) are refused, not passed on."""
    tier = body.get("service_tier")
    if tier is not None and tier not in STANDARD_SERVICE_TIERS:
        raise bad_request(
            f"'service_tier' {tier!r} is not available: requests run on the standard tier, at "
            "the prices listed for each model. Omit it, or send 'auto' or 'default'.",
            param="service_tier",
            code="unsupported_value",
        )
    modalities = body.get("modalities")
    if modalities is not None and (
        not isinstance(modalities, list) or any(m != "text" for m in modalities)
    ):
        raise bad_request(
            "Only text output is available: 'modalities' may only be [\"text\"] (audio output "
            "is not supported).",
            param="modalities",
            code="unsupported_value",
        )
    for name, what in (
        ("audio", "Audio output is"),
        ("web_search_options", "Web search is"),
        ("prediction", "Predicted outputs are"),
    ):
        if body.get(name) is not None:
            raise bad_request(
                f"{what} not supported: remove '{name}' from the request.",
                param=name,
                code="unsupported_parameter",
            )


def parse_chat(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    model = body.get("model")
    models = body.get("models")
    names: list[str] = []
    if isinstance(model, str) and model.strip():
        names.append(model.strip())
    elif model is not None:
        raise bad_request("'model' must be a model id.", param="model")
    if models is not None:
        if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
            raise bad_request("'models' must be a list of model ids.", param="models")
        names.extend(m for m in models if m not in names)
    if not names:
        raise bad_request("'model' is required.", param="model")
    has_images, _ = _check_messages(body.get("messages"))
    max_tokens = _int(body, "max_completion_tokens") or _int(body, "max_tokens")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "frequency_penalty", -2, 2)
    _number(body, "presence_penalty", -2, 2)
    n = _int(body, "n", maximum=MAX_CHOICES) or 1
    logprobs = body.get("logprobs")
    _require(logprobs is None or isinstance(logprobs, bool), "logprobs", "must be true or false.")
    top_logprobs = _int(body, "top_logprobs", minimum=0, maximum=20)
    _require(
        top_logprobs is None or bool(logprobs),
        "top_logprobs",
        "needs logprobs: true.",
    )
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str)
        or (isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop))
    ):
        raise bad_request("'stop' must be a string or up to 4 strings.", param="stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be true or false.", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object.", param="stream_options")
    include_usage = options.get("include_usage")
    _require(
        include_usage is None or isinstance(include_usage, bool),
        "stream_options.include_usage",
        "must be true or false.",
    )
    effort = body.get("reasoning_effort")
    if effort is not None and (not isinstance(effort, str) or effort not in REASONING_EFFORTS):
        raise bad_request(
            "'reasoning_effort' must be one of none, minimal, low, medium, high.",
            param="reasoning_effort",
        )
    _check_priced_extras(body)
    has_tools = _check_tools(body)
    wants_json = _check_response_format(body)
    prefs, sort = parse_preferences(body.get("provider"))
    route = body.get("route")
    strategy = route if isinstance(route, str) and route in STRATEGIES else None
    hedge = body.get("hedge_after_ms")
    if hedge is not None and (not _finite(hedge) or not 0 <= hedge <= 3_600_000):
        raise bad_request(
            "'hedge_after_ms' must be a number of milliseconds from 0 to 3600000.",
            param="hedge_after_ms",
        )
    return ChatRequest(
        body=body,
        model_names=tuple(names),
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        max_tokens=max_tokens,
        prefs=prefs,
        strategy=sort or strategy,
        hedge_after_ms=hedge,
        has_images=has_images,
        has_tools=has_tools,
        wants_json=wants_json,
        n=n,
        logprobs=bool(logprobs),
    )


def parse_embeddings(body: Any) -> tuple[str, list, dict]:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("'model' is required.", param="model")
    raw = body.get("input")

    def token_ids(value: Any) -> bool:
        return (
            isinstance(value, list)
            and bool(value)
            and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
        )

    if isinstance(raw, str) and raw:
        inputs = [raw]
    elif token_ids(raw):
        inputs = [raw]  # one input given as token ids
    elif (
        isinstance(raw, list)
        and raw
        and all((isinstance(i, str) and i) or token_ids(i) for i in raw)
    ):
        inputs = raw
    else:
        raise bad_request(
            "'input' must be a non-empty string or a list of non-empty strings.", param="input"
        )
    if len(inputs) > 2048:
        raise bad_request("'input' can hold at most 2048 items.", param="input")
    _int(body, "dimensions")
    if body.get("encoding_format", "float") not in ("float", "base64"):
        raise bad_request("'encoding_format' must be float or base64.", param="encoding_format")
    return model.strip(), inputs, body
