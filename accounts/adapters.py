from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter

from accounts.services import user_signed_up


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            user_signed_up(user=user)
        return user
