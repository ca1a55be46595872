"""Who gets the plan's free starting credit: a person, once. Accounts decides who is a person
(a verified address, one claim per user and per mailbox); billing posts the money, once per
user, under a unique ledger reference."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.db import IntegrityError, transaction
from django.db.models import Q

from accounts.models import FreeCreditClaim, Organization, Role, User

# Providers that deliver name.with.dots@ to namewithdots@.
_DOTS_IGNORED = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def mailbox_canonical(email: str) -> str:
    """The inbox an address reaches: lowercased, without a +tag, without Gmail's dots."""
    local, _, domain = email.strip().lower().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in _DOTS_IGNORED:
        local, domain = local.replace(".", ""), _DOTS_IGNORED[domain]
    return f"{local}@{domain}"


@transaction.atomic
def free_credit_claim(*, user: User, organization: Organization | None = None) -> bool:
    """Give a verified person the plan's free starting credit, on `organization` or else on
    their first organization (the personal one made at sign-up). Returns whether this call
    granted it. Race-safe: the claim's unique user and mailbox, then billing's unique
    reference per user, each let one of two concurrent claims through."""
    from billing import services as billing_services

    addresses = list(
        EmailAddress.objects.filter(user=user, verified=True).order_by("-primary", "id")
    )
    if not addresses:
        return False
    mailboxes = {mailbox_canonical(a.email) for a in addresses}
    # Theirs, or another account's on the same inbox.
    if FreeCreditClaim.objects.filter(Q(user=user) | Q(mailbox__in=mailboxes)).exists():
        return False
    if organization is None:
        organization = (
            Organization.objects.filter(
                created_by=user, memberships__user=user, memberships__role=Role.OWNER
            )
            .order_by("-is_personal", "created_at")
            .first()
        )
        if organization is None:
            return False  # their first organization gets it when they create one
    try:
        with transaction.atomic():
            FreeCreditClaim.objects.create(
                user=user, mailbox=mailbox_canonical(addresses[0].email), organization=organization
            )
    except IntegrityError:
        return False  # a concurrent claim of this person or inbox won
    return billing_services.free_credit_grant(organization=organization, user_id=user.pk)
