from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.exceptions import AccountsError
from accounts.models import AuditLog, Invitation, Membership, Organization, Role, User
from accounts.services.audit import audit_log_record

TOKEN_SALT = "accounts.invitation"  # noqa: S105 (a signing namespace, not a secret)


def invitation_token(invitation: Invitation) -> str:
    return signing.dumps(str(invitation.id), salt=TOKEN_SALT)


def invitation_send_email(*, invitation_id: str, accept_url: str) -> None:
    """Runs in a Celery worker. A withdrawn or answered invitation sends nothing."""
    invitation = (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(pk=invitation_id, status=Invitation.Status.PENDING)
        .first()
    )
    if invitation is None:
        return
    context = {"invitation": invitation, "accept_url": accept_url}
    send_mail(
        subject=f"[LLM API] You're invited to join {invitation.organization.name}",
        message=render_to_string("accounts/email/invitation.txt", context),
        from_email=None,
        recipient_list=[invitation.email],
    )


@transaction.atomic
def invitation_create(
    *, organization: Organization, invited_by: User, email: str, role: str, base_url: str
) -> Invitation:
    email = User.objects.normalize_email(email.strip())
    if role not in Role.values:
        raise AccountsError("Unknown role.")
    if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
        raise AccountsError(f"{email} is already a member.", code="already_member")
    now = timezone.now()
    # Locking the organization serializes its concurrent invitations, so the cap counts them all.
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    cap = settings.ACCOUNTS_MAX_PENDING_INVITATIONS
    pending = Invitation.objects.filter(
        organization=organization, status=Invitation.Status.PENDING, expires_at__gt=now
    ).count()
    if pending >= cap:
        raise AccountsError(
            f"{organization.name} already has {cap} pending invitations, the most it can have. "
            "Withdraw the ones that are no longer needed, or wait for answers.",
            code="too_many_pending",
        )
    # A stale invitation to the same address gives way to the new one.
    Invitation.objects.filter(
        organization=organization,
        email__iexact=email,
        status=Invitation.Status.PENDING,
        expires_at__lte=now,
    ).update(status=Invitation.Status.REVOKED, responded_at=now)
    try:
        with transaction.atomic():
            invitation = Invitation.objects.create(
                organization=organization,
                email=email,
                role=role,
                invited_by=invited_by,
                expires_at=now + timedelta(days=settings.INVITATION_MAX_AGE_DAYS),
            )
    except IntegrityError:
        raise AccountsError(
            f"{email} already has a pending invitation.", code="already_invited"
        ) from None
    audit_log_record(
        organization=organization,
        actor=invited_by,
        action=AuditLog.Action.INVITATION_SENT,
        target=email,
        data={"role": role},
    )
    accept_url = base_url.rstrip("/") + reverse(
        "invitation_respond", kwargs={"token": invitation_token(invitation)}
    )
    from accounts.tasks import send_invitation_email
    from outbox.services import task_dispatch

    transaction.on_commit(
        lambda: task_dispatch(send_invitation_email, str(invitation.id), accept_url)
    )
    return invitation


def _lock_pending(invitation: Invitation) -> Invitation:
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.status != Invitation.Status.PENDING:
        raise AccountsError(f"This invitation was already {invitation.status}.", code="not_pending")
    if invitation.is_expired:
        raise AccountsError("This invitation has expired. Ask for a new one.", code="expired")
    return invitation


def _ensure_addressee(invitation: Invitation, user: User) -> None:
    if invitation.email.lower() != user.email.lower():
        raise AccountsError(
            "This invitation was sent to another email address.", code="wrong_recipient"
        )


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    invitation = _lock_pending(invitation)
    _ensure_addressee(invitation, user)
    membership, created = Membership.objects.get_or_create(
        organization=invitation.organization, user=user, defaults={"role": invitation.role}
    )
    invitation.status = Invitation.Status.ACCEPTED
    invitation.responded_at = timezone.now()
    invitation.save(update_fields=["status", "responded_at"])
    audit_log_record(
        organization=invitation.organization,
        actor=user,
        action=AuditLog.Action.INVITATION_ACCEPTED,
        target=invitation.email,
        data={"role": invitation.role},
    )
    if created:
        audit_log_record(
            organization=invitation.organization,
            actor=user,
            action=AuditLog.Action.MEMBER_JOINED,
            target=user.email,
            data={"role": membership.role},
        )
    return membership


@transaction.atomic
def invitation_decline(*, invitation: Invitation, user: User) -> Invitation:
    invitation = _lock_pending(invitation)
    _ensure_addressee(invitation, user)
    invitation.status = Invitation.Status.DECLINED
    invitation.responded_at = timezone.now()
    invitation.save(update_fields=["status", "responded_at"])
    audit_log_record(
        organization=invitation.organization,
        actor=user,
        action=AuditLog.Action.INVITATION_DECLINED,
        target=invitation.email,
    )
    return invitation


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, actor: User) -> Invitation:
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.status != Invitation.Status.PENDING:
        raise AccountsError(f"This invitation was already {invitation.status}.")
    invitation.status = Invitation.Status.REVOKED
    invitation.responded_at = timezone.now()
    invitation.save(update_fields=["status", "responded_at"])
    audit_log_record(
        organization=invitation.organization,
        actor=actor,
        action=AuditLog.Action.INVITATION_REVOKED,
        target=invitation.email,
    )
    return invitation
