from __future__ import annotations

from decimal import Decimal

from django import forms
from django.utils import timezone

from accounts.models import APIKey, Role

NANO_PER_USD = 1_000_000_000


def split_origins(text: str | None) -> list[str]:
    return [o for o in (text or "").replace(",", " ").split() if o]


class OrganizationForm(forms.Form):
    name = forms.CharField(max_length=100)


class AllowedOriginsForm(forms.Form):
    allowed_origins = forms.CharField(
        required=False,
        label="Browser origins",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Web pages that may call the API with this organization's keys from a "
        "browser (CORS), one per line: https://app.example.com, or * for any. Empty: none.",
    )


class APIKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    expires_at = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Optional. UTC.",
    )
    spend_limit_usd = forms.DecimalField(
        required=False,
        min_value=Decimal("0"),
        max_digits=12,
        decimal_places=2,
        label="Spend limit (USD)",
    )
    spend_limit_period = forms.ChoiceField(
        choices=APIKey.SpendPeriod.choices, initial=APIKey.SpendPeriod.MONTHLY
    )
    rpm_limit = forms.IntegerField(required=False, min_value=1, label="Requests per minute")
    tpm_limit = forms.IntegerField(required=False, min_value=1, label="Tokens per minute")
    allowed_models = forms.CharField(
        required=False,
        help_text="Comma-separated model ids. Empty allows every model.",
    )
    allowed_origins = forms.CharField(
        required=False,
        label="Browser origins",
        help_text="Web pages that may call the API with this key from a browser (CORS), "
        "comma-separated: https://app.example.com, or * for any. Empty: the organization's.",
    )

    def clean_expires_at(self):
        value = self.cleaned_data.get("expires_at")
        if value is not None and value <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return value

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        usd = data.get("spend_limit_usd")
        models = [m.strip() for m in (data.get("allowed_models") or "").split(",") if m.strip()]
        return {
            "name": data["name"],
            "expires_at": data.get("expires_at"),
            "spend_limit_nanousd": int(usd * NANO_PER_USD) if usd is not None else None,
            "spend_limit_period": data["spend_limit_period"],
            "rpm_limit": data.get("rpm_limit"),
            "tpm_limit": data.get("tpm_limit"),
            "allowed_models": models,
            "allowed_origins": split_origins(data.get("allowed_origins")),
        }


class InvitationForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices, initial=Role.DEVELOPER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class KeysHandOverForm(forms.Form):
    """Who takes over a removed member's API keys: a membership of the same organization."""

    heir = forms.UUIDField()
