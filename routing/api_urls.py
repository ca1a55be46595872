from __future__ import annotations

from django.urls import path

from routing.apis import KeyInfoApi

urlpatterns = [
    path("key", KeyInfoApi.as_view(), name="v1_key"),
]
