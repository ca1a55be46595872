"""Dashboard pages of the gateway, mounted under /o/<org_id>/."""

from __future__ import annotations

from django.urls import path

from accounts.access import placeholder_page

urlpatterns = [
    path(
        "playground/",
        placeholder_page(
            "Playground", "playground", blurb="Try any model in the catalog from the browser."
        ),
        name="org_playground",
    ),
]
