"""Public model pages (no login): every model, and per model its providers side by side with
what real traffic measured (observability.health) and the platform's 30-day totals."""

from __future__ import annotations

from decimal import Decimal

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from observability.health import endpoint_health
from observability.selectors import platform_figures
from routing.snapshot import catalog


def _per_million(nano: int) -> str:
    return f"{Decimal(nano) / 1_000_000_000:.4f}".rstrip("0").rstrip(".")


def model_list(request: HttpRequest) -> HttpResponse:
    rows = []
    for model in catalog.get().models:
        if not model.endpoints:
            continue
        cheapest = min(model.endpoints, key=lambda e: e.blended_price)
        rows.append(
            {
                "model": model,
                "input": _per_million(cheapest.input_price),
                "output": _per_million(cheapest.output_price),
                "providers": len(model.endpoints),
                "simulated": all(e.simulated for e in model.endpoints),
            }
        )
    return render(
        request, "observability/models.html", {"rows": rows, "totals": platform_figures()}
    )


def model_detail(request: HttpRequest, model_id: str) -> HttpResponse:
    model = next((m for m in catalog.get().models if m.id == model_id), None)
    if model is None:
        raise Http404("No such model.")
    health = endpoint_health()
    providers = []
    for endpoint in sorted(model.endpoints, key=lambda e: e.blended_price):
        measured = health.get((endpoint.provider, endpoint.model_id), {})
        providers.append(
            {
                "endpoint": endpoint,
                "input": _per_million(endpoint.input_price),
                "output": _per_million(endpoint.output_price),
                "ttft_p50": (measured.get("ttft_ms") or {}).get("p50"),
                "throughput_p50": measured.get("throughput_p50"),
                "uptime_1d": (measured.get("uptime") or {}).get("1d"),
                "uptime_30d": (measured.get("uptime") or {}).get("30d"),
            }
        )
    return render(
        request,
        "observability/model_detail.html",
        {"model": model, "providers": providers, "totals": platform_figures()},
    )
