"""Batches: create one over an uploaded file, cancel it, claim and finish its items, write its
output and error files, expire it after its window."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from accounts.models import Organization
from routing.batches.files import canonical_hash, output_file_create, read_lines
from routing.batches.models import Batch, BatchFile, BatchItem
from routing.errors import GatewayError, bad_request

S = Batch.Status
I = BatchItem.Status  # noqa: E741
WINDOWS = {"24h": timedelta(hours=24)}
CHUNK = 1000


def _check_metadata(metadata: Any) -> dict[str, str]:
    if metadata is None:
        return {}
    if (
        not isinstance(metadata, dict)
        or len(metadata) > 16
        or not all(
            isinstance(k, str)
            and len(k) <= 64
            and isinstance(v, str)
            and len(v) <= 512
            and "\x00" not in k + v
            for k, v in metadata.items()
        )
    ):
        raise bad_request(
            "'metadata' must be up to 16 string pairs (keys up to 64, values up to 512 "
            "characters).",
            param="metadata",
        )
    return metadata


def batch_create(
    *,
    organization: Organization,
    key_id,
    input_file: BatchFile,
    endpoint: str,
    completion_window: str,
    metadata: Any = None,
) -> Batch:
    if endpoint not in ("/v1/chat/completions", "/v1/embeddings"):
        raise bad_request(
            "'endpoint' must be /v1/chat/completions or /v1/embeddings.", param="endpoint"
        )
    if completion_window not in WINDOWS:
        raise bad_request("'completion_window' must be '24h'.", param="completion_window")
    if input_file.purpose != BatchFile.Purpose.BATCH:
        raise bad_request("The input file's purpose must be 'batch'.", param="input_file_id")
    if input_file.endpoint != endpoint:
        raise bad_request(
            f"The input file's requests call {input_file.endpoint}, not {endpoint}.",
            param="endpoint",
        )
    metadata = _check_metadata(metadata)
    now = timezone.now()
    with transaction.atomic():
        batch = Batch.objects.create(
            organization=organization,
            key_id=key_id,
            endpoint=endpoint,
            completion_window=completion_window,
            input_file=input_file,
            metadata=metadata,
            expires_at=now + WINDOWS[completion_window],
        )
        leaders: dict[str, BatchItem] = {}
        duplicates: list[tuple[BatchItem, str]] = []
        pending: list[BatchItem] = []
        total = 0

        def flush() -> None:
            BatchItem.objects.bulk_create(pending)
            pending.clear()

        for line in read_lines(input_file):
            total += 1
            digest = canonical_hash(line.body)
            item = BatchItem(
                batch=batch, line=line.number, custom_id=line.custom_id, body_hash=digest
            )
            leader = leaders.get(digest)
            if leader is None:
                item.body = line.body
                leaders[digest] = item
                pending.append(item)
            else:
                item.status = I.DUPLICATE
                leader.copies += 1
                duplicates.append((item, digest))
            if len(pending) >= CHUNK:
                flush()
        flush()
        for item, digest in duplicates:
            item.leader_id = leaders[digest].id
        BatchItem.objects.bulk_create([item for item, _ in duplicates], batch_size=CHUNK)
        BatchItem.objects.bulk_update(
            [leader for leader in leaders.values() if leader.copies > 1],
            ["copies"],
            batch_size=CHUNK,
        )
        batch.total = total
        batch.status = S.IN_PROGRESS
        batch.in_progress_at = timezone.now()
        batch.save(update_fields=["total", "status", "in_progress_at"])
        if settings.BATCH_DISPATCH:
            from outbox.services import task_dispatch
            from routing.batches.tasks import batch_run

            transaction.on_commit(lambda: task_dispatch(batch_run, batch.id))
    return batch


def batch_cancel(*, batch: Batch) -> Batch:
    """Stop taking new items; the runner finishes what is in flight, then writes the files."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch.pk)
        if batch.status in Batch.FINISHED or batch.status == S.CANCELLING:
            if batch.status in (S.CANCELLING, S.CANCELLED):
                return batch
            raise GatewayError(
                409,
                f"The batch is already {batch.status}.",
                code="batch_finished",
                param="batch_id",
            )
        batch.status = S.CANCELLING
        batch.cancelling_at = timezone.now()
        batch.save(update_fields=["status", "cancelling_at"])
        # Nobody is running it (paused, or between runners): finish the cancel here.
        idle = batch.runner_lease_until is None or batch.runner_lease_until < timezone.now()
    if idle:
        return batch_finalize(batch_id=batch.id)
    return batch


# --- The runner's steps (sync: called through sync_to_async) ------------------------------


def batch_runner_claim(*, batch_id: str, lease_seconds: float) -> str | None:
    """Take the batch for one runner; None when it is finished or another runner holds it."""
    now = timezone.now()
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None or batch.status in Batch.FINISHED:
            return None
        if batch.runner_lease_until and batch.runner_lease_until > now:
            return None
        batch.runner_lease_until = now + timedelta(seconds=lease_seconds)
        batch.paused_reason = ""
        batch.save(update_fields=["runner_lease_until", "paused_reason"])
        return batch.status


def batch_runner_renew(*, batch_id: str, lease_seconds: float) -> str:
    now = timezone.now()
    Batch.objects.filter(pk=batch_id).update(
        runner_lease_until=now + timedelta(seconds=lease_seconds)
    )
    return Batch.objects.values_list("status", flat=True).get(pk=batch_id)


def batch_runner_release(*, batch_id: str, paused_reason: str = "") -> None:
    Batch.objects.filter(pk=batch_id).update(runner_lease_until=None, paused_reason=paused_reason)


def items_claim(*, batch_id: str, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
    """Up to `limit` leader items to run: pending ones past their backoff, and running ones
    whose lease ran out (their worker died). Finished items are never taken again."""
    now = timezone.now()
    with transaction.atomic():
        query = (
            BatchItem.objects.filter(batch_id=batch_id)
            .filter(
                Q(status=I.PENDING, not_before__isnull=True)
                | Q(status=I.PENDING, not_before__lte=now)
                | Q(status=I.RUNNING, lease_until__lt=now)
            )
            .order_by("line")
        )
        ids = list(query.select_for_update(skip_locked=True).values_list("id", flat=True)[:limit])
        BatchItem.objects.filter(id__in=ids).update(
            status=I.RUNNING, lease_until=now + timedelta(seconds=lease_seconds)
        )
    return list(BatchItem.objects.filter(id__in=ids).values("id", "body", "attempts", "copies"))


def items_waiting(*, batch_id: str) -> tuple[int, float | None]:
    """(leader items not finished, seconds until the next one may run, if any is waiting)."""
    now = timezone.now()
    open_items = BatchItem.objects.filter(batch_id=batch_id, status__in=[I.PENDING, I.RUNNING])
    count = open_items.count()
    if not count:
        return 0, None
    nxt = (
        open_items.order_by("not_before", "lease_until")
        .values_list("not_before", "lease_until", "status")
        .first()
    )
    moments = [m for m in (nxt[0], nxt[1] if nxt[2] == I.RUNNING else None) if m]
    wait = max(0.0, (min(moments) - now).total_seconds()) if moments else 0.0
    return count, wait


@transaction.atomic
def item_finish(
    *,
    item_id: int,
    succeeded: bool,
    status_code: int,
    response: dict | None,
    error: dict | None,
    generation_id: str,
    cost_nanousd: int,
) -> bool:
    """Record an item's outcome once (a second report of the same item changes nothing)."""
    item = BatchItem.objects.select_for_update().filter(id=item_id, status=I.RUNNING).first()
    if item is None:
        return False
    item.status = I.SUCCEEDED if succeeded else I.FAILED
    item.status_code = status_code
    item.response = response
    item.error = error
    item.generation_id = generation_id
    item.cost_nanousd = cost_nanousd
    item.finished_at = timezone.now()
    item.attempts += 1
    item.save()
    counter = "completed" if succeeded else "failed"
    Batch.objects.filter(pk=item.batch_id).update(
        **{counter: F(counter) + item.copies}, cost_nanousd=F("cost_nanousd") + cost_nanousd
    )
    return True


def item_retry_later(*, item_id: int, delay_seconds: float, count_attempt: bool = True) -> None:
    changes: dict[str, Any] = {
        "status": I.PENDING,
        "lease_until": None,
        "not_before": timezone.now() + timedelta(seconds=delay_seconds),
    }
    if count_attempt:
        changes["attempts"] = F("attempts") + 1
    BatchItem.objects.filter(id=item_id, status=I.RUNNING).update(**changes)


def item_give_back(*, item_ids: list[int]) -> None:
    """Items claimed but not run (the batch paused or was cancelled): pending again, as if
    never taken."""
    BatchItem.objects.filter(id__in=item_ids, status=I.RUNNING).update(
        status=I.PENDING, lease_until=None
    )


def _result_line(item: BatchItem, leader: BatchItem) -> dict[str, Any]:
    ok = leader.status == I.SUCCEEDED
    return {
        "id": f"batch_req_{item.id}",
        "custom_id": item.custom_id,
        "response": (
            {
                "status_code": leader.status_code,
                "request_id": leader.generation_id,
                "body": leader.response,
            }
            if ok or leader.response is not None
            else None
        ),
        "error": None if ok else leader.error,
    }


def batch_fail_unrun(*, batch_id: str, code: str, message: str) -> Batch:
    """Stop the batch for good (its key was revoked, expired or deleted mid-run): every item
    not finished fails with the reason, and the batch ends as failed; finished results stay."""
    error = {"code": code, "message": message}
    now = timezone.now()
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch_id)
        if batch.status in Batch.FINISHED:
            return batch
        items = BatchItem.objects.filter(batch_id=batch_id, status__in=[I.PENDING, I.RUNNING])
        copies = items.aggregate(total=Sum("copies"))["total"] or 0
        items.update(
            status=I.FAILED,
            status_code=401,
            response={"error": error},
            error=error,
            lease_until=None,
            finished_at=now,
        )
        batch.failed = F("failed") + copies
        batch.errors = {"object": "list", "data": [{**error, "param": None, "line": None}]}
        batch.save(update_fields=["failed", "errors"])
    return batch_finalize(batch_id=batch_id, failed=True)


def batch_finalize(*, batch_id: str, expire: bool = False, failed: bool = False) -> Batch:
    """Write the output and error files from the finished items and close the batch:
    completed, or cancelled / expired / failed when it was stopped (finished results stay)."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch_id)
        if batch.status in Batch.FINISHED:
            return batch
        stopping = S.EXPIRED if expire else batch.status
        batch.status = S.FINALIZING
        batch.finalizing_at = timezone.now()
        batch.save(update_fields=["status", "finalizing_at"])
    leaders: dict[int, BatchItem] = {}
    counts = {"ok": 0, "failed": 0}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sizes = {"out": 0, "err": 0}
        items = BatchItem.objects.filter(batch_id=batch_id).order_by("line")
        for item in items.iterator(chunk_size=2000):
            if item.leader_id is None:
                leaders[item.id] = item
                leader = item
            else:
                leader = leaders.get(item.leader_id) or BatchItem.objects.get(id=item.leader_id)
            if leader.status not in (I.SUCCEEDED, I.FAILED):
                continue  # not run: the batch was cancelled or expired first
            raw = orjson.dumps(_result_line(item, leader)) + b"\n"
            if leader.status == I.SUCCEEDED:
                out.write(raw)
                sizes["out"] += len(raw)
                counts["ok"] += 1
            else:
                err.write(raw)
                sizes["err"] += len(raw)
                counts["failed"] += 1
        organization = batch.organization
        output = error_file = None
        if counts["ok"]:
            output = output_file_create(
                organization=organization,
                name=f"{batch_id}_output.jsonl",
                handle=out,
                size=sizes["out"],
                lines=counts["ok"],
            )
        if counts["failed"]:
            error_file = output_file_create(
                organization=organization,
                name=f"{batch_id}_error.jsonl",
                handle=err,
                size=sizes["err"],
                lines=counts["failed"],
            )
    cost = (
        BatchItem.objects.filter(batch_id=batch_id).aggregate(total=Sum("cost_nanousd"))["total"]
        or 0
    )
    now = timezone.now()
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch_id)
        batch.output_file = output
        batch.error_file = error_file
        batch.completed = counts["ok"]
        batch.failed = counts["failed"]
        batch.cost_nanousd = cost
        batch.runner_lease_until = None
        batch.paused_reason = ""
        if stopping == S.CANCELLING:
            batch.status, batch.cancelled_at = S.CANCELLED, now
        elif stopping == S.EXPIRED:
            batch.status, batch.expired_at = S.EXPIRED, now
        elif failed:
            batch.status, batch.failed_at = S.FAILED, now
        else:
            batch.status, batch.completed_at = S.COMPLETED, now
        batch.save()
    return batch


def batches_expire(*, now=None) -> int:
    """Batches past their completion window stop; what finished is kept in their files."""
    now = now or timezone.now()
    ids = list(
        Batch.objects.filter(expires_at__lte=now)
        .exclude(status__in=Batch.FINISHED)
        .values_list("id", flat=True)[:100]
    )
    for batch_id in ids:
        batch_finalize(batch_id=batch_id, expire=True)
    return len(ids)


def batches_to_resume(*, now=None) -> list[str]:
    """In-progress batches nobody is running: a dead worker's, or paused ones to try again."""
    now = now or timezone.now()
    return list(
        Batch.objects.filter(status__in=[S.IN_PROGRESS, S.CANCELLING])
        .filter(Q(runner_lease_until__isnull=True) | Q(runner_lease_until__lt=now))
        .values_list("id", flat=True)[:100]
    )
