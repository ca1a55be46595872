"""Dashboard pages: the live overview, the logs explorer (list, detail, CSV export) and the
log settings (whether bodies are kept)."""

from __future__ import annotations

import csv
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from accounts.access import can, org_view
from accounts.permissions import Perm
from observability.models import OrganizationLogSettings, RequestLog, RequestStatus
from observability.selectors import (
    STATUS_CHOICES,
    USAGE_COUNTS,
    LogFilters,
    key_label,
    key_labels,
    log_filter_options,
    log_settings_get,
    logs_before,
    overview_figures,
    overview_series,
    request_log_export,
    request_log_find,
    request_log_page,
    usage_breakdown,
    usage_by_model,
    usage_export_rows,
    usd,
)
from observability.services import log_settings_update
from observability.writer.buffer import BODY_ORGS_REFRESH_SECONDS
from routing.errors import upstream_failure

PAGE_SIZE = 50
RANGES = (
    ("1h", "Last hour", timedelta(hours=1)),
    ("24h", "Last 24 hours", timedelta(hours=24)),
    ("7d", "Last 7 days", timedelta(days=7)),
    ("30d", "Last 30 days", timedelta(days=30)),
    ("all", "All time", None),
)
DEFAULT_RANGE = "30d"


def ws_path(org_id: uuid.UUID) -> str:
    return f"/ws/orgs/{org_id}/live/"


def _live_config(request: HttpRequest, labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    org = request.org
    return {
        "ws_path": ws_path(org.id),
        "keys": labels,
        "log_url": reverse(
            "org_log_detail", kwargs={"org_id": org.id, "generation_id": "gen-" + "0" * 32}
        ),
        **extra,
    }


@org_view()
def overview(request: HttpRequest) -> HttpResponse:
    org = request.org
    labels = key_labels(organization=org)
    figures = overview_figures(organization_id=org.id)
    recent = request_log_page(organization=org, filters=LogFilters(), limit=10).rows
    context = {
        "active_nav": "overview",
        "figures": figures,
        "by_model": usage_by_model(organization=org),
        "recent": [_row(log, labels) for log in recent],
        "live": _live_config(
            request, labels, series=overview_series(organization=org, labels=labels)
        ),
    }
    return render(request, "observability/overview.html", context)


# Usage -----------------------------------------------------------------------------------------

USAGE_PERIODS = (("7", "Last 7 days"), ("30", "Last 30 days"), ("90", "Last 90 days"))
USAGE_GROUPS = (("model", "Model"), ("key", "API key"), ("provider", "Provider"))
USAGE_GROUP_TITLES = {"model": "By model", "key": "By API key", "provider": "By provider"}


class UsageForm(forms.Form):
    days = forms.TypedChoiceField(choices=USAGE_PERIODS, coerce=int, required=False)
    by = forms.ChoiceField(choices=USAGE_GROUPS, required=False)

    def choice(self) -> tuple[int, str]:
        """The period and grouping asked for; anything unknown falls back to 30 days by model."""
        if not self.is_valid():
            return 30, "model"
        return self.cleaned_data["days"] or 30, self.cleaned_data["by"] or "model"


@org_view()
def usage(request: HttpRequest) -> HttpResponse:
    """Requests, tokens and cost by model, key or provider over 7, 30 or 90 days, and per day,
    read from the hourly rollups (never the logs)."""
    days, by = UsageForm(request.GET).choice()
    context = {
        "active_nav": "usage",
        "days": days,
        "by": by,
        "periods": USAGE_PERIODS,
        "groups": USAGE_GROUPS,
        "group_label": dict(USAGE_GROUPS)[by],
        "group_title": USAGE_GROUP_TITLES[by],
        "group_titles": USAGE_GROUP_TITLES,
        "usage": usage_breakdown(organization=request.org, by=by, days=days),
    }
    return render(request, "observability/usage.html", context)


USAGE_CSV_COLUMNS = ("day", "model", "provider", "key", *USAGE_COUNTS, "cost_usd")


@org_view()
def usage_export(request: HttpRequest) -> HttpResponse:
    days, _ = UsageForm(request.GET).choice()
    labels = key_labels(organization=request.org)
    response = HttpResponse(content_type="text/csv")
    writer = csv.writer(response)
    writer.writerow(USAGE_CSV_COLUMNS)
    for row in usage_export_rows(organization=request.org, days=days):
        writer.writerow(
            [
                row["day"].isoformat(),
                _csv_cell(row["model"]),
                _csv_cell(row["provider"]),
                _csv_cell(key_label(labels, row["key_id"])),
                *(row[name] or 0 for name in USAGE_COUNTS),
                usd(row["cost_nanousd"] or 0),
            ]
        )
    stamp = timezone.now().strftime("%Y%m%d")
    response["Content-Disposition"] = f'attachment; filename="llmapi-usage-{days}d-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response


# Logs explorer -------------------------------------------------------------------------------


class LogFilterForm(forms.Form):
    range = forms.ChoiceField(
        choices=[(value, label) for value, label, _ in RANGES],
        required=False,
        initial=DEFAULT_RANGE,
        label="Time",
    )
    since = forms.DateTimeField(
        required=False,
        label="From (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    until = forms.DateTimeField(
        required=False,
        label="To (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    model = forms.ChoiceField(required=False)
    provider = forms.ChoiceField(required=False)
    key = forms.ChoiceField(required=False, label="API key")
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *STATUS_CHOICES])
    cursor = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, data, *, options: dict, labels: dict[str, str]) -> None:
        super().__init__(data)
        self.fields["model"].choices = [("", "All models")] + [(m, m) for m in options["models"]]
        self.fields["provider"].choices = [("", "All providers")] + [
            (p, p) for p in options["providers"]
        ]
        keys = sorted(
            ((key_id, name) for key_id, name in labels.items() if name != "No key"),
            key=lambda item: item[1].lower(),
        )
        self.fields["key"].choices = [("", "All keys"), *keys]
        for field in self.fields.values():
            select = isinstance(field.widget, forms.Select)
            field.widget.attrs["class"] = "form-select" if select else "form-control"

    def clean_since(self):
        return self._utc(self.cleaned_data.get("since"))

    def clean_until(self):
        return self._utc(self.cleaned_data.get("until"))

    @staticmethod
    def _utc(value: datetime | None) -> datetime | None:
        # The inputs say UTC; the form parsed them in the server's zone (also UTC).
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if timezone.is_naive(value) else value.astimezone(UTC)

    def filters(self) -> LogFilters:
        data = self.cleaned_data if self.is_valid() else {}
        since = data.get("since")
        if since is None:
            chosen = data.get("range") or DEFAULT_RANGE
            span = next((span for value, _, span in RANGES if value == chosen), None)
            since = timezone.now() - span if span is not None else None
        key = data.get("key")
        return LogFilters(
            since=since,
            until=data.get("until"),
            model=data.get("model") or "",
            provider=data.get("provider") or "",
            key_id=uuid.UUID(key) if key else None,
            status=data.get("status") or "",
        )


def _row(log: RequestLog, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "log": log,
        "key_name": key_label(labels, log.key_id),
        "cost_usd": usd(log.cost_nanousd),
        "ok": log.status == RequestStatus.OK,
        "warn": log.status in (RequestStatus.CLIENT_DISCONNECTED, *RequestStatus.RATE_LIMITED),
    }


def _filter_form(request: HttpRequest) -> tuple[LogFilterForm, dict[str, str]]:
    org = request.org
    labels = key_labels(organization=org)
    form = LogFilterForm(
        request.GET or None, options=log_filter_options(organization=org), labels=labels
    )
    return form, labels


@org_view()
def logs(request: HttpRequest) -> HttpResponse:
    org = request.org
    form, labels = _filter_form(request)
    filters = form.filters()
    cursor = form.cleaned_data.get("cursor") if form.is_valid() else None
    page = request_log_page(organization=org, filters=filters, cursor=cursor, limit=PAGE_SIZE)
    query = request.GET.copy()
    query.pop("cursor", None)
    next_query = None
    if page.next_cursor:
        following = query.copy()
        following["cursor"] = page.next_cursor
        next_query = following.urlencode()
    # Only the newest page of an unfiltered view takes live rows (a filter would need judging).
    live_rows = not cursor and not any(
        request.GET.get(name) for name in ("since", "until", "model", "provider", "key", "status")
    )
    context = {
        "active_nav": "logs",
        "form": form,
        "rows": [_row(log, labels) for log in page.rows],
        "next_query": next_query,
        "first_query": query.urlencode(),
        "is_first_page": not cursor,
        "live_rows": live_rows,
        "live": _live_config(request, labels),
        "can_manage_logs": can(request, Perm.MANAGE_ORG),
    }
    return render(request, "observability/logs.html", context)


def _waterfall(log: RequestLog) -> dict[str, Any]:
    """Bars of the attempt waterfall, on a 0..1000 scale of the request's whole time."""
    attempts = list(log.attempts.all())
    cursor = log.gateway_ms or 0.0
    spans = []
    for attempt in attempts:
        start = attempt.offset_ms if attempt.offset_ms is not None else cursor
        spans.append((attempt, start, attempt.duration_ms))
        if not attempt.hedged:
            cursor = start + attempt.duration_ms
    scale = max([log.total_ms, *(start + d for _, start, d in spans)] + [1.0])
    bars = []
    for attempt, start, duration in spans:
        x = round(start / scale * 1000, 1)
        bars.append(
            {
                "attempt": attempt,
                "x": x,
                "width": max(round(duration / scale * 1000, 1), 2.0),
                "ttft_x": (
                    round((start + attempt.ttft_ms) / scale * 1000, 1)
                    if attempt.ttft_ms is not None
                    else None
                ),
                # Our words for a failure: what the provider said can name our account there.
                "message": ""
                if attempt.outcome in ("ok", "cancelled")
                else upstream_failure(attempt.outcome, attempt.http_status),
                "fill": "#10b981"
                if attempt.outcome == "ok"
                else ("#9ca3af" if attempt.outcome == "cancelled" else "#ef4444"),
            }
        )
    winner = next((a for a in reversed(attempts) if a.outcome == "ok"), None)
    winner_start = next((start for a, start, _ in spans if a is winner), None)
    breakdown = []
    if log.gateway_ms is not None:
        breakdown.append(("Gateway, before the first upstream request", log.gateway_ms))
    if winner is not None and winner_start is not None and len(attempts) > 1:
        fallback = winner_start - (log.gateway_ms or 0)
        breakdown.append(("Failed attempts and fallback", max(fallback, 0.0)))
    if log.ttft_ms is not None:
        breakdown.append(("Upstream time to first token", log.ttft_ms))
        if log.streamed and winner_start is not None:
            breakdown.append(
                ("Streaming the rest", max(log.total_ms - winner_start - log.ttft_ms, 0.0))
            )
    breakdown.append(("Total", log.total_ms))
    return {"bars": bars, "breakdown": breakdown, "scale_ms": scale}


@org_view()
def log_detail(request: HttpRequest, generation_id: str) -> HttpResponse:
    org = request.org
    log = request_log_find(organization_id=org.id, generation_id=generation_id)
    if log is None:
        raise Http404
    labels = key_labels(organization=org)
    context = {
        "active_nav": "logs",
        "log": log,
        "key_name": key_label(labels, log.key_id),
        "cost_usd": usd(log.cost_nanousd),
        "waterfall": _waterfall(log),
        "can_manage_logs": can(request, Perm.MANAGE_ORG),
    }
    return render(request, "observability/log_detail.html", context)


# CSV export ----------------------------------------------------------------------------------

CSV_COLUMNS = (
    "generation_id",
    "received_at",
    "finished_at",
    "key",
    "requested_model",
    "model",
    "provider",
    "status",
    "streamed",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "gateway_ms",
    "ttft_ms",
    "total_ms",
    "tokens_per_second",
    "attempts",
)
_EXPORT_CHUNK = 2000


class _Line:
    """A file-like object for csv.writer that hands back each line it is given."""

    def write(self, value: str) -> str:
        return value


def _csv_cell(value: Any) -> Any:
    # Spreadsheet formula injection: a cell starting with = + - @ is read as a formula.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def _csv_values(log: RequestLog, labels: dict[str, str]) -> list[Any]:
    return [
        _csv_cell(v)
        for v in (
            log.generation_id,
            log.received_at.astimezone(UTC).isoformat(),
            log.finished_at.astimezone(UTC).isoformat(),
            key_label(labels, log.key_id),
            log.requested_model,
            log.model,
            log.provider,
            log.status,
            "true" if log.streamed else "false",
            log.prompt_tokens,
            log.completion_tokens,
            log.cached_tokens,
            log.reasoning_tokens,
            usd(log.cost_nanousd),
            "" if log.gateway_ms is None else round(log.gateway_ms, 1),
            "" if log.ttft_ms is None else round(log.ttft_ms, 1),
            round(log.total_ms, 1),
            "" if log.tokens_per_second is None else log.tokens_per_second,
            log.attempt_count,
        )
    ]


def _chunk(queryset, after: tuple[datetime, int] | None) -> list[RequestLog]:
    if after is not None:
        queryset = logs_before(queryset, after)
    return list(queryset[:_EXPORT_CHUNK])


async def _csv_lines(queryset, labels: dict[str, str]) -> AsyncIterator[str]:
    """Streamed chunk by chunk (keyset pages), so an export of a million rows never sits in
    memory; an async iterator, so ASGI streams it instead of collecting it first."""
    writer = csv.writer(_Line())
    yield writer.writerow(CSV_COLUMNS)
    after = None
    while True:
        rows = await sync_to_async(_chunk)(queryset, after)
        if not rows:
            return
        yield "".join(writer.writerow(_csv_values(log, labels)) for log in rows)
        if len(rows) < _EXPORT_CHUNK:
            return
        after = (rows[-1].received_at, rows[-1].id)


@org_view()
def logs_export(request: HttpRequest) -> StreamingHttpResponse:
    org = request.org
    form, labels = _filter_form(request)
    queryset = request_log_export(organization=org, filters=form.filters())
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(_csv_lines(queryset, labels), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="llmapi-logs-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response


# Log settings --------------------------------------------------------------------------------


class LogSettingsForm(forms.Form):
    store_bodies = forms.BooleanField(required=False, label="Keep prompt and response bodies")
    max_body_bytes = forms.IntegerField(
        label="Keep at most (bytes, per body)",
        min_value=OrganizationLogSettings.MIN_BODY_BYTES,
        max_value=OrganizationLogSettings.MAX_BODY_BYTES_CEILING,
    )


@org_view(Perm.MANAGE_ORG)
def log_settings(request: HttpRequest) -> HttpResponse:
    """Owners and admins choose whether bodies are kept (off by default) and the cap."""
    current = log_settings_get(organization=request.org)
    if request.method == "POST":
        form = LogSettingsForm(request.POST)
        if form.is_valid():
            log_settings_update(
                organization=request.org,
                store_bodies=form.cleaned_data["store_bodies"],
                max_body_bytes=form.cleaned_data["max_body_bytes"],
                actor=request.user,
            )
            messages.success(
                request,
                "Bodies will be kept for new requests."
                if form.cleaned_data["store_bodies"]
                else "Bodies are no longer kept for new requests.",
            )
            return redirect("org_log_settings", org_id=request.org.id)
        status = 400
    else:
        form = LogSettingsForm(
            initial={"store_bodies": current.store_bodies, "max_body_bytes": current.max_body_bytes}
        )
        status = 200
    context = {
        "active_nav": "logs",
        "form": form,
        "current": current,
        "refresh_seconds": int(BODY_ORGS_REFRESH_SECONDS),
    }
    return render(request, "observability/log_settings.html", context, status=status)
