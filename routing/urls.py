"""Dashboard pages of the gateway, mounted under /o/<org_id>/."""

from __future__ import annotations

from django.urls import path

from routing import views

urlpatterns = [
    path("playground/", views.playground, name="org_playground"),
    path("playground/chat", views.playground_chat, name="playground_chat"),
    path("settings/routing/", views.routing_settings, name="routing_settings"),
]
