"""/v1/files and /v1/batches, OpenAI-compatible (the openai SDK works unchanged)."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.parsers import FormParser, MultiPartParser

from config.db import run_db, run_db_apart
from routing.api import schema
from routing.api.base import GatewayApiView, OrjsonParser, authenticate, read_json
from routing.api.views import json_response
from routing.batches import files, selectors, services
from routing.batches.models import Batch, BatchFile
from routing.errors import GatewayError, bad_request
from routing.gateway import usd_fragment


def _ts(moment) -> int | None:
    return int(moment.timestamp()) if moment else None


def file_json(stored: BatchFile) -> dict:
    return {
        "id": stored.id,
        "object": "file",
        "bytes": stored.bytes,
        "created_at": _ts(stored.created_at),
        "filename": stored.filename,
        "purpose": stored.purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def batch_json(batch: Batch) -> dict:
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "errors": batch.errors,
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": _ts(batch.created_at),
        "in_progress_at": _ts(batch.in_progress_at),
        "expires_at": _ts(batch.expires_at),
        "finalizing_at": _ts(batch.finalizing_at),
        "completed_at": _ts(batch.completed_at),
        "failed_at": _ts(batch.failed_at),
        "expired_at": _ts(batch.expired_at),
        "cancelling_at": _ts(batch.cancelling_at),
        "cancelled_at": _ts(batch.cancelled_at),
        "request_counts": {
            "total": batch.total,
            "completed": batch.completed,
            "failed": batch.failed,
        },
        "metadata": batch.metadata or None,
        # Ours: the spend so far (discount applied) and why a batch waits, if it does.
        "cost": usd_fragment(batch.cost_nanousd),
        "paused_reason": batch.paused_reason or None,
    }


def _page(request, rows: list, limit: int) -> dict:
    return {
        "object": "list",
        "data": rows[:limit],
        "first_id": rows[0]["id"] if rows else None,
        "last_id": rows[:limit][-1]["id"] if rows else None,
        "has_more": len(rows) > limit,
    }


def _limit(request) -> int:
    raw = request.query_params.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise bad_request("'limit' must be between 1 and 100.", param="limit")
    return int(raw)


class FilesApi(GatewayApiView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="createFile",
        summary="Upload a JSONL file of batch requests (purpose 'batch')",
        request={"multipart/form-data": schema.FileUpload},
        responses={200: schema.FileObject, **schema.errors(400, 401, 413)},
        tags=["batches"],
    )
    async def post(self, request):
        key = await authenticate(request)
        length = request.META.get("CONTENT_LENGTH")
        if length and length.isdigit() and int(length) > settings.BATCH_MAX_FILE_BYTES + 65536:
            raise GatewayError(
                413,
                f"The file is larger than {settings.BATCH_MAX_FILE_BYTES} bytes.",
                code="file_too_large",
                param="file",
            )

        def create():
            data = request.data
            upload = request.FILES.get("file")
            if upload is None:
                raise bad_request("Send the JSONL file in the 'file' field.", param="file")
            from accounts.models import Organization

            organization = Organization.objects.get(id=key.organization_id)
            return files.file_create(
                organization=organization,
                upload=upload,
                filename=upload.name or "input.jsonl",
                purpose=data.get("purpose", ""),
            )

        # Reading a big upload line by line takes seconds: never on the shared ORM thread.
        stored = await run_db_apart(create)
        return json_response(file_json(stored))

    @extend_schema(
        operation_id="listFiles",
        responses={200: schema.FileList, **schema.errors(401)},
        tags=["batches"],
    )
    async def get(self, request):
        key = await authenticate(request)
        limit = _limit(request)

        def rows():
            return [
                file_json(f)
                for f in selectors.file_list(organization_id=key.organization_id)[: limit + 1]
            ]

        return json_response(_page(request, await run_db(rows), limit))


class FileDetailApi(GatewayApiView):
    @extend_schema(
        operation_id="retrieveFile",
        responses={200: schema.FileObject, **schema.errors(401, 404)},
        tags=["batches"],
    )
    async def get(self, request, file_id: str):
        key = await authenticate(request)
        stored = await run_db(
            lambda: selectors.file_get(organization_id=key.organization_id, file_id=file_id)
        )
        return json_response(file_json(stored))

    @extend_schema(
        operation_id="deleteFile",
        responses={200: schema.Deleted, **schema.errors(401, 404)},
        tags=["batches"],
    )
    async def delete(self, request, file_id: str):
        key = await authenticate(request)

        def delete():
            stored = selectors.file_get(organization_id=key.organization_id, file_id=file_id)
            files.file_delete(stored=stored)

        await run_db(delete)
        return json_response({"id": file_id, "object": "file", "deleted": True})


class FileContentApi(GatewayApiView):
    def perform_content_negotiation(self, request, force=False):
        # The file is what it is: any Accept (the SDK sends application/binary) gets JSONL.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="downloadFile",
        responses={(200, "application/jsonl"): bytes, **schema.errors(401, 404)},
        tags=["batches"],
    )
    async def get(self, request, file_id: str):
        key = await authenticate(request)
        stored = await run_db(
            lambda: selectors.file_get(organization_id=key.organization_id, file_id=file_id)
        )
        return files.file_download(stored)


class BatchesApi(GatewayApiView):
    parser_classes = [OrjsonParser]

    @extend_schema(
        operation_id="createBatch",
        request=schema.BatchCreate,
        responses={200: schema.BatchObject, **schema.errors(400, 401, 404)},
        tags=["batches"],
    )
    async def post(self, request):
        key = await authenticate(request)
        body = read_json(request)
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str) or not file_id:
            raise bad_request("'input_file_id' is required.", param="input_file_id")

        def create():
            stored = selectors.file_get(organization_id=key.organization_id, file_id=file_id)
            return services.batch_create(
                organization=stored.organization,
                key_id=key.key_id,
                input_file=stored,
                endpoint=body.get("endpoint"),
                completion_window=body.get("completion_window"),
                metadata=body.get("metadata"),
            )

        # Inserting a batch's items takes seconds on a big file: its own thread and connection.
        return json_response(batch_json(await run_db_apart(create)))

    @extend_schema(
        operation_id="listBatches",
        parameters=[
            OpenApiParameter("after", str, required=False),
            OpenApiParameter("limit", int, required=False),
        ],
        responses={200: schema.BatchList, **schema.errors(401)},
        tags=["batches"],
    )
    async def get(self, request):
        key = await authenticate(request)
        limit = _limit(request)
        after = request.query_params.get("after")

        def rows():
            batches = selectors.batch_list(organization_id=key.organization_id)
            if after:
                cursor = batches.filter(id=after).first() if selectors.valid_id(after) else None
                if cursor is None:
                    raise bad_request("'after' is not a batch of yours.", param="after")
                batches = batches.filter(created_at__lte=cursor.created_at).exclude(
                    created_at=cursor.created_at, id__gte=cursor.id
                )
            return [batch_json(b) for b in batches[: limit + 1]]

        return json_response(_page(request, await run_db(rows), limit))


class BatchDetailApi(GatewayApiView):
    @extend_schema(
        operation_id="retrieveBatch",
        responses={200: schema.BatchObject, **schema.errors(401, 404)},
        tags=["batches"],
    )
    async def get(self, request, batch_id: str):
        key = await authenticate(request)
        batch = await run_db(
            lambda: selectors.batch_get(organization_id=key.organization_id, batch_id=batch_id)
        )
        return json_response(batch_json(batch))


class BatchCancelApi(GatewayApiView):
    @extend_schema(
        operation_id="cancelBatch",
        request=None,
        responses={200: schema.BatchObject, **schema.errors(401, 404, 409)},
        tags=["batches"],
    )
    async def post(self, request, batch_id: str):
        key = await authenticate(request)

        def cancel():
            batch = selectors.batch_get(organization_id=key.organization_id, batch_id=batch_id)
            return services.batch_cancel(batch=batch)

        return json_response(batch_json(await run_db(cancel)))
