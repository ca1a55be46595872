"""Dashboard pages for batches: the list, one batch with its live progress, downloads, cancel."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.access import can, org_view
from accounts.permissions import Perm
from routing.batches import files, selectors, services
from routing.batches.models import Batch
from routing.errors import GatewayError
from routing.pricing import nano_to_usd

PAGE_SIZE = 50


def _row(batch: Batch) -> dict:
    done = batch.completed + batch.failed
    return {
        "batch": batch,
        "done": done,
        "percent": round(100 * done / batch.total) if batch.total else 0,
        "cost": format(nano_to_usd(batch.cost_nanousd), "f"),
        "finished": batch.status in Batch.FINISHED,
    }


def _live(request: HttpRequest) -> dict:
    return {"ws_url": f"/ws/orgs/{request.org.id}/live/"}


def _batch(request: HttpRequest, batch_id: str) -> Batch:
    try:
        return selectors.batch_get(organization_id=request.org.id, batch_id=batch_id)
    except GatewayError:
        raise Http404("No such batch.") from None


@org_view(Perm.VIEW)
def batch_list(request: HttpRequest) -> HttpResponse:
    batches = selectors.batch_list(organization_id=request.org.id)[:PAGE_SIZE]
    return render(
        request,
        "routing/batches.html",
        {"rows": [_row(b) for b in batches], "active_nav": "batches", "live": _live(request)},
    )


@org_view(Perm.VIEW)
def batch_detail(request: HttpRequest, batch_id: str) -> HttpResponse:
    batch = _batch(request, batch_id)
    return render(
        request,
        "routing/batch_detail.html",
        {
            **_row(batch),
            "active_nav": "batches",
            "can_cancel": can(request, Perm.CREATE_KEYS),
            "live": _live(request),
        },
    )


@org_view(Perm.VIEW)
def batch_download(request: HttpRequest, batch_id: str, kind: str) -> HttpResponse:
    batch = _batch(request, batch_id)
    stored = {"output": batch.output_file, "errors": batch.error_file}.get(kind)
    if stored is None or stored.deleted_at is not None:
        raise Http404("No such file.")
    return files.file_download(stored)


@require_POST
@org_view(Perm.CREATE_KEYS)
def batch_cancel(request: HttpRequest, batch_id: str) -> HttpResponse:
    batch = _batch(request, batch_id)
    try:
        services.batch_cancel(batch=batch)
    except GatewayError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, "The batch is cancelled; finished results stay downloadable.")
    return redirect("org_batch", org_id=request.org.id, batch_id=batch.id)
