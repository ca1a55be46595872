"""The task-level API: summarize, translate, extract, classify, OCR ("code to tasks, not models").

Each task turns a normalized input into one chat request through the same gateway path as
/v1/chat/completions (authentication, rate limits, spend holds, settlement, logs), so usage and
cost are real. The model is the caller's, or else the cheapest healthy model with the capability
the task needs (TASKS below, as data). Structured answers (translate, extract, classify) are
checked; an invalid one is retried once with the error fed back, and both calls are billed.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import orjson

from accounts.selectors import AuthenticatedKey
from routing import gateway
from routing.errors import GatewayError, bad_request
from routing.health import health_book
from routing.pricing import nano_to_usd
from routing.snapshot import CatalogSnapshot, ModelSnap, catalog
from routing.validation import parse_chat

NANO = Decimal(1_000_000_000)
MAX_TEXT_CHARS = 400_000
MAX_IMAGE_BYTES = 10 * 1024 * 1024
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
DATA_URL = re.compile(r"^data:(?P<type>[\w/+.-]+);base64,(?P<data>.*)$", re.DOTALL)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    needs: tuple[str, ...]  # capabilities: "image" (image input), "structured_output"
    max_tokens: int  # the answer's cap: it bounds the spend hold
    summary: str


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("summarize", (), 1024, "Summarize a text."),
        TaskSpec("translate", ("structured_output",), 4096, "Translate a text."),
        TaskSpec("extract", ("structured_output",), 2048, "Extract JSON matching a schema."),
        TaskSpec("classify", ("structured_output",), 256, "Pick labels for a text."),
        TaskSpec("ocr", ("image",), 2048, "Read the text in an image."),
    )
}


def has_capability(model: ModelSnap, need: str) -> bool:
    if model.is_embedding:
        return False
    if need == "image":
        return "image" in model.input_modalities
    if need == "structured_output":
        return model.supports_structured_output
    return False


# --- Input --------------------------------------------------------------------------------


def _text(body: dict, name: str = "text", *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"'{name}' must be a non-empty string.", param=name)
    if len(value) > MAX_TEXT_CHARS:
        raise GatewayError(
            413,
            f"'{name}' is {len(value)} characters; the limit is {MAX_TEXT_CHARS}.",
            code="text_too_long",
            param=name,
        )
    return value


def _check_image_url(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise bad_request("'image_url' must be an https URL or a data URL.", param="image_url")
    if value.startswith("data:"):
        match = DATA_URL.match(value)
        if match is None or match["type"] not in IMAGE_TYPES:
            raise bad_request(
                "A data URL must be base64 with one of the types " + ", ".join(IMAGE_TYPES) + ".",
                param="image_url",
            )
        if len(match["data"]) * 3 // 4 > MAX_IMAGE_BYTES:
            raise GatewayError(
                413,
                f"The image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB.",
                code="image_too_large",
                param="image_url",
            )
        try:
            base64.b64decode(match["data"], validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("The data URL is not valid base64.", param="image_url") from None
        return value
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc:
        raise bad_request("'image_url' must be an https URL or a data URL.", param="image_url")
    return value


def _labels(body: dict) -> list[str]:
    labels = body.get("labels")
    if (
        not isinstance(labels, list)
        or not 2 <= len(labels) <= 50
        or not all(isinstance(label, str) and label.strip() for label in labels)
    ):
        raise bad_request("'labels' must be a list of 2 to 50 non-empty strings.", param="labels")
    clean = [label.strip() for label in labels]
    if len({label.casefold() for label in clean}) != len(clean):
        raise bad_request("'labels' must be distinct.", param="labels")
    return clean


def _schema(body: dict) -> dict:
    schema = body.get("schema")
    if not isinstance(schema, dict) or not schema:
        raise bad_request("'schema' must be a JSON Schema object.", param="schema")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        raise bad_request(
            f"'schema' is not a valid JSON Schema: {error.message}", param="schema"
        ) from None
    return schema


@dataclass
class Prepared:
    """A task's chat request, and how to read its answer."""

    messages: list[dict[str, Any]]
    response_format: dict[str, Any] | None
    read: Any  # (answer text) -> output dict; raises InvalidOutput


class InvalidOutput(ValueError):
    pass


def _json_format(name: str, schema: dict) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def _parse_json(text: str) -> Any:
    cleaned = text.strip()
    if cleaned.startswith("```"):  # models like to fence JSON
        cleaned = cleaned.strip("`").removeprefix("json").strip()
    try:
        return orjson.loads(cleaned)
    except orjson.JSONDecodeError as error:
        raise InvalidOutput(f"the answer is not valid JSON ({error})") from None


def _validate(value: Any, schema: dict) -> None:
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path)
    )
    if errors:
        error = errors[0]
        where = "/".join(str(p) for p in error.path) or "the top level"
        raise InvalidOutput(f"the JSON does not match the schema at {where}: {error.message}")


def prepare(task: str, body: dict) -> Prepared:
    if task == "summarize":
        text = _text(body)
        max_words = body.get("max_words")
        if max_words is not None and (
            isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1
        ):
            raise bad_request("'max_words' must be a positive integer.", param="max_words")
        style = body.get("style", "paragraph")
        if style not in ("paragraph", "bullets"):
            raise bad_request("'style' must be 'paragraph' or 'bullets'.", param="style")
        rule = f" in at most {max_words} words" if max_words else ""
        shape = "as a bulleted list" if style == "bullets" else "as one paragraph"
        return Prepared(
            [
                {
                    "role": "system",
                    "content": f"Summarize the user's text{rule}, {shape}. "
                    "Answer with the summary only.",
                },
                {"role": "user", "content": text},
            ],
            None,
            lambda answer: {"summary": answer.strip()},
        )
    if task == "translate":
        text = _text(body)
        target = _text(body, "target_language")
        source = _text(body, "source_language", required=False)
        schema = {
            "type": "object",
            "properties": {
                "translation": {"type": "string"},
                "source_language": {"type": "string"},
            },
            "required": ["translation", "source_language"],
            "additionalProperties": False,
        }

        def read_translation(answer: str) -> dict[str, Any]:
            value = _parse_json(answer)
            _validate(value, schema)
            return {
                "translation": value["translation"],
                "source_language": source or value["source_language"],
                "target_language": target,
            }

        origin = f"from {source} " if source else ""
        return Prepared(
            [
                {
                    "role": "system",
                    "content": f"Translate the user's text {origin}into {target}. Answer in JSON "
                    "with 'translation' and 'source_language' (the language of the original).",
                },
                {"role": "user", "content": text},
            ],
            _json_format("translation", schema),
            read_translation,
        )
    if task == "extract":
        text = _text(body)
        schema = _schema(body)
        instructions = body.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise bad_request("'instructions' must be a string.", param="instructions")

        def read_extract(answer: str) -> dict[str, Any]:
            value = _parse_json(answer)
            _validate(value, schema)
            return {"data": value}

        return Prepared(
            [
                {
                    "role": "system",
                    "content": "Extract from the user's text a JSON value matching this JSON "
                    f"Schema: {orjson.dumps(schema).decode()}. "
                    + (f"{instructions} " if instructions else "")
                    + "Answer with the JSON only.",
                },
                {"role": "user", "content": text},
            ],
            _json_format("extraction", schema),
            read_extract,
        )
    if task == "classify":
        text = _text(body)
        labels = _labels(body)
        multi = body.get("multi_label", False)
        if not isinstance(multi, bool):
            raise bad_request("'multi_label' must be true or false.", param="multi_label")
        by_key = {label.casefold(): label for label in labels}
        items: dict[str, Any] = {"type": "string", "enum": labels}
        schema = {
            "type": "object",
            "properties": {
                "labels": {
                    "type": "array",
                    "items": items,
                    "minItems": 1,
                    **({} if multi else {"maxItems": 1}),
                }
            },
            "required": ["labels"],
            "additionalProperties": False,
        }

        def read_classify(answer: str) -> dict[str, Any]:
            value = _parse_json(answer)
            chosen = value.get("labels") if isinstance(value, dict) else None
            if isinstance(chosen, str):
                chosen = [chosen]
            if not isinstance(chosen, list) or not chosen:
                raise InvalidOutput("the answer has no 'labels' list")
            picked = []
            for item in chosen:
                label = by_key.get(str(item).strip().casefold()) if item is not None else None
                if label is None:
                    raise InvalidOutput(f"{item!r} is not one of the labels")
                if label not in picked:
                    picked.append(label)
            if not multi and len(picked) != 1:
                raise InvalidOutput("exactly one label was asked for")
            return {"labels": picked, "label": picked[0]}

        return Prepared(
            [
                {
                    "role": "system",
                    "content": "Classify the user's text. Choose "
                    + ("one or more labels" if multi else "exactly one label")
                    + f" from: {orjson.dumps(labels).decode()}. "
                    'Answer in JSON as {"labels": [...]}.',
                },
                {"role": "user", "content": text},
            ],
            _json_format("classification", schema),
            read_classify,
        )
    if task == "ocr":
        image_url = _check_image_url(body.get("image_url"))
        return Prepared(
            [
                {
                    "role": "system",
                    "content": "Transcribe all the text in the image, keeping its line breaks. "
                    "Answer with the text only.",
                },
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": image_url}}],
                },
            ],
            None,
            lambda answer: {"text": answer.strip()},
        )
    raise GatewayError(404, f"There is no task '{task}'.", code="unknown_task")


# --- Routing ------------------------------------------------------------------------------


def _requested(body: dict) -> list[str]:
    names: list[str] = []
    model = body.get("model")
    if model is not None:
        if not isinstance(model, str) or not model.strip():
            raise bad_request("'model' must be a model id.", param="model")
        names.append(model.strip())
    models = body.get("models")
    if models is not None:
        if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
            raise bad_request("'models' must be a list of model ids.", param="models")
        names.extend(m for m in models if m not in names)
    return names


def choose_models(snapshot: CatalogSnapshot, spec: TaskSpec, body: dict) -> list[str]:
    """The caller's models (each must have the capability), or every capable model with an
    available endpoint, cheapest first: the first is used, the rest are fallbacks."""
    requested = _requested(body)
    if requested:
        param = "model" if body.get("model") is not None else "models"
        for model in gateway.resolve_models(snapshot, tuple(requested), embeddings=False):
            missing = [need for need in spec.needs if not has_capability(model, need)]
            if missing or model.is_embedding:
                raise bad_request(
                    f"'{model.id}' can't do the {spec.name} task: it lacks "
                    f"{', '.join(missing) or 'chat'}.",
                    param=param,
                    code="model_lacks_capability",
                )
        return requested
    ranked = []
    for model in snapshot.models:
        if model.is_embedding or not all(has_capability(model, need) for need in spec.needs):
            continue
        prices = [e.blended_price for e in model.endpoints if health_book.available(e.key)]
        if prices:
            ranked.append((min(prices), model.id))
    if not ranked:
        raise GatewayError(
            503,
            f"No healthy model can do the {spec.name} task right now; please retry shortly.",
            code="no_endpoint",
        )
    return [model_id for _, model_id in sorted(ranked)]


# --- Running ------------------------------------------------------------------------------


def _cost_nano(completion: dict[str, Any]) -> int:
    return gateway.fragment_nanousd(completion["usage"]["cost"])


def _answer_text(completion: dict[str, Any]) -> str:
    message = completion["choices"][0]["message"]
    content = message.get("content")
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


async def _call(key: AuthenticatedKey, body: dict[str, Any]) -> tuple[dict[str, Any], dict]:
    chat = parse_chat(body)
    admission = await gateway.admit_chat(key, chat)
    return await gateway.complete(admission, chat), admission.headers


async def run_task(key: AuthenticatedKey, task: str, body: Any) -> tuple[dict[str, Any], dict]:
    """Run one task for `key`: (the normalized answer, the rate-limit headers)."""
    spec = TASKS.get(task)
    if spec is None:
        raise GatewayError(404, f"There is no task '{task}'.", code="unknown_task")
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    prepared = prepare(task, body)
    snapshot = await catalog.aget()
    models = choose_models(snapshot, spec, body)
    first = gateway.resolve_models(snapshot, (models[0],), embeddings=False)[0]
    chat_body: dict[str, Any] = {
        "model": models[0],
        "messages": prepared.messages,
        "max_tokens": min(spec.max_tokens, first.max_output_tokens),
    }
    if len(models) > 1:
        chat_body["models"] = models[1:]
    if prepared.response_format is not None:
        chat_body["response_format"] = prepared.response_format
    if body.get("provider") is not None:
        chat_body["provider"] = body["provider"]

    completions: list[dict[str, Any]] = []
    output = None
    problem = ""
    for _ in range(2):  # the first answer, and one retry if it was invalid
        completion, headers = await _call(key, chat_body)
        completions.append(completion)
        answer = _answer_text(completion)
        try:
            output = prepared.read(answer)
            break
        except InvalidOutput as error:
            problem = str(error)
            chat_body = {
                **chat_body,
                "messages": [
                    *prepared.messages,
                    {"role": "assistant", "content": answer},
                    {
                        "role": "user",
                        "content": f"That answer was invalid: {problem}. "
                        "Answer again, following the instructions exactly.",
                    },
                ],
            }
    last = completions[-1]
    usage = {
        "prompt_tokens": sum(c["usage"]["prompt_tokens"] for c in completions),
        "completion_tokens": sum(c["usage"]["completion_tokens"] for c in completions),
        "total_tokens": sum(c["usage"]["total_tokens"] for c in completions),
        "cost": gateway.usd_fragment(sum(_cost_nano(c) for c in completions)),
        "calls": len(completions),
    }
    if output is None:
        raise GatewayError(
            502,
            f"The model's answer was invalid twice ({problem}); both calls were billed.",
            code="invalid_model_output",
            error_type="upstream_error",
            metadata={
                "generation_ids": [c["id"] for c in completions],
                "cost": format(nano_to_usd(sum(_cost_nano(c) for c in completions)), "f"),
            },
        )
    return (
        {
            "id": f"task-{uuid.uuid4().hex}",
            "object": f"task.{task}",
            "task": task,
            "created": int(time.time()),
            "model": last["model"],
            "provider": last["provider"],
            "output": output,
            "usage": usage,
            "generation_ids": [c["id"] for c in completions],
        },
        headers,
    )
