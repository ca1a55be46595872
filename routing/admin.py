from __future__ import annotations

from django.contrib import admin
from django.db import transaction

from routing.models import CatalogModel, Endpoint, Provider
from routing.services import catalog_bump_version


class CatalogAdmin(admin.ModelAdmin):
    """Every edit bumps the catalog version, so each server process rebuilds its snapshot."""

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            catalog_bump_version()

    def delete_model(self, request, obj):
        with transaction.atomic():
            super().delete_model(request, obj)
            catalog_bump_version()

    def save_related(self, request, form, formsets, change):
        with transaction.atomic():
            super().save_related(request, form, formsets, change)
            catalog_bump_version()


class EndpointInline(admin.TabularInline):
    model = Endpoint
    extra = 0
    fields = [
        "provider",
        "upstream_model",
        "input_price",
        "cached_input_price",
        "cache_write_price",
        "cache_write_1h_price",
        "output_price",
        "reasoning_price",
        "context_window",
        "max_output_tokens",
        "enabled",
    ]


@admin.register(CatalogModel)
class CatalogModelAdmin(CatalogAdmin):
    list_display = ["public_id", "name", "context_window", "max_output_tokens", "is_embedding"]
    search_fields = ["public_id", "name"]
    inlines = [EndpointInline]


@admin.register(Provider)
class ProviderAdmin(CatalogAdmin):
    list_display = ["slug", "name", "wire", "region", "credentials_env"]
    search_fields = ["slug", "name"]


@admin.register(Endpoint)
class EndpointAdmin(CatalogAdmin):
    list_display = ["model", "provider", "input_price", "output_price", "enabled"]
    list_filter = ["enabled", "provider"]
    search_fields = ["model__public_id", "provider__slug"]
