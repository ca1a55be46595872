from __future__ import annotations

from celery import shared_task

from accounts.services.invitations import invitation_send_email


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_invitation_email(invitation_id: str, accept_url: str) -> None:
    invitation_send_email(invitation_id=invitation_id, accept_url=accept_url)
