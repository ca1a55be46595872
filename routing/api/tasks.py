"""POST /v1/tasks/{summarize,translate,extract,classify,ocr}: one normalized call per task."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema

from routing.api import schema
from routing.api.base import GatewayApiView, authenticate, read_json
from routing.api.views import json_response
from routing.taskapi import TASKS, run_task


class TaskApi(GatewayApiView):
    task = ""

    async def post(self, request):
        key = await authenticate(request)
        answer, headers = await run_task(key, self.task, read_json(request))
        return json_response(answer, headers=headers)


def _view(task: str, request_schema, output_schema) -> type[TaskApi]:
    spec = TASKS[task]

    async def post(self, request):  # one function per task: the schema is attached to it
        return await TaskApi.post(self, request)

    decorated = extend_schema(
        operation_id=f"task{task.capitalize()}",
        summary=spec.summary,
        description=(
            f"Runs the {task} task on the cheapest healthy model that can "
            f"({', '.join(spec.needs) or 'text'}), unless `model` names one. Structured answers "
            "are validated and retried once when invalid; `usage` covers every call."
        ),
        tags=["tasks"],
        request=request_schema,
        responses={
            200: schema.task_response(task, output_schema),
            **schema.errors(400, 401, 402, 404, 413, 429, 502),
        },
    )(post)
    return type(f"{task.capitalize()}TaskApi", (TaskApi,), {"task": task, "post": decorated})


SummarizeTaskApi = _view("summarize", schema.SummarizeTaskRequest, schema.SummarizeOutput)
TranslateTaskApi = _view("translate", schema.TranslateTaskRequest, schema.TranslateOutput)
ExtractTaskApi = _view("extract", schema.ExtractTaskRequest, schema.ExtractOutput)
ClassifyTaskApi = _view("classify", schema.ClassifyTaskRequest, schema.ClassifyOutput)
OcrTaskApi = _view("ocr", schema.OcrTaskRequest, schema.OcrOutput)
