"""What billing needs of the Redis it runs on, checked at start (manage.py commands run it, and
the ASGI lifespan logs it) when BILLING_CHECK_REDIS_PERSISTENCE is on (production).

Usage itself never depends on Redis keeping anything (billing.holds.outbox writes it to the
ledger within milliseconds), but holds in flight, rate-limit windows, the Celery broker's
queued tasks and the second copy of settled usage live there: a Redis that forgets them on a
restart, or evicts them under memory pressure, lets requests in flight spend past a limit and
drops background work. Production needs an append-only file and no eviction (README, "Redis in
production").
"""

from __future__ import annotations

import redis
from django.conf import settings
from django.core import checks


def redis_persistence_problems(url: str) -> list[checks.CheckMessage]:
    hint = "See the README, 'Redis in production'."
    client = redis.Redis.from_url(
        url, socket_timeout=2.0, socket_connect_timeout=2.0, decode_responses=True
    )
    try:
        config = client.config_get("appendonly")
        config.update(client.config_get("maxmemory-policy"))
    except redis.ResponseError:  # managed Redis often disables CONFIG: say what to verify
        return [
            checks.Warning(
                "Could not read Redis's configuration (CONFIG is disabled): make sure it has "
                "an append-only file (appendonly yes) and maxmemory-policy noeviction.",
                hint=hint,
                id="billing.W003",
            )
        ]
    except (redis.RedisError, OSError) as exc:
        return [
            checks.Warning(
                f"Could not reach Redis to check its persistence: {exc}",
                hint=hint,
                id="billing.W003",
            )
        ]
    finally:
        client.close()
    problems = []
    if config.get("appendonly") != "yes":
        problems.append(
            checks.Warning(
                "Redis has no append-only file (appendonly is not 'yes'): a restart forgets "
                "the holds in flight, rate-limit windows and queued tasks.",
                hint=f"Set appendonly yes and appendfsync everysec. {hint}",
                id="billing.W001",
            )
        )
    if config.get("maxmemory-policy") != "noeviction":
        problems.append(
            checks.Warning(
                f"Redis may evict keys (maxmemory-policy is "
                f"{config.get('maxmemory-policy')!r}): spend counters and holds would vanish "
                "under memory pressure.",
                hint=f"Set maxmemory-policy noeviction. {hint}",
                id="billing.W002",
            )
        )
    return problems


def redis_persistence_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    if not settings.BILLING_CHECK_REDIS_PERSISTENCE or not settings.REDIS_URL:
        return []
    return redis_persistence_problems(settings.REDIS_URL)
