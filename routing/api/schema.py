"""Documentation shapes for the OpenAPI schema (drf-spectacular).

The views validate by hand (routing.validation) for speed; these serializers only describe the
wire format for the docs page, client generators and schemathesis.
"""

from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers


class ErrorDetail(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    code = serializers.CharField(allow_null=True)
    metadata = serializers.JSONField(required=False, help_text="Attempts or suggestions.")


class ErrorResponse(serializers.Serializer):
    error = ErrorDetail()


def _object(properties: dict, required: tuple[str, ...] = (), **extra) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), **extra}


_STRING = {"type": "string"}
TEXT_PART = _object({"type": {"enum": ["text"]}, "text": _STRING}, ("type", "text"))
IMAGE_PART = _object(
    {
        "type": {"enum": ["image_url"]},
        "image_url": _object(
            {
                "url": {
                    "type": "string",
                    "pattern": "^(https?://|data:image/)",
                    "description": "An http(s) URL or an image data URL.",
                },
                "detail": {"enum": ["auto", "low", "high"]},
            },
            ("url",),
        ),
    },
    ("type", "image_url"),
)
AUDIO_PART = _object(
    {
        "type": {"enum": ["input_audio"]},
        "input_audio": _object(
            {
                "data": {**_STRING, "description": "Base64 audio."},
                "format": {"enum": ["wav", "mp3"]},
            },
            ("data", "format"),
        ),
    },
    ("type", "input_audio"),
)
FILE_PART = _object(
    {
        "type": {"enum": ["file"]},
        "file": _object(
            {
                "file_data": {**_STRING, "description": "A data URL."},
                "file_id": _STRING,
                "filename": _STRING,
            },
            minProperties=1,
        ),
    },
    ("type", "file"),
)
REFUSAL_PART = _object({"type": {"enum": ["refusal"]}, "refusal": _STRING}, ("type", "refusal"))
CONTENT = {
    "oneOf": [
        _STRING,
        {
            "type": "array",
            "items": {"oneOf": [TEXT_PART, IMAGE_PART, AUDIO_PART, FILE_PART, REFUSAL_PART]},
        },
    ],
    "nullable": True,
    "description": "A string, or a list of parts (text, image_url, input_audio, file; "
    "refusal in assistant messages). Null only in assistant messages.",
}
FUNCTION_CALL = _object(
    {"name": {**_STRING, "minLength": 1}, "arguments": {**_STRING, "description": "JSON text."}},
    ("name", "arguments"),
)
TOOL_CALLS = {
    "type": "array",
    "items": _object(
        {
            "id": {**_STRING, "minLength": 1},
            "type": {"enum": ["function"]},
            "function": FUNCTION_CALL,
        },
        ("id", "type", "function"),
    ),
    "description": "Assistant messages only.",
}
TOOLS = {
    "type": "array",
    "items": _object(
        {
            "type": {"enum": ["function"]},
            "function": _object(
                {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                    "description": _STRING,
                    "parameters": {"type": "object", "description": "A JSON Schema."},
                    "strict": {"type": "boolean"},
                },
                ("name",),
            ),
        },
        ("type", "function"),
    ),
}
TOOL_CHOICE = {
    "oneOf": [
        {"enum": ["none", "auto", "required"]},
        _object(
            {
                "type": {"enum": ["function"]},
                "function": _object({"name": {**_STRING, "minLength": 1}}, ("name",)),
            },
            ("type", "function"),
        ),
    ]
}
RESPONSE_FORMAT = {
    "oneOf": [
        _object({"type": {"enum": ["text", "json_object"]}}, ("type",)),
        _object(
            {
                "type": {"enum": ["json_schema"]},
                "json_schema": _object(
                    {
                        "name": _STRING,
                        "schema": {"type": "object", "description": "A JSON Schema."},
                        "strict": {"type": "boolean"},
                    },
                    ("name",),
                ),
            },
            ("type", "json_schema"),
        ),
    ]
}


@extend_schema_field(CONTENT)
class ContentField(serializers.JSONField):
    pass


@extend_schema_field(TOOL_CALLS)
class ToolCallsField(serializers.JSONField):
    pass


@extend_schema_field(TOOLS)
class ToolsField(serializers.JSONField):
    pass


@extend_schema_field(TOOL_CHOICE)
class ToolChoiceField(serializers.JSONField):
    pass


@extend_schema_field(RESPONSE_FORMAT)
class ResponseFormatField(serializers.JSONField):
    pass


@extend_schema_field(FUNCTION_CALL)
class FunctionCallField(serializers.JSONField):
    pass


class ChatMessage(serializers.Serializer):
    role = serializers.ChoiceField(["system", "developer", "user", "assistant", "tool"])
    content = ContentField(required=False, allow_null=True)
    name = serializers.CharField(required=False)
    tool_call_id = serializers.CharField(
        required=False, help_text="Required in tool messages: the call it answers."
    )
    tool_calls = ToolCallsField(required=False)
    function_call = FunctionCallField(required=False, help_text="Deprecated: use tool_calls.")


class MaxPrice(serializers.Serializer):
    prompt = serializers.DecimalField(max_digits=12, decimal_places=6, min_value=0, required=False)
    completion = serializers.DecimalField(
        max_digits=12, decimal_places=6, min_value=0, required=False
    )


class ProviderPreferences(serializers.Serializer):
    order = serializers.ListField(child=serializers.CharField(), required=False)
    only = serializers.ListField(child=serializers.CharField(), required=False)
    ignore = serializers.ListField(child=serializers.CharField(), required=False)
    allow_fallbacks = serializers.BooleanField(required=False, default=True)
    sort = serializers.ChoiceField(["price", "latency", "throughput"], required=False)
    max_price = MaxPrice(required=False, help_text="USD per 1M tokens.")
    preferred_max_latency = serializers.FloatField(
        min_value=0, required=False, help_text="Seconds (p50)."
    )
    preferred_min_throughput = serializers.FloatField(
        min_value=0, required=False, help_text="Tokens/s."
    )


class StreamOptions(serializers.Serializer):
    include_usage = serializers.BooleanField(required=False)


class ChatCompletionRequest(serializers.Serializer):
    model = serializers.CharField(help_text="e.g. google/gemini-3.1-flash-lite")
    models = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Models to fall back to."
    )
    messages = ChatMessage(many=True)
    max_tokens = serializers.IntegerField(min_value=1, required=False)
    max_completion_tokens = serializers.IntegerField(min_value=1, required=False)
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False)
    top_p = serializers.FloatField(min_value=0, max_value=1, required=False)
    stop = serializers.JSONField(required=False, help_text="A string or up to 4 strings.")
    stream = serializers.BooleanField(required=False, default=False)
    stream_options = StreamOptions(required=False)
    tools = ToolsField(required=False)
    tool_choice = ToolChoiceField(required=False)
    parallel_tool_calls = serializers.BooleanField(required=False)
    response_format = ResponseFormatField(required=False)
    reasoning_effort = serializers.ChoiceField(
        ["none", "minimal", "low", "medium", "high"], required=False
    )
    provider = ProviderPreferences(required=False)
    route = serializers.ChoiceField(["price", "latency", "throughput"], required=False)
    hedge_after_ms = serializers.FloatField(
        min_value=0,
        max_value=3_600_000,
        required=False,
        help_text="Race a second provider if the first is slower.",
    )


class Usage(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    prompt_tokens_details = serializers.JSONField()
    completion_tokens_details = serializers.JSONField()
    cost = serializers.DecimalField(
        max_digits=20, decimal_places=9, coerce_to_string=False, help_text="USD."
    )


class AssistantMessage(serializers.Serializer):
    role = serializers.CharField(help_text="Always assistant.")
    content = serializers.CharField(allow_null=True)
    refusal = serializers.CharField(allow_null=True, required=False)
    reasoning = serializers.CharField(
        required=False, help_text="The model's thinking, where the provider shows it."
    )
    tool_calls = ToolCallsField(required=False)


FINISH_REASONS = ["stop", "length", "tool_calls", "content_filter", "function_call", "error"]


class Choice(serializers.Serializer):
    index = serializers.IntegerField()
    message = AssistantMessage()
    finish_reason = serializers.ChoiceField(FINISH_REASONS)
    logprobs = serializers.JSONField(allow_null=True, required=False)


class ChunkToolCallFunction(serializers.Serializer):
    name = serializers.CharField(required=False)
    arguments = serializers.CharField(required=False)


class ChunkToolCall(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.CharField(required=False)
    type = serializers.ChoiceField(["function"], required=False)
    function = ChunkToolCallFunction(required=False)


class ChunkDelta(serializers.Serializer):
    role = serializers.CharField(required=False, help_text="assistant, on the first chunk.")
    content = serializers.CharField(allow_null=True, required=False)
    reasoning = serializers.CharField(required=False)
    tool_calls = ChunkToolCall(many=True, required=False)


class ChunkChoice(serializers.Serializer):
    index = serializers.IntegerField()
    delta = ChunkDelta()
    finish_reason = serializers.ChoiceField(FINISH_REASONS, allow_null=True, required=False)
    logprobs = serializers.JSONField(allow_null=True, required=False)


class ChatCompletionChunk(serializers.Serializer):
    """One `data:` event of a streamed chat completion (the stream ends with `data: [DONE]`)."""

    id = serializers.CharField()
    object = serializers.ChoiceField(["chat.completion.chunk"])
    created = serializers.IntegerField()
    model = serializers.CharField()
    provider = serializers.CharField()
    choices = ChunkChoice(many=True)
    usage = Usage(
        required=False,
        allow_null=True,
        help_text="On the last chunk (stream_options.include_usage: its own, with no choices).",
    )
    error = ErrorDetail(required=False, help_text="A failure after the first byte.")


class ChatCompletion(serializers.Serializer):
    id = serializers.CharField(help_text="Our generation id.")
    object = serializers.CharField()
    created = serializers.IntegerField()
    model = serializers.CharField(help_text="The model that served the request.")
    provider = serializers.CharField(help_text="The provider that served the request.")
    simulated = serializers.BooleanField(
        required=False,
        help_text="Present (true) when the provider simulator answered: such a generation "
        "costs nothing.",
    )
    choices = Choice(many=True)
    usage = Usage()


class EmbeddingsRequest(serializers.Serializer):
    model = serializers.CharField()
    input = serializers.JSONField(help_text="A string or a list of strings.")
    dimensions = serializers.IntegerField(min_value=1, required=False)
    encoding_format = serializers.ChoiceField(["float", "base64"], required=False)


class EmbeddingsResponse(serializers.Serializer):
    object = serializers.CharField()
    data = serializers.JSONField()
    model = serializers.CharField()
    provider = serializers.CharField()
    usage = serializers.JSONField()


class Model(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    created = serializers.IntegerField()
    owned_by = serializers.CharField()
    name = serializers.CharField()
    context_length = serializers.IntegerField()
    max_output_tokens = serializers.IntegerField()
    pricing = serializers.JSONField()
    endpoints = serializers.JSONField(required=False)


ModelList = inline_serializer(
    "ModelList", {"object": serializers.CharField(), "data": Model(many=True)}
)


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    return {status: OpenApiResponse(ErrorResponse) for status in statuses}


CHAT_EXAMPLE = OpenApiExample(
    "Hello",
    value={
        "model": "google/gemini-3.1-flash-lite",
        "messages": [{"role": "user", "content": "Hello!"}],
    },
    request_only=True,
)


# --- Tasks --------------------------------------------------------------------------------


class TaskRouting(serializers.Serializer):
    model = serializers.CharField(
        required=False, help_text="Use this model instead of the task's cheapest capable one."
    )
    models = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Fallback models, in order."
    )
    provider = ProviderPreferences(required=False)


class SummarizeTaskRequest(TaskRouting):
    text = serializers.CharField()
    max_words = serializers.IntegerField(min_value=1, required=False)
    style = serializers.ChoiceField(["paragraph", "bullets"], required=False)


class TranslateTaskRequest(TaskRouting):
    text = serializers.CharField()
    target_language = serializers.CharField()
    source_language = serializers.CharField(required=False, help_text="Detected when omitted.")


class ExtractTaskRequest(TaskRouting):
    text = serializers.CharField()
    schema = serializers.JSONField(help_text="A JSON Schema the extracted value must match.")
    instructions = serializers.CharField(required=False)


class ClassifyTaskRequest(TaskRouting):
    text = serializers.CharField()
    labels = serializers.ListField(child=serializers.CharField(), min_length=2, max_length=50)
    multi_label = serializers.BooleanField(required=False, default=False)


class OcrTaskRequest(TaskRouting):
    image_url = serializers.CharField(help_text="An https URL or a data: URL (png/jpeg/webp/gif).")


class SummarizeOutput(serializers.Serializer):
    summary = serializers.CharField()


class TranslateOutput(serializers.Serializer):
    translation = serializers.CharField()
    source_language = serializers.CharField()
    target_language = serializers.CharField()


class ExtractOutput(serializers.Serializer):
    data = serializers.JSONField(help_text="Valid against the request's schema.")


class ClassifyOutput(serializers.Serializer):
    labels = serializers.ListField(child=serializers.CharField())
    label = serializers.CharField(help_text="The first (or only) label.")


class OcrOutput(serializers.Serializer):
    text = serializers.CharField()


class TaskUsage(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(
        max_digits=20, decimal_places=9, coerce_to_string=False, help_text="USD, every call."
    )
    calls = serializers.IntegerField(help_text="2 when an invalid answer was retried.")


def task_response(task: str, output) -> serializers.Serializer:
    return inline_serializer(
        f"{task.capitalize()}TaskResponse",
        {
            "id": serializers.CharField(),
            "object": serializers.CharField(),
            "task": serializers.CharField(),
            "created": serializers.IntegerField(),
            "model": serializers.CharField(),
            "provider": serializers.CharField(),
            "output": output(),
            "usage": TaskUsage(),
            "generation_ids": serializers.ListField(child=serializers.CharField()),
        },
    )


# --- Files and batches --------------------------------------------------------------------


class FileUpload(serializers.Serializer):
    file = serializers.FileField(help_text="JSONL: one request per line.")
    purpose = serializers.ChoiceField(["batch"])


class FileObject(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    bytes = serializers.IntegerField()
    created_at = serializers.IntegerField()
    filename = serializers.CharField()
    purpose = serializers.CharField()
    status = serializers.CharField()


FileList = inline_serializer(
    "FileList",
    {
        "object": serializers.CharField(),
        "data": FileObject(many=True),
        "has_more": serializers.BooleanField(),
    },
)

Deleted = inline_serializer(
    "Deleted",
    {
        "id": serializers.CharField(),
        "object": serializers.CharField(),
        "deleted": serializers.BooleanField(),
    },
)


class BatchCreate(serializers.Serializer):
    input_file_id = serializers.CharField()
    endpoint = serializers.ChoiceField(["/v1/chat/completions", "/v1/embeddings"])
    completion_window = serializers.ChoiceField(["24h"])
    metadata = serializers.DictField(child=serializers.CharField(), required=False)


class RequestCounts(serializers.Serializer):
    total = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()


class BatchObject(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    endpoint = serializers.CharField()
    input_file_id = serializers.CharField()
    completion_window = serializers.CharField()
    status = serializers.CharField()
    output_file_id = serializers.CharField(allow_null=True)
    error_file_id = serializers.CharField(allow_null=True)
    created_at = serializers.IntegerField()
    expires_at = serializers.IntegerField()
    request_counts = RequestCounts()
    metadata = serializers.JSONField(allow_null=True)
    cost = serializers.DecimalField(
        max_digits=20, decimal_places=9, coerce_to_string=False, help_text="USD so far."
    )
    paused_reason = serializers.CharField(allow_null=True)


BatchList = inline_serializer(
    "BatchList",
    {
        "object": serializers.CharField(),
        "data": BatchObject(many=True),
        "first_id": serializers.CharField(allow_null=True),
        "last_id": serializers.CharField(allow_null=True),
        "has_more": serializers.BooleanField(),
    },
)


# --- Responses (/v1/responses) ----------------------------------------------------------------


class ResponseCreateRequest(serializers.Serializer):
    model = serializers.CharField(help_text="e.g. google/gemini-3.1-flash-lite")
    models = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Models to fall back to."
    )
    input = serializers.JSONField(
        help_text="A string, or a list of items: message (role user, system, developer or "
        "assistant; content input_text, input_image, input_file, output_text), function_call, "
        "function_call_output, reasoning (accepted, not sent on)."
    )
    instructions = serializers.CharField(required=False)
    previous_response_id = serializers.CharField(
        required=False, help_text="A stored response of yours to continue."
    )
    store = serializers.BooleanField(required=False, default=True)
    stream = serializers.BooleanField(required=False, default=False)
    max_output_tokens = serializers.IntegerField(min_value=1, required=False)
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False)
    top_p = serializers.FloatField(min_value=0, max_value=1, required=False)
    tools = serializers.JSONField(
        required=False,
        help_text='Function tools only: {"type": "function", "name", "parameters", "strict"}.',
    )
    tool_choice = serializers.JSONField(required=False)
    parallel_tool_calls = serializers.BooleanField(required=False)
    text = serializers.JSONField(
        required=False, help_text='{"format": {"type": "text" | "json_object" | "json_schema"}}'
    )
    reasoning = serializers.JSONField(required=False, help_text='{"effort", "summary"}')
    metadata = serializers.DictField(child=serializers.CharField(), required=False)
    user = serializers.CharField(required=False)
    provider = ProviderPreferences(required=False)


class ResponseUsage(serializers.Serializer):
    input_tokens = serializers.IntegerField()
    input_tokens_details = serializers.JSONField()
    output_tokens = serializers.IntegerField()
    output_tokens_details = serializers.JSONField()
    total_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=20, decimal_places=9, help_text="USD.")


class ResponseObject(serializers.Serializer):
    id = serializers.CharField(help_text="resp_ and our generation id's hex.")
    object = serializers.CharField()
    created_at = serializers.IntegerField()
    status = serializers.ChoiceField(["completed", "incomplete", "failed", "in_progress"])
    model = serializers.CharField(help_text="The model that served the request.")
    provider = serializers.CharField(help_text="The provider that served the request.")
    output = serializers.JSONField(help_text="message, function_call and reasoning items.")
    usage = ResponseUsage(allow_null=True)
    error = serializers.JSONField(allow_null=True)
    incomplete_details = serializers.JSONField(allow_null=True)
    previous_response_id = serializers.CharField(allow_null=True)
    store = serializers.BooleanField()


ResponseDeleted = inline_serializer(
    "ResponseDeleted",
    {
        "id": serializers.CharField(),
        "object": serializers.CharField(),
        "deleted": serializers.BooleanField(),
    },
)

ResponseItemList = inline_serializer(
    "ResponseItemList",
    {
        "object": serializers.CharField(),
        "data": serializers.JSONField(),
        "first_id": serializers.CharField(allow_null=True),
        "last_id": serializers.CharField(allow_null=True),
        "has_more": serializers.BooleanField(),
    },
)

RESPONSE_EXAMPLE = OpenApiExample(
    "Hello",
    value={"model": "google/gemini-3.1-flash-lite", "input": "Hello!"},
    request_only=True,
)
