from __future__ import annotations

from django.urls import path

from routing.api import batches, messages, responses, tasks, views

urlpatterns = [
    path("chat/completions", views.ChatCompletionsApi.as_view(), name="v1_chat_completions"),
    path("messages", messages.MessagesApi.as_view(), name="v1_messages"),
    path(
        "messages/count_tokens", messages.CountTokensApi.as_view(), name="v1_messages_count_tokens"
    ),
    path("responses", responses.ResponsesApi.as_view(), name="v1_responses"),
    path("responses/<str:response_id>", responses.ResponseDetailApi.as_view(), name="v1_response"),
    path(
        "responses/<str:response_id>/input_items",
        responses.ResponseInputItemsApi.as_view(),
        name="v1_response_input_items",
    ),
    path("embeddings", views.EmbeddingsApi.as_view(), name="v1_embeddings"),
    path("models", views.ModelListApi.as_view(), name="v1_models"),
    path("models/<path:model_id>", views.ModelDetailApi.as_view(), name="v1_model"),
    path("key", views.KeyInfoApi.as_view(), name="v1_key"),
    path("files", batches.FilesApi.as_view(), name="v1_files"),
    path("files/<str:file_id>", batches.FileDetailApi.as_view(), name="v1_file"),
    path("files/<str:file_id>/content", batches.FileContentApi.as_view(), name="v1_file_content"),
    path("batches", batches.BatchesApi.as_view(), name="v1_batches"),
    path("batches/<str:batch_id>", batches.BatchDetailApi.as_view(), name="v1_batch"),
    path("batches/<str:batch_id>/cancel", batches.BatchCancelApi.as_view(), name="v1_batch_cancel"),
    path("tasks/summarize", tasks.SummarizeTaskApi.as_view(), name="v1_task_summarize"),
    path("tasks/translate", tasks.TranslateTaskApi.as_view(), name="v1_task_translate"),
    path("tasks/extract", tasks.ExtractTaskApi.as_view(), name="v1_task_extract"),
    path("tasks/classify", tasks.ClassifyTaskApi.as_view(), name="v1_task_classify"),
    path("tasks/ocr", tasks.OcrTaskApi.as_view(), name="v1_task_ocr"),
]
