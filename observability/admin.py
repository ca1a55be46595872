from __future__ import annotations

from django.contrib import admin

from observability.models import (
    OrganizationLogSettings,
    RequestAttempt,
    RequestLog,
    UsageRollup,
)


class RequestAttemptInline(admin.TabularInline):
    model = RequestAttempt
    extra = 0
    can_delete = False
    readonly_fields = [f.name for f in RequestAttempt._meta.fields]


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    list_display = [
        "generation_id",
        "organization",
        "model",
        "provider",
        "status",
        "prompt_tokens",
        "completion_tokens",
        "cost_nanousd",
        "total_ms",
        "received_at",
    ]
    list_filter = ["status", "provider", "streamed"]
    search_fields = ["generation_id"]
    list_select_related = ["organization"]
    show_full_result_count = False  # no COUNT(*) over millions of rows
    readonly_fields = [f.name for f in RequestLog._meta.fields]
    inlines = [RequestAttemptInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(UsageRollup)
class UsageRollupAdmin(admin.ModelAdmin):
    list_display = ["organization", "hour", "model", "provider", "key_id", "requests", "errors"]
    list_filter = ["provider"]
    list_select_related = ["organization"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(OrganizationLogSettings)
class OrganizationLogSettingsAdmin(admin.ModelAdmin):
    list_display = ["organization", "store_bodies", "max_body_bytes", "updated_at"]
    list_select_related = ["organization"]
    raw_id_fields = ["organization"]
