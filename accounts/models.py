from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Logs in by email; there is no username."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def display_name(self) -> str:
        return self.name or self.email


class Organization(models.Model):
    """The tenant: everything billable, every key and every log belongs to one."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    is_personal = models.BooleanField(default=False)
    # Organization-wide gateway rate limits (every key together); None means no limit.
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(null=True, blank=True)
    # Web origins whose pages may call the API from a browser with this organization's keys
    # (CORS): "https://app.example.com", or "*" for any. A key's own list replaces it.
    allowed_origins = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    DEVELOPER = "developer", "Developer"
    BILLING = "billing", "Billing"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "user"], name="accounts_membership_unique_member"
            ),
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="accounts_membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class Invitation(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        DECLINED = "declined", "Declined"
        REVOKED = "revoked", "Revoked"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="invitations"
    )
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    invited_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    responded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="accounts_invitation_role_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "accepted", "declined", "revoked"]),
                name="accounts_invitation_status_valid",
            ),
            # One open invitation per address and organization; answered ones are history.
            models.UniqueConstraint(
                "organization",
                Lower("email"),
                condition=models.Q(status="pending"),
                name="accounts_invitation_one_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.organization}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()


class AuditLog(models.Model):
    """Who did what to a tenant, and when. Written by services in the same transaction."""

    class Action(models.TextChoices):
        ORG_CREATED = "org.created", "Organization created"
        ORG_RENAMED = "org.renamed", "Organization renamed"
        ORG_LIMITS_CHANGED = "org.limits_changed", "Organization rate limits changed"
        ORG_ORIGINS_CHANGED = "org.origins_changed", "Browser origins changed"
        ROUTING_POLICY_CHANGED = "org.routing_changed", "Default routing changed"
        MEMBER_JOINED = "member.joined", "Member joined"
        MEMBER_ROLE_CHANGED = "member.role_changed", "Member role changed"
        MEMBER_REMOVED = "member.removed", "Member removed"
        MEMBER_LEFT = "member.left", "Member left"
        INVITATION_SENT = "invitation.sent", "Invitation sent"
        INVITATION_ACCEPTED = "invitation.accepted", "Invitation accepted"
        INVITATION_DECLINED = "invitation.declined", "Invitation declined"
        INVITATION_REVOKED = "invitation.revoked", "Invitation revoked"
        API_KEY_CREATED = "api_key.created", "API key created"
        API_KEY_UPDATED = "api_key.updated", "API key updated"
        API_KEY_REVOKED = "api_key.revoked", "API key revoked"
        CREDITS_GRANTED = "billing.credits_granted", "Credits granted by staff"
        SPEND_LIMIT_CHANGED = "billing.limit_changed", "Monthly spend limit changed"
        AUTO_RECHARGE_CHANGED = "billing.auto_recharge", "Auto-recharge changed"
        PAYMENT_DISPUTE = "billing.dispute", "Payment dispute opened or closed"
        LOG_SETTINGS_CHANGED = "org.log_settings_changed", "Request log settings changed"

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="audit_logs"
    )
    actor = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=40, choices=Action.choices)
    target = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor} at {self.created_at:%Y-%m-%d %H:%M}"


class APIKey(models.Model):
    """A gateway key. The secret itself is never stored: only its HMAC under a server pepper."""

    class SpendPeriod(models.TextChoices):
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"
        MONTHLY = "monthly", "Monthly"
        TOTAL = "total", "Total"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=16, editable=False)
    last4 = models.CharField(max_length=4, editable=False)
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Limits enforced by the gateway and billing. Money in integer nano-USD; None means no limit.
    spend_limit_nanousd = models.BigIntegerField(null=True, blank=True)
    spend_limit_period = models.CharField(
        max_length=16, choices=SpendPeriod.choices, default=SpendPeriod.MONTHLY
    )
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(null=True, blank=True)
    # An empty list allows every model in the catalog.
    allowed_models = models.JSONField(default=list, blank=True)
    # Browser origins (CORS) for this key; empty: the organization's list.
    allowed_origins = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(spend_limit_nanousd__isnull=True)
                | models.Q(spend_limit_nanousd__gte=0),
                name="accounts_apikey_spend_limit_nonnegative",
            ),
            models.CheckConstraint(
                condition=models.Q(spend_limit_period__in=["daily", "weekly", "monthly", "total"]),
                name="accounts_apikey_spend_period_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{self.prefix}…{self.last4}"

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"


class FreeCreditClaim(models.Model):
    """The free starting credit a person took: one per user and one per mailbox, so neither
    many organizations nor many sign-ups on aliases of one inbox (name+1@, n.ame@gmail.com)
    take it twice. Billing posts the money under a reference naming the user; this row is
    accounts' side of "who is a person"."""

    id = models.BigAutoField(primary_key=True)
    user = models.OneToOneField(
        User, null=True, on_delete=models.SET_NULL, related_name="free_credit_claim"
    )
    # The verified address it was claimed with, lowercased, without +tag (and Gmail's dots).
    mailbox = models.CharField(max_length=254, unique=True)
    organization = models.ForeignKey(
        Organization, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Free credit claimed by {self.mailbox}"
