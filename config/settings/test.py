"""Tests: the parts DATABASE_URL / REDIS_URL name, fast hashing, mail captured."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "insecure-test-only-key")

from .base import *  # noqa: E402,F403
from .base import env  # noqa: E402

DEBUG = False
API_KEY_PEPPER = "test-pepper"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
STORAGES["staticfiles"] = {  # noqa: F405
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
}
SERVESTATIC_USE_FINDERS = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not :memory:, so the ASGI test server's threads see the same database.
    # One per test process: parallel runs never share it.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(BASE_DIR / "var" / f"test-{os.getpid()}.sqlite3")  # noqa: F405
    }

# No connection pool in tests: pooled connections opened in ASGI request threads would outlive
# the test database and block its teardown.
DATABASES["default"].get("OPTIONS", {}).pop("pool", None)  # noqa: F405
# Tests never reach a real provider, whatever credentials the environment holds.
ROUTING_FORCE_SIMULATOR = True
# The suite's money path runs against the simulator, so here it is billed at list prices
# (tests/billing/test_attacks_pricing.py proves the default: simulated costs nothing).
ROUTING_BILL_SIMULATED = True
CATALOG_REFRESH_SECONDS = 0.0
# Settled usage reaches the ledger when a test flushes it, not from a timer thread that could
# outlive the test's database.
BILLING_USAGE_FLUSH_SECONDS = 0
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
if REDIS_URL:  # noqa: F405
    # Each xdist worker gets a Redis database of its own (cache.clear() flushes a whole
    # database, and parallel tests must not wipe each other's keys).
    from urllib.parse import urlsplit, urlunsplit

    worker = env("PYTEST_XDIST_WORKER", default="gw0")
    # TEST_REDIS_DB_BASE lets several suites share one Redis server side by side.
    db_base = env.int("TEST_REDIS_DB_BASE", default=1)
    db_index = 1 + (db_base - 1 + int(worker.removeprefix("gw") or 0)) % 15
    REDIS_URL = urlunsplit(urlsplit(REDIS_URL)._replace(path=f"/{db_index}"))  # noqa: F405
    CACHES["default"]["LOCATION"] = REDIS_URL  # noqa: F405
    CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["address"] = REDIS_URL  # noqa: F405
    CELERY_BROKER_URL = REDIS_URL
# Tests start batch runners themselves, to see them mid-run.
BATCH_DISPATCH = False
BATCH_RETRY_BASE_SECONDS = 0.01
MEDIA_ROOT = BASE_DIR / "var" / f"test-media-{os.getpid()}"  # noqa: F405
