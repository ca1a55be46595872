from __future__ import annotations

from django.contrib import admin

from outbox.models import PendingTask


@admin.register(PendingTask)
class PendingTaskAdmin(admin.ModelAdmin):
    list_display = ("id", "task", "created_at", "attempts", "last_error")
    readonly_fields = ("task", "args", "kwargs", "options", "created_at", "attempts", "last_error")
