"""Reads of the routing app: an organization's default routing policy, its stored responses.

`routing_policy_for` runs on the hot path (every chat request), so it answers from this
process's memory (at most POLICY_LOCAL_TTL old), then the shared cache, and only then the
database. `routing.policy.routing_policy_update` overwrites the shared entry on commit, so every
process sees a change within POLICY_LOCAL_TTL.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from django.db import DatabaseError

from accounts.models import Organization
from config.db import run_db
from config.localcache import LocalTTLCache
from config.localcache import process_cache as cache
from routing.errors import GatewayError
from routing.models import Provider, RoutingPolicy, RoutingStrategy, StoredResponse

POLICY_LOCAL_TTL = 5.0  # seconds a process trusts its own copy
POLICY_SHARED_TTL = 3600  # updates overwrite it; the TTL only bounds a missed overwrite
_LOCAL_MAX = 50_000  # bound memory: forget everything at once beyond that
_FIELDS = ("strategy", "provider_order", "ignored_providers", "allow_fallbacks")


@dataclass(frozen=True, slots=True)
class OrgRoutingDefaults:
    """What an organization's requests get unless they say otherwise."""

    strategy: str = RoutingStrategy.PRICE.value
    order: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    allow_fallbacks: bool = True

    @classmethod
    def from_row(cls, row: dict | None) -> OrgRoutingDefaults:
        if row is None:
            return DEFAULT_ROUTING
        return cls(
            strategy=str(row["strategy"]),
            order=tuple(row["provider_order"] or ()),
            ignore=tuple(row["ignored_providers"] or ()),
            allow_fallbacks=bool(row["allow_fallbacks"]),
        )


DEFAULT_ROUTING = OrgRoutingDefaults()


def routing_policy_get(*, organization: Organization) -> RoutingPolicy:
    """The policy for the settings page: the stored one, or an unsaved one with the defaults."""
    policy = RoutingPolicy.objects.filter(organization=organization).first()
    return policy or RoutingPolicy(organization=organization)


class PolicyCache:
    """A per-process dict with a short life over the shared Django cache (Redis in production)."""

    def __init__(self) -> None:
        self._local = LocalTTLCache(max_entries=_LOCAL_MAX)

    @staticmethod
    def cache_key(organization_id: uuid.UUID | str) -> str:
        return f"routing:policy:v1:{organization_id}"

    def _local_get(self, org: str) -> OrgRoutingDefaults | None:
        return self._local.get(org)

    def _local_put(self, org: str, value: OrgRoutingDefaults) -> None:
        self._local.put(org, value, POLICY_LOCAL_TTL)

    def get(self, organization_id: uuid.UUID | str) -> OrgRoutingDefaults:
        org = str(organization_id)
        value = self._local_get(org)
        if value is None:
            value = cache.get(self.cache_key(org))
            if not isinstance(value, OrgRoutingDefaults):
                try:
                    row = RoutingPolicy.objects.filter(organization_id=org).values(*_FIELDS).first()
                except DatabaseError:
                    # Neither the shared cache nor the database answers: this process's
                    # last copy keeps serving (one that never had a copy has nothing).
                    value = self._local.stale(org)
                    if not isinstance(value, OrgRoutingDefaults):
                        raise
                    return value
                value = OrgRoutingDefaults.from_row(row)
                # `add`, never `set`: a read that raced an update must not put the old one back.
                cache.add(self.cache_key(org), value, POLICY_SHARED_TTL)
            self._local_put(org, value)
        return value

    async def aget(self, organization_id: uuid.UUID | str) -> OrgRoutingDefaults:
        org = str(organization_id)
        value = self._local_get(org)
        if value is None:
            value = await cache.aget(self.cache_key(org))
            if not isinstance(value, OrgRoutingDefaults):
                try:
                    row = await run_db(
                        lambda: (
                            RoutingPolicy.objects.filter(organization_id=org)
                            .values(*_FIELDS)
                            .first()
                        )
                    )
                except DatabaseError:
                    # Neither the shared cache nor the database answers: this process's
                    # last copy keeps serving (one that never had a copy has nothing).
                    value = self._local.stale(org)
                    if not isinstance(value, OrgRoutingDefaults):
                        raise
                    return value
                value = OrgRoutingDefaults.from_row(row)
                await cache.aadd(self.cache_key(org), value, POLICY_SHARED_TTL)
            self._local_put(org, value)
        return value

    def replace(self, organization_id: uuid.UUID | str, value: OrgRoutingDefaults) -> None:
        """After an update: overwrite what every process reads next."""
        org = str(organization_id)
        cache.set(self.cache_key(org), value, POLICY_SHARED_TTL)
        self._local_put(org, value)

    def clear_local(self) -> None:
        self._local.clear()


policy_cache = PolicyCache()


def routing_defaults_get(*, organization_id: uuid.UUID | str) -> OrgRoutingDefaults:
    """Sync twin of `routing_policy_for`, on the same caches."""
    return policy_cache.get(organization_id)


async def routing_policy_for(organization_id: uuid.UUID | str) -> OrgRoutingDefaults:
    """The organization's routing defaults for the hot path: no query when warm."""
    return await policy_cache.aget(organization_id)


def provider_list() -> list[Provider]:
    """The catalog's providers (the catalog is shared by every organization)."""
    return list(Provider.objects.order_by("name"))


# Stored responses (/v1/responses) ----------------------------------------------------------

_RESPONSE_ID = re.compile(r"resp_[A-Za-z0-9]{1,59}")


def stored_response_get(
    *, organization_id: uuid.UUID | str, response_id: str, param: str = "id"
) -> StoredResponse:
    """One of the organization's stored responses; another's (or none) is a 404 naming
    `param`, in the OpenAI shape."""
    found = (
        StoredResponse.objects.filter(organization_id=organization_id, id=response_id).first()
        if isinstance(response_id, str) and _RESPONSE_ID.fullmatch(response_id)
        else None
    )
    if found is None:
        what = "Previous response" if param == "previous_response_id" else "Response"
        raise GatewayError(
            404,
            f"{what} with id '{response_id}' not found.",
            code="not_found",
            param=param,
        )
    return found
