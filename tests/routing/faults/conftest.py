"""Faults of the platform's own parts (Redis, PostgreSQL) on the /v1 request path."""

from __future__ import annotations

from django.conf import settings

# Killing PostgreSQL's connections, or cutting the way to it, means nothing for the embedded
# default's SQLite file: that module runs on the PostgreSQL pass only.
collect_ignore_glob = []
if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    collect_ignore_glob.append("test_postgres_down.py")
if not settings.REDIS_URL:
    collect_ignore_glob.append("test_responses_store_down.py")
