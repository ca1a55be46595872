"""Reads of files and batches, always within one organization (another's id is a 404)."""

from __future__ import annotations

import re
import uuid

from django.db.models import QuerySet

from routing.batches.models import Batch, BatchFile
from routing.errors import GatewayError

# Our ids are short and plain; anything else (NUL bytes included) can't name an object.
_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")


def valid_id(value: object) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def file_get(*, organization_id: uuid.UUID | str, file_id: str) -> BatchFile:
    found = (
        None
        if not valid_id(file_id)
        else BatchFile.objects.filter(
            organization_id=organization_id, id=file_id, deleted_at__isnull=True
        ).first()
    )
    if found is None:
        raise GatewayError(404, f"No such File object: {file_id}", code="not_found", param="id")
    return found


def file_list(*, organization_id: uuid.UUID | str) -> QuerySet[BatchFile]:
    return BatchFile.objects.filter(organization_id=organization_id, deleted_at__isnull=True)


def batch_get(*, organization_id: uuid.UUID | str, batch_id: str) -> Batch:
    found = (
        Batch.objects.filter(organization_id=organization_id, id=batch_id).first()
        if valid_id(batch_id)
        else None
    )
    if found is None:
        raise GatewayError(404, f"No such Batch object: {batch_id}", code="not_found", param="id")
    return found


def batch_list(*, organization_id: uuid.UUID | str) -> QuerySet[Batch]:
    return Batch.objects.filter(organization_id=organization_id).order_by("-created_at", "-id")
