from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import (
    APIKey,
    AuditLog,
    FreeCreditClaim,
    Invitation,
    Membership,
    Organization,
    User,
)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_active", "is_staff", "date_joined"]
    search_fields = ["email", "name"]
    fieldsets = (
        (None, {"fields": ("email", "password", "name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "is_personal", "created_at"]
    search_fields = ["name", "id"]
    inlines = [MembershipInline]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "organization", "role", "status", "expires_at"]
    list_filter = ["status", "role"]
    search_fields = ["email"]


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    # The secret is never stored; the admin sees what the dashboard shows.
    list_display = ["name", "masked", "organization", "created_at", "last_used_at", "status"]
    search_fields = ["name", "prefix", "organization__name"]
    readonly_fields = ["hashed_key", "prefix", "last4", "created_at", "last_used_at", "revoked_at"]


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ["created_at", "organization", "actor", "action", "target"]
    list_filter = ["action"]
    search_fields = ["target", "organization__name", "actor__email"]

    def has_change_permission(self, request, obj=None):
        return False  # the audit trail is append-only

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(FreeCreditClaim)
class FreeCreditClaimAdmin(admin.ModelAdmin):
    """Read-only: the credit itself is in the ledger; a claim is only who took it."""

    list_display = ["mailbox", "user", "organization", "created_at"]
    search_fields = ["mailbox", "user__email"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
