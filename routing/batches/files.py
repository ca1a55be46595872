"""Batch input files: a JSONL upload validated line by line while it is copied to storage."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.db import transaction
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header

from accounts.models import Organization
from routing.batches.models import BatchFile
from routing.errors import GatewayError, bad_request
from routing.validation import parse_chat, parse_embeddings

ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")
MAX_REPORTED_ERRORS = 20


def storage():
    return storages[getattr(settings, "BATCH_STORAGE_ALIAS", "default")]


def canonical_hash(body: dict[str, Any]) -> str:
    """Identical request bodies, whatever their key order, hash the same."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class Line:
    number: int
    custom_id: str
    body: dict[str, Any]


def _check_line(number: int, raw: bytes, endpoint: str | None) -> tuple[Line, str]:
    if b"\x00" in raw or b"\\u0000" in raw:
        raise ValueError("NUL characters are not allowed")  # no database can store them
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object")
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > 512:
        raise ValueError("'custom_id' must be a non-empty string of at most 512 characters")
    if data.get("method") != "POST":
        raise ValueError("'method' must be \"POST\"")
    url = data.get("url")
    if url not in ENDPOINTS:
        raise ValueError(f"'url' must be one of {', '.join(ENDPOINTS)}")
    if endpoint is not None and url != endpoint:
        raise ValueError(f"every line must call the same url (line 1 calls {endpoint})")
    body = data.get("body")
    if not isinstance(body, dict):
        raise ValueError("'body' must be a JSON object")
    if body.get("stream"):
        raise ValueError("'body.stream' is not supported in a batch")
    try:
        (parse_chat if url == ENDPOINTS[0] else parse_embeddings)(body)
    except GatewayError as error:
        where = f" ({error.param})" if error.param else ""
        raise ValueError(f"invalid body{where}: {error.message}") from None
    return Line(number, custom_id, body), url


def iter_lines(handle: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, content) for every non-blank line, read in chunks."""
    number = 0
    for raw in handle:
        number += 1
        raw = raw.strip()
        if raw:
            yield number, raw


def read_lines(stored: BatchFile) -> Iterator[Line]:
    with storage().open(stored.storage_name, "rb") as handle:
        for number, raw in iter_lines(handle):
            data = orjson.loads(raw)
            yield Line(number, data["custom_id"], data["body"])


def file_create(
    *, organization: Organization, upload: IO[bytes], filename: str, purpose: str
) -> BatchFile:
    """Validate every line (errors name their line numbers) while copying the upload to a
    temporary file chunk by chunk, then hand it to storage: never the whole file in memory."""
    if purpose != "batch":
        raise bad_request("Only purpose 'batch' is supported.", param="purpose")
    max_bytes = settings.BATCH_MAX_FILE_BYTES
    max_lines = settings.BATCH_MAX_LINES
    errors: list[str] = []
    seen: set[str] = set()
    endpoint: str | None = None
    lines = size = 0
    with tempfile.TemporaryFile() as copy:
        for number, raw in iter_lines(upload):
            size += len(raw) + 1
            if size > max_bytes:
                raise GatewayError(
                    413,
                    f"The file is larger than {max_bytes} bytes.",
                    code="file_too_large",
                    param="file",
                )
            lines += 1
            if lines > max_lines:
                raise bad_request(
                    f"The file has more than {max_lines} requests.",
                    param="file",
                    code="too_many_lines",
                )
            try:
                line, url = _check_line(number, raw, endpoint)
                endpoint = endpoint or url
                if line.custom_id in seen:
                    raise ValueError(f"'custom_id' {line.custom_id!r} is used twice")
                seen.add(line.custom_id)
            except ValueError as error:
                if len(errors) < MAX_REPORTED_ERRORS:
                    errors.append(f"line {number}: {error}")
                continue
            copy.write(raw + b"\n")
        if errors:
            raise GatewayError(
                400,
                "The file has invalid lines: " + "; ".join(errors),
                code="invalid_file",
                param="file",
            )
        if not lines:
            raise bad_request("The file has no requests.", param="file", code="empty_file")
        copy.seek(0)
        stored = BatchFile(
            organization=organization,
            purpose=BatchFile.Purpose.BATCH,
            filename=filename[:255] or "input.jsonl",
            bytes=size,
            lines=lines,
            endpoint=endpoint or "",
        )
        stored.storage_name = storage().save(
            f"batches/{organization.id}/{stored.id}.jsonl", File(copy)
        )
    stored.save()
    return stored


def output_file_create(
    *, organization: Organization, name: str, handle: IO[bytes], size: int, lines: int
) -> BatchFile:
    stored = BatchFile(
        organization=organization,
        purpose=BatchFile.Purpose.BATCH_OUTPUT,
        filename=name,
        bytes=size,
        lines=lines,
    )
    handle.seek(0)
    stored.storage_name = storage().save(
        f"batches/{organization.id}/{stored.id}.jsonl", File(handle)
    )
    stored.save()
    return stored


@transaction.atomic
def file_delete(*, stored: BatchFile) -> None:
    stored.deleted_at = timezone.now()
    stored.save(update_fields=["deleted_at"])
    transaction.on_commit(lambda: storage().delete(stored.storage_name))


DOWNLOAD_CHUNK = 256 * 1024


async def _file_chunks(name: str) -> AsyncIterator[bytes]:
    handle = await sync_to_async(storage().open, thread_sensitive=False)(name, "rb")
    try:
        while chunk := await sync_to_async(handle.read, thread_sensitive=False)(DOWNLOAD_CHUNK):
            yield chunk
    finally:
        await sync_to_async(handle.close, thread_sensitive=False)()


def file_download(stored: BatchFile) -> StreamingHttpResponse:
    """A stored file as a download, streamed chunk by chunk. (Under ASGI, Django reads a
    synchronous file iterator whole into memory first; an output file can be 200 MB.)"""
    response = StreamingHttpResponse(
        _file_chunks(stored.storage_name), content_type="application/jsonl"
    )
    response["Content-Disposition"] = content_disposition_header(True, stored.filename)
    return response
