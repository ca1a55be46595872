from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and organizations"

    def ready(self) -> None:
        from allauth.account.signals import email_confirmed

        # allauth's one event for every way an address gets verified (the link, a code, a
        # password reset, the admin's action); the adapter's confirm_email sees only the link.
        email_confirmed.connect(_email_confirmed, dispatch_uid="accounts.free_credit")


def _email_confirmed(sender, email_address, **kwargs) -> None:
    from accounts.services import user_email_verified

    user_email_verified(user=email_address.user)
