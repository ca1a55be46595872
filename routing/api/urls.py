from __future__ import annotations

from django.urls import path

from routing.api import views

urlpatterns = [
    path("chat/completions", views.ChatCompletionsApi.as_view(), name="v1_chat_completions"),
    path("embeddings", views.EmbeddingsApi.as_view(), name="v1_embeddings"),
    path("models", views.ModelListApi.as_view(), name="v1_models"),
    path("models/<path:model_id>", views.ModelDetailApi.as_view(), name="v1_model"),
    path("key", views.KeyInfoApi.as_view(), name="v1_key"),
]
