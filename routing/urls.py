"""Dashboard pages of the gateway, mounted under /o/<org_id>/."""

from __future__ import annotations

from django.urls import path

from routing import views
from routing.batches import views as batch_views

urlpatterns = [
    path("playground/", views.playground, name="org_playground"),
    path("playground/chat", views.playground_chat, name="playground_chat"),
    path("settings/routing/", views.routing_settings, name="routing_settings"),
    path("batches/", batch_views.batch_list, name="org_batches"),
    path("batches/<str:batch_id>/", batch_views.batch_detail, name="org_batch"),
    path(
        "batches/<str:batch_id>/<str:kind>.jsonl",
        batch_views.batch_download,
        name="org_batch_download",
    ),
    path("batches/<str:batch_id>/cancel", batch_views.batch_cancel, name="org_batch_cancel"),
]
