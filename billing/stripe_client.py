"""The one way to talk to Stripe: a client with our pinned API version, or None when billing
is off (no secret key configured)."""

from __future__ import annotations

import stripe
from django.conf import settings

# The version this code was written and tested against; Stripe answers in its shapes.
STRIPE_API_VERSION = "2026-10-28.endive"

_client: tuple[str, stripe.StripeClient] | None = None


def billing_enabled() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def stripe_client() -> stripe.StripeClient | None:
    global _client
    key = settings.STRIPE_SECRET_KEY
    if not key:
        return None
    if _client is None or _client[0] != key:
        _client = (
            key,
            stripe.StripeClient(
                key,
                stripe_version=STRIPE_API_VERSION,
                http_client=stripe.HTTPXClient(allow_sync_methods=True),
                max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
            ),
        )
    return _client[1]
