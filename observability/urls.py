from __future__ import annotations

from django.urls import path

from accounts.access import placeholder_page
from observability import views

urlpatterns = [
    path("", views.overview, name="org_overview"),
    path(
        "usage/",
        placeholder_page("Usage", "usage", blurb="Requests, tokens and cost by model and key."),
        name="org_usage",
    ),
    path("logs/", views.logs, name="org_logs"),
    path("logs/export.csv", views.logs_export, name="org_logs_export"),
    path("logs/<str:generation_id>/", views.log_detail, name="org_log_detail"),
]
