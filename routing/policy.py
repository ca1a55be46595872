"""An organization's default routing policy: changing it, and applying it to a request.

A request's own `provider` preferences and strategy win field by field; the organization's
policy fills in what the request left unset (see `merge`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import AuditLog, Organization, User
from accounts.services import audit_log_record
from routing.models import Provider, RoutingPolicy, RoutingStrategy
from routing.router import Preferences
from routing.selectors import OrgRoutingDefaults, policy_cache

# One line each, for the settings page and the playground.
STRATEGY_HELP = {
    RoutingStrategy.PRICE: "Cheapest healthy provider first; ties go to the faster one.",
    RoutingStrategy.LATENCY: "Provider with the lowest time to first token first.",
    RoutingStrategy.THROUGHPUT: "Provider that streams the most tokens per second first.",
}


def _slugs(values: list[str] | tuple[str, ...], known: set[str], field: str) -> list[str]:
    cleaned: list[str] = []
    for raw in values:
        slug = str(raw).strip().lower()
        if not slug:
            continue
        if slug not in known:
            raise ValidationError(
                {field: f"'{slug}' is not a provider in the catalog."}, code="unknown_provider"
            )
        if slug in cleaned:
            raise ValidationError({field: f"'{slug}' is listed twice."}, code="duplicate")
        cleaned.append(slug)
    return cleaned


@transaction.atomic
def routing_policy_update(
    *,
    organization: Organization,
    actor: User | None,
    strategy: str,
    provider_order: list[str] | tuple[str, ...],
    ignored_providers: list[str] | tuple[str, ...],
    allow_fallbacks: bool,
) -> RoutingPolicy:
    """Sets the organization's default routing. Raises ValidationError (keyed by field) for an
    unknown strategy or provider, a provider both ranked and ignored, or every one ignored."""
    if strategy not in RoutingStrategy.values:
        raise ValidationError(
            {"strategy": f"Choose one of {', '.join(RoutingStrategy.values)}."}, code="invalid"
        )
    known = set(Provider.objects.values_list("slug", flat=True))
    order = _slugs(provider_order, known, "provider_order")
    ignore = _slugs(ignored_providers, known, "ignored_providers")
    both = [slug for slug in order if slug in ignore]
    if both:
        raise ValidationError(
            {"ignored_providers": f"'{both[0]}' is both ranked and ignored."}, code="conflict"
        )
    if known and set(ignore) >= known:
        raise ValidationError(
            {"ignored_providers": "Ignoring every provider would refuse every request."},
            code="all_ignored",
        )

    policy = RoutingPolicy.objects.select_for_update().filter(
        organization=organization
    ).first() or RoutingPolicy(organization=organization)
    before = _as_dict(policy)
    policy.strategy = strategy
    policy.provider_order = order
    policy.ignored_providers = ignore
    policy.allow_fallbacks = bool(allow_fallbacks)
    after = _as_dict(policy)
    if policy.pk is not None and before == after:
        return policy  # nothing changed: no write, no audit row
    policy.updated_at = timezone.now()
    policy.save()
    audit_log_record(
        organization=organization,
        actor=actor,
        action=AuditLog.Action.ROUTING_POLICY_CHANGED,
        target="routing policy",
        data={"from": before, "to": after},
    )
    defaults = OrgRoutingDefaults(
        strategy=strategy,
        order=tuple(order),
        ignore=tuple(ignore),
        allow_fallbacks=bool(allow_fallbacks),
    )
    org_id = organization.pk
    # Only once the row is committed may other processes read the new policy.
    transaction.on_commit(lambda: policy_cache.replace(org_id, defaults))
    return policy


def _as_dict(policy: RoutingPolicy) -> dict[str, Any]:
    return {
        "strategy": policy.strategy,
        "provider_order": list(policy.provider_order or ()),
        "ignored_providers": list(policy.ignored_providers or ()),
        "allow_fallbacks": policy.allow_fallbacks,
    }


def merge(
    defaults: OrgRoutingDefaults, prefs: Preferences, strategy: str | None
) -> tuple[Preferences, str]:
    """The request's preferences within the organization's policy, which is a ceiling: a
    request may narrow it, never widen it.

    - strategy: the request's (`provider.sort` or `route`), else the organization's.
    - order: the request's when it gives any, else the organization's.
    - ignore: the organization's and the request's together. A provider the organization
      ignores stays ignored even when the request names it in `only` or `order`.
    - allow_fallbacks: `Preferences` can't tell an explicit true from an absent field, so the
      stricter of the two applies: either side saying false turns fallbacks off.
    """
    if defaults == _NO_DEFAULTS:
        return prefs, strategy or defaults.strategy
    ignore = prefs.ignore + tuple(slug for slug in defaults.ignore if slug not in prefs.ignore)
    merged = replace(
        prefs,
        order=prefs.order or defaults.order,
        ignore=ignore,
        allow_fallbacks=prefs.allow_fallbacks and defaults.allow_fallbacks,
    )
    return merged, strategy or defaults.strategy


_NO_DEFAULTS = OrgRoutingDefaults()
