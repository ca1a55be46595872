from __future__ import annotations

from django.contrib import admin

from billing.models import AlertSent, BillingAccount, LedgerEntry, Plan, StripeDispute
from billing.services import billing_account_set_rate_limits


class ReadOnlyAdmin(admin.ModelAdmin):
    """Money records are written by services only (the ledger is append-only)."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "slug",
        "name",
        "kind",
        "free_grant_nanousd",
        "default_monthly_limit_nanousd",
        "rpm_limit",
        "tpm_limit",
        "is_default",
    ]


@admin.register(BillingAccount)
class BillingAccountAdmin(ReadOnlyAdmin):
    """Read-only but for the plan's rate limits, which staff may override per organization
    (through the service: audited, and seen by every server process at once)."""

    list_display = [
        "organization",
        "plan",
        "balance_nanousd",
        "monthly_limit_nanousd",
        "rpm_limit_override",
        "tpm_limit_override",
    ]
    list_select_related = ["organization", "plan"]
    search_fields = ["organization__name", "organization__id"]
    fields = [
        "organization",
        "plan",
        "balance_nanousd",
        "monthly_limit_nanousd",
        "rpm_limit_override",
        "tpm_limit_override",
    ]
    editable = ("rpm_limit_override", "tpm_limit_override")

    def has_change_permission(self, request, obj=None) -> bool:
        # The ordinary model permission (superusers have it), not ReadOnlyAdmin's "never".
        return admin.ModelAdmin.has_change_permission(self, request, obj)

    def get_readonly_fields(self, request, obj=None):
        return [f for f in self.fields if f not in self.editable]

    def save_model(self, request, obj, form, change) -> None:
        billing_account_set_rate_limits(
            organization=obj.organization,
            rpm_limit_override=form.cleaned_data.get("rpm_limit_override"),
            tpm_limit_override=form.cleaned_data.get("tpm_limit_override"),
            actor=request.user,
        )


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "organization", "kind", "amount_nanousd", "reference"]
    list_filter = ["kind"]
    list_select_related = ["organization"]
    search_fields = ["reference", "organization__name"]
    date_hierarchy = "occurred_at"


@admin.register(AlertSent)
class AlertSentAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "organization", "scope", "subject", "threshold", "period_start"]
    list_filter = ["scope", "threshold"]


@admin.register(StripeDispute)
class StripeDisputeAdmin(ReadOnlyAdmin):
    list_display = ["id", "organization", "amount_cents", "status", "status_at", "created_at"]
    list_filter = ["status"]
    list_select_related = ["organization"]
    search_fields = ["id", "organization__name", "payment_intent_id"]
