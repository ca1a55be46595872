from __future__ import annotations

from allauth.account.models import EmailAddress
from django.db import transaction

from accounts.models import Organization, User
from accounts.services.free_credit import free_credit_claim
from accounts.services.organizations import organization_create


def _personal_org_name(user: User) -> str:
    return f"{user.name or user.email.split('@')[0]}'s organization"


@transaction.atomic
def user_signed_up(*, user: User) -> Organization:
    """Every new account starts with a personal organization it owns."""
    return organization_create(user=user, name=_personal_org_name(user), is_personal=True)


@transaction.atomic
def user_email_verified(*, user: User) -> bool:
    """An address of the person was verified (by link, code, password reset or staff): their
    first organization gets the free starting credit now if it hasn't yet."""
    return free_credit_claim(user=user)


@transaction.atomic
def user_get_or_create_verified(*, email: str) -> tuple[User, bool]:
    """For self-hosters' scripts: the address is taken as verified, the password left unusable
    (the person sets one through "forgot password")."""
    email = User.objects.normalize_email(email.strip())
    user = User.objects.filter(email__iexact=email).first()
    created = user is None
    if user is None:
        user = User.objects.create_user(email=email, password=None)
    EmailAddress.objects.update_or_create(
        user=user, email=user.email, defaults={"verified": True, "primary": True}
    )
    user_email_verified(user=user)
    return user, created
