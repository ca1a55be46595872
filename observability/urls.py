from __future__ import annotations

from django.urls import path

from accounts.access import placeholder_page

urlpatterns = [
    path(
        "",
        placeholder_page(
            "Overview",
            "overview",
            blurb="Tokens processed, requests served, spend and uptime for the last 30 days, live.",
        ),
        name="org_overview",
    ),
    path(
        "usage/",
        placeholder_page("Usage", "usage", blurb="Requests, tokens and cost by model and key."),
        name="org_usage",
    ),
    path(
        "logs/",
        placeholder_page("Logs", "logs", blurb="Every request, attempt by attempt."),
        name="org_logs",
    ),
]
