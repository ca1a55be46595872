"""`manage.py create_api_key --email E --org O --name N`: prints only the new key, for scripts."""

from __future__ import annotations

import uuid

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts import services
from accounts.exceptions import AccountsError
from accounts.models import Organization, Role


class Command(BaseCommand):
    help = (
        "Create an API key for ORG, creating the user (email taken as verified) and the "
        "organization if they don't exist. Prints only the key on stdout."
    )

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True)
        parser.add_argument("--org", required=True, help="Organization name (or id).")
        parser.add_argument("--name", required=True, help="A name for the key.")

    def handle(self, *args, email: str, org: str, name: str, **options):
        try:
            with transaction.atomic():
                user, _ = services.user_get_or_create_verified(email=email)
                organization = self._organization(user, org)
                _, secret = services.api_key_create(
                    organization=organization, created_by=user, name=name
                )
        except AccountsError as error:
            raise CommandError(error.message) from None
        self.stdout.write(secret)

    def _organization(self, user, org: str) -> Organization:
        mine = Organization.objects.filter(memberships__user=user)
        found = mine.filter(name=org).order_by("created_at").first()
        if found is None:
            try:
                found = mine.filter(id=uuid.UUID(org)).first()
            except ValueError:  # not an id: a name of a new organization
                found = None
        if found is None:
            if Organization.objects.filter(name=org).exclude(memberships__user=user).exists():
                # Never hand a key to an organization this person doesn't belong to.
                self.stderr.write(
                    f"{user.email} isn't a member of the existing '{org}'; "
                    "creating a separate organization of that name."
                )
            found = services.organization_create(user=user, name=org)
        membership = found.memberships.get(user=user)
        if membership.role not in (Role.OWNER, Role.ADMIN, Role.DEVELOPER):
            raise CommandError(f"{user.email}'s role in {found.name} can't create keys.")
        return found
