from __future__ import annotations

from django.urls import path

from observability import views

urlpatterns = [
    path("", views.overview, name="org_overview"),
    path("usage/", views.usage, name="org_usage"),
    path("usage/export.csv", views.usage_export, name="org_usage_export"),
    path("logs/", views.logs, name="org_logs"),
    path("logs/export.csv", views.logs_export, name="org_logs_export"),
    path("logs/settings/", views.log_settings, name="org_log_settings"),
    path("logs/<str:generation_id>/", views.log_detail, name="org_log_detail"),
]
